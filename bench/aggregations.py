"""Aggregation benchmark: unique_count and min against sum, over the usage benchmark's events.

    python -m bench.aggregations                    # 1M events, 1,000 customers, 30 days
    python -m bench.aggregations --events 10000000
    python -m bench.aggregations --help

It loads the same events as `bench.usage` (its generator and COPY, into its own database), puts
five meters on one event name (`llm.tokens`, a tenth of the events): sum, max and min of
`value`, unique_count of `value` (about as many distinct values as events per customer and
month: the sets are as large as they get) and unique_count of `region` (two values: as small as
they get), and measures for each:

- backfill: the meter rebuilt over all history (`backfill_meter`), seconds;
- exactness: per-customer usage from rollups equals the same query over raw events;
- latency, warm, median and p95 of `--runs` runs, of the usage benchmark's three queries (one
  customer over an unaligned 30-day window, the per-customer table, a daily series), from
  rollups, with each one's ratio to the sum meter's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import DEFAULT_SERVER_URL, BenchmarkFailed
from bench.usage import (
    DAYS,
    data_start_for,
    load_events,
    machine,
    measure_latency,
    prepare_database,
    setup_django,
    verify_exact,
)

EVENT_NAME = "llm.tokens"
# (meter name, aggregation, key); the first is the reference the others are compared with.
METERS = (
    ("sum", "sum", "value"),
    ("max", "max", "value"),
    ("min", "min", "value"),
    ("unique value", "unique_count", "value"),
    ("unique region", "unique_count", "region"),
)
GOAL_RATIO = 2.0  # issue 15: unique_count usage queries within 2x of sum


def create_meters(now: datetime) -> list:
    from meters import services

    return [
        services.create_meter(
            name=name,
            event_name=EVENT_NAME,
            measurement_unit="units",
            aggregation={"type": kind, "key": key},
            now=now,
        )
        for name, kind, key in METERS
    ]


def backfill(meters: list) -> dict[str, float]:
    from meters.rollups import backfill_meter

    seconds = {}
    for meter in meters:
        started = time.perf_counter()
        if not backfill_meter(meter.id):
            raise BenchmarkFailed(f"backfill of {meter.name} did not finish")
        seconds[meter.name] = time.perf_counter() - started
    from django.db import connection

    with connection.cursor() as cursor:
        # As autovacuum would soon: without statistics the planner takes the buckets for empty.
        cursor.execute("VACUUM (ANALYZE) meters_hourlyusage, meters_dailyusage")
    return seconds


def bucket_sizes(meters: list) -> dict[str, dict]:
    """Rows and values stored per meter: what a unique_count bucket costs in space."""
    from django.db import connection

    sizes = {}
    with connection.cursor() as cursor:
        for meter in meters:
            figures = {}
            for table in ("meters_hourlyusage", "meters_dailyusage"):
                cursor.execute(
                    f"SELECT count(*), coalesce(sum(cardinality(distinct_values)), 0),"
                    f" coalesce(sum(pg_column_size(b.*)), 0) FROM {table} b WHERE meter_id = %s",
                    [meter.id],
                )
                rows, values, size = cursor.fetchone()
                figures[table] = {"rows": rows, "values": int(values), "bytes": int(size)}
            sizes[meter.name] = figures
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.aggregations",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events to load")
    parser.add_argument("--customers", type=int, default=1000, help="customers in the events")
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each query")
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_SERVER_URL", DEFAULT_SERVER_URL),
        help="PostgreSQL server (any database path is replaced)",
    )
    parser.add_argument(
        "--db-name", default="billing_bench_aggregations", help="dropped and recreated"
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict = {
        "parameters": vars(args) | {"json": str(args.json) if args.json else None},
        "machine": machine(args.server_url),
    }
    try:
        start = data_start_for(datetime.now(UTC).date())
        print(f"creating {args.db_name} and loading {args.events:,} events from {start}")
        db_url, _ = prepare_database(args.server_url, args.db_name)
        load_events(
            db_url, events=args.events, customers=args.customers, start=start, seed=args.seed
        )
        setup_django(db_url)
        meters = create_meters(now=start)
        results["backfill_s"] = {k: round(v, 2) for k, v in backfill(meters).items()}

        from meters.models import Meter

        meters = [Meter.objects.get(pk=meter.pk) for meter in meters]
        verify_exact(meters, start - timedelta(hours=1), start + timedelta(days=DAYS + 1))
        results["buckets"] = bucket_sizes(meters)

        window_start = start + timedelta(hours=7, minutes=13, seconds=27, microseconds=500_000)
        window_end = window_start + timedelta(days=DAYS)
        results["window"] = [window_start.isoformat(), window_end.isoformat()]
        latency = {}
        for meter in meters:
            for row in measure_latency(
                meter, window_start, window_end, args.customers, args.runs, args.seed
            ):
                latency.setdefault(row.query, {})[meter.name] = {
                    "median_ms": round(statistics.median(row.rollups_ms), 2),
                    "p95_ms": round(row.p95(row.rollups_ms), 2),
                }
        results["latency"] = latency
    except BenchmarkFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    results["load_average_after"] = os.getloadavg()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(results: dict) -> None:
    before, after = results["machine"]["load_average_before"][0], results["load_average_after"][0]
    print(
        f"\n{results['machine']['cpus']} CPUs, PostgreSQL {results['machine']['postgresql']}, "
        f"load average {before:.1f} before, {after:.1f} after"
    )
    print("exactness: rollups equal raw events for every meter and customer")
    names = [name for name, _, _ in METERS]
    print(f"\n{'':<48}" + "".join(f"{name:>20}" for name in names))
    print(f"{'backfill, s':<48}" + "".join(f"{results['backfill_s'][n]:>20.2f}" for n in names))
    for table in ("meters_hourlyusage", "meters_dailyusage"):
        rows = "".join(f"{results['buckets'][n][table]['rows']:>20,}" for n in names)
        print(f"{table + ' rows':<48}" + rows)
        values = "".join(f"{results['buckets'][n][table]['values']:>20,}" for n in names)
        print(f"{table + ' distinct values stored':<48}" + values)
    print("\nlatency from rollups, ms, median / p95 (x: median over sum's):")
    for query, by_meter in results["latency"].items():
        reference = by_meter[names[0]]["median_ms"]
        cells = []
        for name in names:
            figures = by_meter[name]
            ratio = figures["median_ms"] / reference
            cells.append(f"{figures['median_ms']:.1f}/{figures['p95_ms']:.1f} {ratio:.1f}x")
        print(f"{query:<48}" + "".join(f"{cell:>20}" for cell in cells))


if __name__ == "__main__":
    sys.exit(main())
