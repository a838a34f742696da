"""A real Celery worker with beat, against Redis and the test database, keeps hourly buckets
current on its own: nobody calls the rollup here, the `meters.roll_up` schedule does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
import redis
from django.core.management import call_command
from django.utils import timezone

from events.models import IngestBatch
from meters import services
from meters.models import HourlyUsage, Meter
from meters.usage import meter_usage
from tests.factories import event, ingest_events
from tests.faults.processes import database_url, start_process, stop
from tests.meters.oracle import RawEvent, aggregate

# A database of its own, flushed by the test; runs in parallel can each pass their own.
REDIS_URL = os.environ.get("CELERY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POLL_SECONDS = 60


def redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL} ({exc}); the worker needs a broker")
    return client


def start_worker(tmp_path: Path, log_path: Path) -> subprocess.Popen:
    """A Celery worker with beat on this test's database and broker, as production runs it."""
    env = {
        "DATABASE_URL": database_url(application_name="celery-rollups"),
        "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "billing_site.settings",
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "billing_site",
        "worker",
        "-B",
        "--concurrency",
        "1",
        "--loglevel",
        "INFO",
        "-s",
        str(tmp_path / "beat-schedule"),
    ]
    return start_process(command, env, log_path)


def hourly_buckets(meter: Meter) -> dict:
    return {
        (b.customer_id, b.hour): (b.event_count, b.value_sum)
        for b in HourlyUsage.objects.filter(meter=meter)
    }


def expected_buckets(events: list[dict]) -> dict:
    """Per (customer, UTC hour): (events, sum of tokens), computed by hand."""
    totals: dict = defaultdict(lambda: (0, Decimal(0)))
    for e in events:
        hour = e["timestamp"].astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        count, total = totals[(e["customer_id"], hour)]
        totals[(e["customer_id"], hour)] = (count + 1, total + Decimal(e["metadata"]["tokens"]))
    return dict(totals)


def wait_for_buckets(meter: Meter, expected: dict, worker: subprocess.Popen) -> None:
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        got = hourly_buckets(meter)
        if got == expected:
            return
        assert worker.poll() is None, f"the worker exited with {worker.returncode}"
        assert time.monotonic() < deadline, f"buckets after {POLL_SECONDS} s: {got} != {expected}"
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_celery_beat_rolls_up_new_events_without_anyone_asking(tmp_path):
    redis_or_skip().flushdb()
    now = timezone.now()
    meter = services.create_meter(
        name="Tokens",
        event_name="tokens.used",
        measurement_unit="tokens",
        aggregation={"type": "sum", "key": "tokens"},
        now=now - timedelta(days=1),
    )
    call_command("rollup", stdout=StringIO())
    assert Meter.objects.get(pk=meter.pk).rollups_ready

    three_hours_ago = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)

    def batch(prefix: str, minutes: list[int]) -> list[dict]:
        return [
            {
                **event(f"{prefix}-{i}", f"cus_{i % 2}", "tokens.used", metadata={"tokens": i + 1}),
                "timestamp": three_hours_ago + timedelta(minutes=m),
            }
            for i, m in enumerate(minutes)
        ]

    first = batch("a", [1, 20, 59, 61, 130, 131])
    second = batch("b", [2, 62, 179])
    ingest_events([{**e, "timestamp": e["timestamp"].isoformat()} for e in first])
    assert hourly_buckets(meter) == {}  # nothing rolled up yet: only the worker may do it

    log_path = tmp_path / "worker.log"
    worker = start_worker(tmp_path, log_path)
    try:
        wait_for_buckets(meter, expected_buckets(first), worker)

        # While it runs, new events (some in hours that already have buckets) follow.
        ingest_events([{**e, "timestamp": e["timestamp"].isoformat()} for e in second])
        wait_for_buckets(meter, expected_buckets(first + second), worker)
        assert not IngestBatch.objects.exists()

        stored = [
            RawEvent(
                e["event_id"], e["customer_id"], e["event_name"], e["timestamp"], e["metadata"], n
            )
            for n, e in enumerate(first + second)
        ]
        for customer in ("cus_0", "cus_1"):
            start, end = three_hours_ago - timedelta(minutes=1), now + timedelta(minutes=1)
            got = meter_usage(Meter.objects.get(pk=meter.pk), customer, start, end)
            expected = aggregate(
                stored,
                kind="sum",
                key="tokens",
                event_name="tokens.used",
                predicate=lambda m: True,
                customer_id=customer,
                start=start,
                end=end,
            )
            assert (got.quantity, got.event_count, got.skipped_count) == expected
    except BaseException:
        stop(worker)
        print(f"--- celery worker log ({log_path}) ---")
        print(log_path.read_text(errors="replace"))
        raise
    finally:
        stop(worker)
