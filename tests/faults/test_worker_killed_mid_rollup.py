"""A Celery worker SIGKILLed in the middle of rolling up usage: the work it committed stays, the
transaction it was in vanishes whole, and a new worker finishes so that every bucket equals what
an independent aggregation of the raw events gives (tests/meters/oracle.py), nothing counted
twice and nothing left out.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing_site.jsonutil import exact_dumps
from events.models import IngestBatch
from meters import services
from meters.models import DailyUsage, HourlyUsage, Meter
from meters.rollups import MAX_BATCHES_PER_TRANSACTION
from meters.usage import meter_usage
from products.billing import ingest_events as ingest
from tests.faults.processes import Worker
from tests.meters.oracle import RawEvent, aggregate

CUSTOMERS = [f"cus_roll_{n}" for n in range(8)]
# Four rollup transactions: the worker is killed once the first has committed.
BATCHES = 4 * MAX_BATCHES_PER_TRANSACTION
EVENTS_PER_BATCH = 20
HISTORY = timedelta(hours=50)
DEADLINE_SECONDS = 60

# name: (event_name, kind, key, filter, the same filter as a predicate on metadata)
METERS = {
    "calls": ("api.call", "count", None, None, lambda m: True),
    "tokens": ("api.call", "sum", "tokens", None, lambda m: True),
    "hd_peak": (
        "api.call",
        "max",
        "tokens",
        {
            "conjunction": "and",
            "clauses": [{"key": "quality", "operator": "equals", "value": "hd"}],
        },
        lambda m: m.get("quality") == "hd",
    ),
    "level": ("gauge.read", "last", "level", None, lambda m: True),
}
TOKEN_VALUES = [1, 2, 7, 40, Decimal("0.1"), Decimal("2.75"), Decimal("-1.5"), "150", True]


def make_events(now: datetime) -> list[list[dict]]:
    """BATCHES batches of new events over the last HISTORY, each at its own microsecond."""
    rng = random.Random(20260324)
    span = int(HISTORY.total_seconds() * 1_000_000)
    moments = rng.sample(range(span), BATCHES * EVENTS_PER_BATCH)
    batches, n = [], 0
    for b in range(BATCHES):
        batch = []
        for _ in range(EVENTS_PER_BATCH):
            name = "api.call" if n % 5 else "gauge.read"
            metadata = {"quality": rng.choice(["hd", "sd"])}
            if rng.random() < 0.9:
                metadata["tokens" if name == "api.call" else "level"] = rng.choice(TOKEN_VALUES)
            batch.append(
                {
                    "event_id": f"roll-{b}-{n}",
                    "customer_id": rng.choice(CUSTOMERS),
                    "event_name": name,
                    "timestamp": now - timedelta(microseconds=moments[n] + 1),
                    "metadata": metadata,
                }
            )
            n += 1
        batches.append(batch)
    return batches


def ingest_batches(batches: list[list[dict]], now: datetime) -> None:
    for batch in batches:
        wire = [{**e, "timestamp": e["timestamp"].isoformat()} for e in batch]
        assert ingest(exact_dumps({"events": wire}).encode(), now=now) == len(batch)


def floor_to(moment: datetime, unit: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if unit == "day" else moment


def expected_buckets(events: list[RawEvent], name: str, unit: str) -> dict:
    """{(customer, hour or day): (quantity, counted, skipped)} from the oracle, per bucket."""
    event_name, kind, key, _, predicate = METERS[name]
    step = timedelta(days=1) if unit == "day" else timedelta(hours=1)
    groups: dict = defaultdict(list)
    for e in events:
        if e.event_name == event_name and predicate(e.metadata):
            groups[(e.customer_id, floor_to(e.timestamp, unit))].append(e)
    return {
        (customer, start): aggregate(
            members,
            kind=kind,
            key=key,
            event_name=event_name,
            predicate=predicate,
            customer_id=customer,
            start=start,
            end=start + step,
        )
        for (customer, start), members in groups.items()
    }


def stored_buckets(meter: Meter, model) -> dict:
    column = "hour" if model is HourlyUsage else "day"
    kind = meter.aggregation_type
    found = {}
    for bucket in model.objects.filter(meter=meter):
        quantity = {
            "count": Decimal(bucket.event_count),
            "sum": bucket.value_sum,
            "max": bucket.value_max,
            "last": bucket.last_value,
        }[kind]
        if quantity is None:
            quantity = Decimal(0)
        found[(bucket.customer_id, getattr(bucket, column))] = (
            quantity,
            bucket.event_count,
            bucket.skipped_count,
        )
    return found


def assert_usage_matches_raw_events(meters: dict, events: list[RawEvent], now: datetime) -> None:
    """For every meter and customer over windows that start and end mid-hour: usage equals the
    oracle's aggregation of the raw events."""
    by_customer: dict = defaultdict(list)
    for e in events:
        by_customer[e.customer_id].append(e)
    windows = [
        (now - HISTORY - timedelta(minutes=7), now + timedelta(minutes=1)),
        (now - timedelta(hours=30, minutes=13), now - timedelta(hours=2, minutes=41)),
    ]
    for name, meter in meters.items():
        event_name, kind, key, _, predicate = METERS[name]
        for customer in CUSTOMERS:
            for start, end in windows:
                expected = aggregate(
                    by_customer[customer],
                    kind=kind,
                    key=key,
                    event_name=event_name,
                    predicate=predicate,
                    customer_id=customer,
                    start=start,
                    end=end,
                )
                usage = meter_usage(meter, customer, start, end)
                got = (usage.quantity, usage.event_count, usage.skipped_count)
                assert got == expected, (name, customer, start, end)


def wait_until_part_is_rolled_up(worker: Worker, total: int) -> int:
    """Poll until some batches are rolled up and some are not; returns how many remain."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        remaining = IngestBatch.objects.count()
        if 0 < remaining < total:
            return remaining
        assert remaining, "the rollup finished before it could be interrupted: make it bigger"
        worker.assert_alive()
        assert time.monotonic() < deadline, "the worker never started rolling up"
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_rollup_leaves_usage_exact_once_another_finishes(workers):
    first, second = workers
    now = timezone.now()
    meters = {
        name: services.create_meter(
            name=name,
            event_name=event_name,
            measurement_unit="units",
            aggregation={"type": kind, "key": key},
            filter=filter_,
            now=now - timedelta(days=30),
        )
        for name, (event_name, kind, key, filter_, _) in METERS.items()
    }
    call_command("rollup", stdout=StringIO())  # the meters are current: no backfill to do

    batches = make_events(now)
    ingest_batches(batches, now)
    events = [
        RawEvent(e["event_id"], e["customer_id"], e["event_name"], e["timestamp"], e["metadata"], n)
        for n, e in enumerate(e for batch in batches for e in batch)
    ]
    assert IngestBatch.objects.count() == BATCHES

    first.send("meters.roll_up")
    remaining = wait_until_part_is_rolled_up(first, BATCHES)
    first.kill()

    # What the killed worker committed is there, what it was in the middle of is not: usage
    # (buckets, plus raw events for what is still pending) is exact already.
    assert first.sessions_ended(), "the killed worker's database session outlived it"
    assert_usage_matches_raw_events(meters, events, now)
    assert 0 < IngestBatch.objects.count() <= remaining
    assert HourlyUsage.objects.exists()

    second.run_until("meters.roll_up", lambda: not IngestBatch.objects.exists())

    for name, meter in meters.items():
        for model, unit in ((HourlyUsage, "hour"), (DailyUsage, "day")):
            expected = expected_buckets(events, name, unit)
            assert stored_buckets(meter, model) == expected, (name, unit)
    assert_usage_matches_raw_events(meters, events, now)
