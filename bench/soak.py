"""Soak benchmark: does the rollup lag stay bounded while clients ingest at full speed, on tables
whose statistics are stale?

    python -m bench.soak                        # 10 minutes of load, 2M events of history
    python -m bench.soak --minutes 2            # quicker
    python -m bench.soak --help

It creates its own database (`--db-name`, dropped and recreated, migrated), ANALYZEs it once while
each month's events partition holds 100 events of another name and never again (autovacuum is
off on the benchmark machine), bulk-loads `--history-events` events of the last month with COPY
(bench/usage.py's data and its 10 meters, which are then backfilled), and starts, as production
runs them:

- gunicorn (`--gunicorn-workers` sync workers, the per-key rate limit off, as bench/ingest.py);
- one Celery worker with beat (`celery -A billing_site worker -B --concurrency 2`) against
  `--redis-url` (default $REDIS_URL; its database is flushed first): `meters.roll_up` every
  5 s, each run taking at most `ROLLUP_TIME_BUDGET_SECONDS`, two runs at a time.

Then `--clients` threads each POST 1,000-event batches (`/api/events/ingest`) as fast as the server
answers, for `--minutes`, with live timestamps (up to 2 minutes old) over 1,000 customers and the
10 meters' event names. Every `--sample-seconds` it records the rollup lag (age of the oldest
committed, unclaimed `events_ingestbatch` row) and the events waiting; after the clients stop,
the time until no batch waits (drain). Pass: lag always under 60 s and drain under 60 s. At the end
each count meter's buckets must hold exactly the events of its name.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import redis

from bench.common import (
    REPO_ROOT,
    BenchmarkFailed,
    add_database_options,
    benchmark_parser,
    create_api_key,
    finish,
    free_port,
    gunicorn_server,
    machine_line,
    run_benchmark,
    start_results,
)
from bench.rollups import load_on_stale_statistics, statistics_seen
from bench.usage import EVENT_NAMES

LAG_GOAL_S = 60.0
DRAIN_GOAL_S = 60.0
BATCH = 1000
COUNT_METERS = {"api.call": "API calls", "email.send": "Emails"}


# --- setup -------------------------------------------------------------------------------------


def backfill_meters(env: dict[str, str]) -> None:
    """Create bench/usage.py's meters and backfill them, in a child process (Django is set up
    there, not here)."""
    script = (
        "import django; django.setup()\n"
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from bench.usage import ensure_meters\n"
        "from meters.rollups import run_rollups\n"
        "ensure_meters(now=timezone.now() - timedelta(days=40))\n"
        "run_rollups()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise BenchmarkFailed(f"backfill failed:\n{result.stdout}\n{result.stderr}")


def start_celery(env: dict[str, str], schedule_dir: Path, log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "billing_site",
        "worker",
        "-B",
        "--concurrency",
        "2",
        "--loglevel",
        "WARNING",
        "-s",
        str(schedule_dir / "beat-schedule"),
    ]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the pool and beat stop with it
        )


def stop_celery(worker: subprocess.Popen) -> None:
    if worker.poll() is not None:
        return
    try:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=15)
    except ProcessLookupError:
        pass


# --- load and sampling -------------------------------------------------------------------------


def body(rng: random.Random, prefix: str, serial: int, customers: int) -> bytes:
    """One 1,000-event request body, built by hand (json.dumps of dicts costs the GIL more)."""
    now = datetime.now(UTC)
    events = []
    for i in range(BATCH):
        moment = (now - timedelta(seconds=rng.uniform(0, 120))).isoformat()
        name = EVENT_NAMES[rng.randrange(len(EVENT_NAMES))]
        region = "eu" if rng.random() < 0.5 else "us"
        events.append(
            f'{{"event_id":"{prefix}_{serial}_{i}","customer_id":"cus_soak_'
            f'{rng.randrange(customers):04d}","event_name":"{name}","timestamp":"{moment}",'
            f'"metadata":{{"region":"{region}","value":{rng.randrange(1, 1000)}}}}}'
        )
    return ('{"events":[' + ",".join(events) + "]}").encode()


def send(
    base_url: str, api_key: str, clients: int, seconds: float, customers: int, seed: int
) -> tuple[int, float]:
    """`clients` threads posting batches until `seconds` have passed; (events accepted, seconds)."""
    stop_at = time.monotonic() + seconds
    serials = itertools.count()
    accepted: list[int] = []
    errors: list[BaseException] = []
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def work(number: int) -> None:
        rng = random.Random(seed + number)
        total = 0
        try:
            with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
                while time.monotonic() < stop_at:
                    response = client.post(
                        "/api/events/ingest",
                        content=body(rng, f"soak{seed}", next(serials), customers),
                    )
                    if response.status_code != 200:
                        raise BenchmarkFailed(f"HTTP {response.status_code}: {response.text[:300]}")
                    total += response.json()["ingested_count"]
        except BaseException as exc:  # reported after the join
            errors.append(exc)
        accepted.append(total)

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchmarkFailed(f"a client failed: {errors[0]!r}")
    return sum(accepted), time.monotonic() - started


def backlog(conn: psycopg.Connection) -> tuple[float, int]:
    """(age in seconds of the oldest unclaimed batch, events waiting)."""
    age, events = conn.execute(
        "SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0), "
        "coalesce(sum(cardinality(event_ids)), 0) FROM events_ingestbatch"
    ).fetchone()
    return float(age), int(events)


class Sampler(threading.Thread):
    def __init__(self, db_url: str, every: float) -> None:
        super().__init__(daemon=True)
        self.db_url, self.every = db_url, every
        self.samples: list[tuple[float, float, int]] = []  # (seconds since start, lag, pending)
        self.stopped = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self.stopped.is_set():
                lag, pending = backlog(conn)
                self.samples.append((time.monotonic() - started, lag, pending))
                self.stopped.wait(self.every)


def drain(db_url: str, timeout: float) -> float | None:
    """Seconds until no batch waits, or None after `timeout`."""
    started = time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() - started < timeout:
            if backlog(conn)[1] == 0:
                return time.monotonic() - started
            time.sleep(0.5)
    return None


def verify_counts(db_url: str) -> None:
    """Each count meter's buckets hold exactly the stored events of its name."""
    with psycopg.connect(db_url) as conn:
        for event_name, meter_name in COUNT_METERS.items():
            stored, counted = conn.execute(
                "SELECT (SELECT count(*) FROM events_event WHERE event_name = %s), "
                "(SELECT coalesce(sum(h.event_count), 0) FROM meters_hourlyusage h "
                " JOIN meters_meter m ON m.id = h.meter_id WHERE m.name = %s)",
                [event_name, meter_name],
            ).fetchone()
            if stored != counted:
                raise BenchmarkFailed(f"{meter_name}: {counted} counted, {stored} stored")


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser("python -m bench.soak", __doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of full-speed load")
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--gunicorn-workers", type=int, default=4)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument(
        "--history-events", type=int, default=2_000_000, help="bulk-loaded before the soak"
    )
    parser.add_argument("--sample-seconds", type=float, default=2.0)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Celery broker; its database is flushed",
    )
    add_database_options(parser, db_name="billing_bench_soak")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = start_results(args)
    redis_url = args.redis_url
    worker = None
    try:
        db_url, env, _, _ = load_on_stale_statistics(args, args.history_events)
        env.update(
            REDIS_URL=redis_url, API_RATE_LIMIT_PER_SECOND="0", API_RATE_LIMIT_PER_MINUTE="0"
        )
        print("creating and backfilling the meters")
        backfill_meters(env)
        results["statistics"] = statistics_seen(db_url)
        api_key = create_api_key(env)
        redis.Redis.from_url(redis_url).flushdb()
        work_dir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
        with gunicorn_server(
            env, workers=args.gunicorn_workers, port=free_port(), api_key=api_key
        ) as server:
            worker = start_celery(env, work_dir, work_dir / "celery.log")
            sampler = Sampler(db_url, args.sample_seconds)
            sampler.start()
            print(f"{args.clients} clients at full speed for {args.minutes:g} min")
            accepted, seconds = send(
                server.url, api_key, args.clients, args.minutes * 60, args.customers, args.seed
            )
            results["load_average_at_load_end"] = os.getloadavg()
            print(f"sent {accepted:,} events in {seconds:.0f} s; draining")
            drain_s = drain(db_url, args.drain_timeout)
            sampler.stopped.set()
            sampler.join()
            if worker.poll() is not None:
                raise BenchmarkFailed(
                    f"the Celery worker exited {worker.returncode}:\n"
                    + (work_dir / "celery.log").read_text()[-3000:]
                )
        if drain_s is not None:  # else the buckets are still behind by what is waiting
            verify_counts(db_url)
        results["statistics_after"] = statistics_seen(db_url)
    finally:
        if worker is not None:
            stop_celery(worker)
    during = [s for s in sampler.samples if s[0] <= seconds]
    lags = [lag for _, lag, _ in during]
    results.update(
        events=accepted,
        seconds=round(seconds, 1),
        events_per_s=round(accepted / seconds),
        max_lag_s=round(max(lags), 1),
        median_lag_s=round(statistics.median(lags), 1),
        max_pending_events=max(p for _, _, p in sampler.samples),
        drain_s=None if drain_s is None else round(drain_s, 1),
        samples=[(round(t, 1), round(lag, 1), p) for t, lag, p in sampler.samples],
    )
    finish(results, args.json)
    report(results)
    passed = results["max_lag_s"] < LAG_GOAL_S and drain_s is not None and drain_s < DRAIN_GOAL_S
    return 0 if passed else 2


def report(results: dict) -> None:
    print()
    print(machine_line(results))
    stats = results["statistics"]
    print(
        f"statistics at the start: reltuples {stats['reltuples']}, event_name most common "
        f"values {stats['event_name_most_common_vals']}"
    )
    print(
        f"ingested {results['events']:,} events in {results['seconds']} s = "
        f"{results['events_per_s']:,}/s"
    )
    lag_ok = "meets" if results["max_lag_s"] < LAG_GOAL_S else "MISSES"
    print(
        f"rollup lag: max {results['max_lag_s']} s, median {results['median_lag_s']} s "
        f"({lag_ok} the < {LAG_GOAL_S:.0f} s goal); most events waiting "
        f"{results['max_pending_events']:,}"
    )
    drain_s = results["drain_s"]
    drain_ok = "meets" if drain_s is not None and drain_s < DRAIN_GOAL_S else "MISSES"
    print(f"drain after the load stopped: {drain_s} s ({drain_ok} the < {DRAIN_GOAL_S:.0f} s goal)")


if __name__ == "__main__":
    run_benchmark(main)
