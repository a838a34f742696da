"""Usage benchmark: rollup throughput and usage-query latency over 10 million events.

    python -m bench.usage                       # 10M events, 1,000 customers, 30 days
    python -m bench.usage --events 1000000      # quicker
    python -m bench.usage --skip-load           # reuse the loaded database
    python -m bench.usage --help

It creates its own database (dropped, recreated and migrated with `manage.py migrate`), loads the
events with PostgreSQL COPY, then runs Django in-process against that database and measures:

- backfill: 10 meters (one per event name, count/sum/max/last, two with filters) created after
  the load, each rebuilt over all history with `meters.rollups.backfill_meter`; events/s is all
  events (each matches exactly one meter's event name) over the total time;
- incremental: the last days of history are turned back into pending work (their buckets deleted,
  their events written into `events_ingestbatch`, 1,000 ids per row, as ingestion does) and
  `meters.rollups.roll_up_pending` applies them until none is left, by one worker, then again by
  two concurrent workers (`--rollup-workers`); events/s is pending events over the time taken;
- exactness: every meter's per-customer usage from rollups equals the same query over raw events;
- latency, warm, median and p95 of `--runs` runs: one customer's usage over an unaligned 30-day
  window (`meter_usage`), the per-customer table (`usage_by_customer`) and a daily series
  (`usage_series(..., "day")`), from rollups and from raw events (the same functions, with an
  in-memory copy of the meter whose rollups are not ready), with their ratio.
"""

from __future__ import annotations

import argparse
import calendar
import copy
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from tqdm import tqdm

from bench.common import (
    BenchmarkFailed,
    add_database_options,
    benchmark_parser,
    database_url,
    finish,
    machine,
    machine_line,
    manage,
    project_env,
    recreate_database,
    run_benchmark,
)
from events.partitions import Month, create_month_partition, month_partitions

DAYS = 30
EVENTS_PER_BATCH = 1000
ROLLUP_GOAL = 50_000  # events/s
LATENCY_GOAL_MS = 50.0

EU_ONLY = {
    "conjunction": "and",
    "clauses": [{"key": "region", "operator": "equals", "value": "eu"}],
}
ABOVE_TEN = {
    "conjunction": "and",
    "clauses": [{"key": "value", "operator": "greater_than", "value": 10}],
}

# (meter name, event name, aggregation, key, filter): one meter per event name.
METERS = (
    ("API calls", "api.call", "count", None, None),
    ("LLM tokens", "llm.tokens", "sum", "value", None),
    ("Peak connections", "ws.connections", "max", "value", None),
    ("Seats", "seats.snapshot", "last", "value", None),
    ("EU storage", "storage.write", "sum", "value", EU_ONLY),
    ("Emails", "email.send", "count", None, None),
    ("Compute seconds", "compute.run", "sum", "value", None),
    ("Largest upload", "file.upload", "max", "value", None),
    ("Big searches", "search.query", "sum", "value", ABOVE_TEN),
    ("Queue depth", "queue.depth", "last", "value", None),
)
EVENT_NAMES = tuple(spec[1] for spec in METERS)
LATENCY_METERS = ("LLM tokens", "Seats")  # a sum and a last meter (the costliest merge)

COPY_SQL = (
    "COPY events_event (event_id, customer_id, event_name, timestamp, metadata, ingested_at) "
    "FROM STDIN"
)


def customer_id(number: int) -> str:
    return f"cus_bench_{number:05d}"


# --- dates -------------------------------------------------------------------------------------


def data_start_for(today: date) -> datetime:
    """06:00 UTC on the latest day at least 33 days ago that sits in a 31-day month, day <= 28.

    The 30 days of events then end in the past (rollup backfills stop at "now"), and a monthly
    subscription anchored a little before the first event (see `billing_anchor`) covers them all.
    """
    day = today - timedelta(days=33)
    while day.day > 28 or calendar.monthrange(day.year, day.month)[1] != 31:
        day -= timedelta(days=1)
    return datetime(day.year, day.month, day.day, 6, tzinfo=UTC)


def billing_anchor(data_start: datetime) -> datetime:
    """An unaligned anchor 42m17s before the first event: its month covers the 30 loaded days."""
    return data_start - timedelta(minutes=42, seconds=17)


# --- loading -----------------------------------------------------------------------------------


def _metadata_pool(rng: random.Random) -> tuple[list[str], list[float]]:
    """Metadata JSON texts with cumulative weights: mostly integers, 10% decimals, 2% "150"."""
    pool, weights = [], []
    for region in ("eu", "us"):
        for value in range(1, 1000):
            pool.append(f'{{"region": "{region}", "value": {value}}}')
            weights.append(0.88 / 1998)
            pool.append(f'{{"region": "{region}", "value": {value}.25}}')
            weights.append(0.10 / 1998)
        pool.append(f'{{"region": "{region}", "value": "150"}}')  # a string: skipped
        weights.append(0.02 / 2)
    cumulative, total = [], 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    return pool, cumulative


def event_chunks(
    *,
    events: int,
    customers: int,
    start: datetime,
    seed: int,
    days: float = DAYS,
    first_number: int = 0,
    chunk: int = 50_000,
) -> Iterator[tuple[int, str]]:
    """COPY text for `events` events in timestamp order, spread evenly over `days` days.

    Event ids are numbered from `first_number`, so several loads into one table (bench.curve
    grows its history that way) never collide.
    """
    rng = random.Random(seed)
    customer_ids = [customer_id(n) for n in range(customers)]
    pool, cumulative = _metadata_pool(rng)
    span_us = int(days * 86_400 * 1_000_000)
    step = span_us / events
    epoch = int(start.timestamp())
    cached_second, prefix = None, ""
    for offset in range(0, events, chunk):
        count = min(chunk, events - offset)
        custs = rng.choices(customer_ids, k=count)
        names = rng.choices(EVENT_NAMES, k=count)
        metas = rng.choices(pool, cum_weights=cumulative, k=count)
        lines = []
        for j in range(count):
            i = offset + j
            micros = int((i + rng.random()) * step)
            second = epoch + micros // 1_000_000
            if second != cached_second:
                cached_second = second
                prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
            ts = f"{prefix}.{micros % 1_000_000:06d}+00"
            lines.append(
                f"evt_{first_number + i:010d}\t{custs[j]}\t{names[j]}\t{ts}\t{metas[j]}\t{ts}\n"
            )
        yield count, "".join(lines)


def load_events(
    db_url: str,
    *,
    events: int,
    customers: int,
    start: datetime,
    seed: int,
    days: float = DAYS,
    first_number: int = 0,
    analyze: bool = True,
) -> dict[str, float]:
    """COPY the events in one transaction, secondary indexes dropped and rebuilt around it
    (`days` and `first_number` as in `event_chunks`).

    The rebuilt indexes and the unique constraint are the migration's own definitions, read back
    from the catalogue, so the schema afterwards is exactly the migrated one. Without `analyze`
    the events keep whatever statistics they had (bench/rollups.py: stale ones).
    """
    timings = {}
    with psycopg.connect(db_url) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        constraints = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'events_event'::regclass AND contype = 'u'"
        ).fetchall()
        indexes = conn.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid = 'events_event'::regclass AND NOT i.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        ).fetchall()
        for name, _ in constraints:
            conn.execute(f'ALTER TABLE events_event DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        # The months' partitions, as the beat task would have made them as the events arrived.
        with conn.cursor() as cursor:
            month, last = Month.of(start), Month.of(start + timedelta(days=DAYS))
            while month <= last:
                if month not in month_partitions(cursor):
                    create_month_partition(cursor, month)
                month = month.next()
        started = time.perf_counter()
        with (
            conn.cursor() as cursor,
            cursor.copy(COPY_SQL) as copy_,
            tqdm(total=events, unit="ev", unit_scale=True, desc="COPY events") as bar,
        ):
            for count, text in event_chunks(
                events=events,
                customers=customers,
                start=start,
                seed=seed,
                days=days,
                first_number=first_number,
            ):
                copy_.write(text)
                bar.update(count)
        timings["copy_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for name, definition in constraints:
            conn.execute(f'ALTER TABLE events_event ADD CONSTRAINT "{name}" {definition}')
        for _, definition in indexes:
            # A partitioned index reads back as ON ONLY (the parent alone): build it everywhere.
            conn.execute(definition.replace(" ON ONLY ", " ON ", 1))
        timings["index_s"] = time.perf_counter() - started
    if not analyze:
        return timings
    started = time.perf_counter()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) events_event")
    timings["vacuum_s"] = time.perf_counter() - started
    return timings


def prepare_database(server_url: str, name: str) -> tuple[str, dict[str, str]]:
    """Drop, create and migrate the benchmark database; return its URL and project env."""
    db_url = recreate_database(server_url, name)
    env = project_env(db_url, Path(tempfile.mkdtemp(prefix="bench-data-")))
    manage(env, "migrate", "--no-input")
    return db_url, env


def load_fresh_database(args: argparse.Namespace) -> tuple[str, datetime, dict[str, float]]:
    """Drop, create and migrate `args.db_name`, then load `args.events` events ending today:
    (database URL, first day of the data, load timings). Shared by the benchmarks that load
    this module's data when they are not reusing a database."""
    start = data_start_for(datetime.now(UTC).date())
    print(f"creating {args.db_name} and loading {args.events:,} events from {start}")
    db_url, _ = prepare_database(args.server_url, args.db_name)
    timings = load_events(
        db_url, events=args.events, customers=args.customers, start=start, seed=args.seed
    )
    return db_url, start, timings


def setup_django(db_url: str) -> None:
    """Configure Django in this process against the benchmark database."""
    os.environ.update(project_env(db_url, Path(tempfile.mkdtemp(prefix="bench-data-"))))
    import django

    django.setup()


def loaded_data_start(db_url: str) -> tuple[datetime, int]:
    """(first hour of the loaded events, event count) of an existing benchmark database."""
    with psycopg.connect(db_url) as conn:
        first, count = conn.execute(
            "SELECT date_trunc('hour', min(timestamp), 'UTC'), count(*) FROM events_event"
        ).fetchone()
    if first is None:
        raise BenchmarkFailed("--skip-load: the benchmark database holds no events")
    return first.astimezone(UTC), count


# --- meters and rollups (Django) ---------------------------------------------------------------


def ensure_meters(now: datetime) -> list:
    """The benchmark's meters, created if missing; returns them in METERS order."""
    from meters import services
    from meters.models import Meter

    meters = []
    for name, event_name, kind, key, filter_ in METERS:
        meter = Meter.objects.filter(name=name, event_name=event_name).first()
        if meter is None:
            meter = services.create_meter(
                name=name,
                event_name=event_name,
                measurement_unit="units",
                aggregation={"type": kind, "key": key},
                filter=filter_,
                now=now,
            )
        meters.append(meter)
    return meters


def backfill_all(meters: list) -> float:
    """Rebuild every meter over all history (a new definition version each); seconds taken."""
    from django.db.models import F

    from meters.models import Meter
    from meters.rollups import backfill_meter

    ids = [meter.id for meter in meters]
    Meter.objects.filter(id__in=ids).update(
        definition_version=F("definition_version") + 1,
        backfill_next_day=None,
        backfill_days_done=0,
    )
    started = time.perf_counter()
    for meter_id in tqdm(ids, desc="backfill meters", unit="meter"):
        if not backfill_meter(meter_id):
            raise BenchmarkFailed(f"backfill of {meter_id} did not finish")
    return time.perf_counter() - started


def rewind(since: datetime, batch_size: int = EVENTS_PER_BATCH) -> int:
    """Make every event at or after `since` (a UTC midnight) pending again; returns their count.

    Deletes the buckets from `since` on and logs the events in ingest batches, which is the state
    right after ingesting them: the incremental path must then add them back, exactly once.
    """
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events_ingestbatch")
        if cursor.fetchone()[0]:
            raise BenchmarkFailed("events_ingestbatch is not empty before the rewind")
        cursor.execute("DELETE FROM meters_hourlyusage WHERE hour >= %s", [since])
        cursor.execute("DELETE FROM meters_dailyusage WHERE day >= %s", [since])
        cursor.execute("DELETE FROM meters_meterdailytotal WHERE day >= %s", [since])
        from meters.models import Meter
        from meters.preaggregates import rewrite_weekly_buckets

        for meter in Meter.objects.order_by("id"):
            rewrite_weekly_buckets(meter, since, None)  # the week holding `since` keeps its start
        cursor.execute(
            """
            INSERT INTO events_ingestbatch (event_ids, first_timestamp, last_timestamp, created_at)
            SELECT array_agg(id ORDER BY id), min(timestamp), max(timestamp), now()
            FROM (
                SELECT id, timestamp, (row_number() OVER (ORDER BY id) - 1) / %s AS batch
                FROM events_event WHERE timestamp >= %s
            ) numbered
            GROUP BY batch
            ORDER BY batch
            """,
            [batch_size, since],
        )
        cursor.execute("SELECT coalesce(sum(cardinality(event_ids)), 0) FROM events_ingestbatch")
        pending = int(cursor.fetchone()[0])
    with connection.cursor() as cursor:
        # The deleted buckets would otherwise linger as dead index entries under the very keys
        # the rollup is about to write: an artefact of rewinding, not of ingesting new events.
        cursor.execute(
            "VACUUM (ANALYZE) meters_hourlyusage, meters_dailyusage, meters_weeklyusage,"
            " events_ingestbatch"
        )
    return pending


def roll_up(pending: int, workers: int = 1) -> float:
    """Apply every pending batch with `workers` threads (one connection each), as Celery workers
    would on more processes; returns the seconds taken."""
    from django.db import connection

    from events.queries import pending_batch_stats
    from meters.rollups import roll_up_pending

    errors: list[BaseException] = []

    def work(bar: tqdm) -> None:
        try:
            while claimed := roll_up_pending():
                bar.update(claimed)
        except BaseException as exc:  # reported below, after every worker stopped
            errors.append(exc)
        finally:
            connection.close()

    desc = f"roll up pending ({workers} worker{'s' if workers > 1 else ''})"
    started = time.perf_counter()
    with tqdm(total=pending, unit="ev", unit_scale=True, desc=desc) as bar:
        threads = [threading.Thread(target=work, args=(bar,)) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise BenchmarkFailed(f"a rollup worker failed: {errors[0]!r}")
    if pending_batch_stats() != (0, 0):
        raise BenchmarkFailed("pending batches remain after roll_up_pending")
    with connection.cursor() as cursor:
        cursor.execute(
            "VACUUM (ANALYZE) meters_hourlyusage, meters_dailyusage, meters_weeklyusage,"
            " events_ingestbatch"
        )
    return seconds


def raw_copy(meter):
    """The same meter, seen as not rollups-ready: usage queries then read raw events only."""
    raw = copy.copy(meter)
    raw.backfilled_version = meter.definition_version - 1
    assert not raw.rollups_ready
    return raw


def verify_exact(meters: list, start: datetime, end: datetime) -> None:
    """Per-customer usage from rollups equals the same query over raw events, every meter."""
    from meters.usage import usage_by_customer

    for meter in tqdm(meters, desc="verify rollups == raw", unit="meter"):
        if not meter.rollups_ready:
            raise BenchmarkFailed(f"{meter.name}: rollups are not ready")
        from_rollups = usage_by_customer(meter, start, end)
        from_raw = usage_by_customer(raw_copy(meter), start, end)
        if from_rollups != from_raw:
            different = [c for c in from_raw if from_rollups.get(c) != from_raw[c]]
            raise BenchmarkFailed(
                f"{meter.name}: rollups differ from raw events for {len(different)} customers, "
                f"e.g. {different[:3]}"
            )


# --- latency -----------------------------------------------------------------------------------


@dataclass
class Latency:
    query: str
    meter: str
    rollups_ms: list[float]
    raw_ms: list[float]

    @staticmethod
    def p95(samples: list[float]) -> float:
        ordered = sorted(samples)
        return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]

    def row(self) -> dict:
        rollups_median = statistics.median(self.rollups_ms)
        raw_median = statistics.median(self.raw_ms)
        return {
            "query": self.query,
            "meter": self.meter,
            "rollups_median_ms": round(rollups_median, 2),
            "rollups_p95_ms": round(self.p95(self.rollups_ms), 2),
            "raw_median_ms": round(raw_median, 2),
            "raw_p95_ms": round(self.p95(self.raw_ms), 2),
            "ratio": round(raw_median / rollups_median, 1),
            "goal_met": self.p95(self.rollups_ms) < LATENCY_GOAL_MS,
        }


def _time(call: Callable[[int], object], runs: int, warmup: int) -> list[float]:
    for i in range(warmup):
        call(-1 - i)
    samples = []
    for i in range(runs):
        started = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def measure_latency(
    meter,
    start: datetime,
    end: datetime,
    customers: int,
    runs: int,
    seed: int,
    *,
    with_raw: bool = True,
) -> list[Latency]:
    """Warm median/p95 of the three usage queries, from rollups and (unless `with_raw` is off:
    then `raw_ms` stays empty) from raw events."""
    from meters.usage import meter_usage, usage_by_customer, usage_series

    rng = random.Random(seed)
    picks = [customer_id(rng.randrange(customers)) for _ in range(runs + 3)]
    queries = {
        "one customer, 30 days (meter_usage)": lambda m, i: meter_usage(m, picks[i], start, end),
        "per-customer table, 30 days (usage_by_customer)": lambda m, i: usage_by_customer(
            m, start, end
        ),
        "daily series, 30 days (usage_series day)": lambda m, i: usage_series(m, start, end, "day"),
    }
    raw = raw_copy(meter)
    results = []
    for label, query in queries.items():
        if query(meter, 0) != query(raw, 0):
            raise BenchmarkFailed(f"{meter.name}, {label}: rollups and raw events disagree")
        rollups_ms = _time(lambda i, q=query: q(meter, i), runs, warmup=2)
        raw_ms = _time(lambda i, q=query: q(raw, i), runs, warmup=1) if with_raw else []
        results.append(Latency(label, meter.name, rollups_ms, raw_ms))
    return results


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser("python -m bench.usage", __doc__)
    parser.add_argument("--events", type=int, default=10_000_000, help="events to load")
    parser.add_argument("--customers", type=int, default=1000, help="customers in the events")
    parser.add_argument(
        "--pending-days",
        type=int,
        default=6,
        help="last days of history made pending for the incremental rollup (6 of 30: ~2M events)",
    )
    parser.add_argument(
        "--rollup-workers",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="incremental rollup runs, each over the same pending events, with these numbers "
        "of concurrent workers",
    )
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each query")
    parser.add_argument(
        "--skip-rollups",
        action="store_true",
        help="with --skip-load: keep the buckets as they are, only check them and time queries",
    )
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded database")
    add_database_options(parser, db_name="billing_bench_usage")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict = {
        "parameters": vars(args) | {"json": str(args.json) if args.json else None},
        "machine": machine(args.server_url),
    }
    if args.skip_load:
        db_url = database_url(args.server_url, args.db_name)
        start, loaded = loaded_data_start(db_url)
        print(f"reusing {args.db_name}: {loaded:,} events from {start.isoformat()}")
    else:
        db_url, start, timings = load_fresh_database(args)
        loaded = args.events
        results["load"] = {k: round(v, 1) for k, v in timings.items()}
        print(
            "loaded in {copy_s:.0f} s (COPY) + {index_s:.0f} s (indexes) "
            "+ {vacuum_s:.0f} s (VACUUM ANALYZE)".format(**timings)
        )
    results["events"] = loaded
    setup_django(db_url)
    meters = ensure_meters(now=start)

    if args.skip_rollups:
        if not (args.skip_load and all(meter.rollups_ready for meter in meters)):
            raise BenchmarkFailed("--skip-rollups needs --skip-load and backfilled meters")
    else:
        backfill_s = backfill_all(meters)
        results["backfill"] = {
            "events": loaded,
            "seconds": round(backfill_s, 1),
            "events_per_s": round(loaded / backfill_s),
        }
        print(f"backfill: {loaded:,} events in {backfill_s:.1f} s = {loaded / backfill_s:,.0f}/s")

        since = (start + timedelta(days=DAYS - args.pending_days)).replace(hour=0)
        results["incremental"] = []
        for workers in args.rollup_workers:
            pending = rewind(since)
            rollup_s = roll_up(pending, workers)
            results["incremental"].append(
                {
                    "workers": workers,
                    "events": pending,
                    "since": since.isoformat(),
                    "seconds": round(rollup_s, 1),
                    "events_per_s": round(pending / rollup_s),
                }
            )
            print(
                f"incremental, {workers} worker(s): {pending:,} pending events in "
                f"{rollup_s:.1f} s = {pending / rollup_s:,.0f}/s"
            )

    from meters.models import Meter

    meters = [Meter.objects.get(pk=meter.pk) for meter in meters]
    verify_exact(meters, start - timedelta(hours=1), start + timedelta(days=DAYS + 1))
    print("exactness: rollups equal raw events for every meter and customer")

    window_start = start + timedelta(hours=7, minutes=13, seconds=27, microseconds=500_000)
    window_end = window_start + timedelta(days=DAYS)
    latencies = []
    for meter in meters:
        if meter.name in LATENCY_METERS:
            latencies += measure_latency(
                meter, window_start, window_end, args.customers, args.runs, args.seed
            )
    results["window"] = [window_start.isoformat(), window_end.isoformat()]
    results["latency"] = [latency.row() for latency in latencies]

    finish(results, args.json)
    report(results)
    return 0


def report(results: dict) -> None:
    print()
    print(machine_line(results))
    runs = [("backfill, 1 worker", results["backfill"])] if "backfill" in results else []
    runs += [
        (f"incremental, {run['workers']} worker{'s' if run['workers'] > 1 else ''}", run)
        for run in results.get("incremental", [])
    ]
    for name, figures in runs:
        verdict = "meets" if figures["events_per_s"] >= ROLLUP_GOAL else "MISSES"
        print(
            f"{name:<24} {figures['events']:>11,} events {figures['seconds']:>7.1f} s "
            f"{figures['events_per_s']:>9,} events/s  ({verdict} the {ROLLUP_GOAL:,}/s goal)"
        )
    print(f"\nlatency over [{results['window'][0]}, {results['window'][1]}), ms (median / p95):")
    header = f"{'query':<50} {'meter':<11} {'rollups':>15} {'raw events':>17} {'raw/rollups':>11}"
    print(header)
    for row in results["latency"]:
        rollups = f"{row['rollups_median_ms']:.1f} / {row['rollups_p95_ms']:.1f}"
        raw = f"{row['raw_median_ms']:.0f} / {row['raw_p95_ms']:.0f}"
        flag = "" if row["goal_met"] else "  > goal"
        print(
            f"{row['query']:<50} {row['meter']:<11} {rollups:>15} {raw:>17} "
            f"{row['ratio']:>10.0f}x{flag}"
        )


if __name__ == "__main__":
    run_benchmark(main)
