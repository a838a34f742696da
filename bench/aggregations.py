"""Aggregation benchmark: unique_count and min against sum, over the usage benchmark's events.

    python -m bench.aggregations                    # 1M events, 1,000 customers, 30 days
    python -m bench.aggregations --events 10000000
    python -m bench.aggregations --skip-load [--rebuild]   # the loaded database again
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

It then times the table and the series again with the sum meter and the unique_count meters
interleaved run by run, so their ratios are taken under the same load, and reports how the
unique_count buckets are stored (dense bit strings / sparse positions, bytes, dictionary).

With `--skip-load` meters that are not ready (a migration marked them for a rebuild) are
backfilled again, all five (timed); `--rebuild` does it anyway.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timedelta

from bench.common import (
    BenchmarkFailed,
    add_database_options,
    benchmark_parser,
    database_url,
    finish,
    machine,
    machine_line,
    run_benchmark,
)
from bench.usage import (
    DAYS,
    load_fresh_database,
    loaded_data_start,
    measure_latency,
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


def existing_meters() -> list:
    """--skip-load: the meters an earlier run created, in METERS order."""
    from meters.models import Meter

    meters = [Meter.objects.filter(name=name).first() for name, _, _ in METERS]
    if not all(meter is not None for meter in meters):
        raise BenchmarkFailed("--skip-load: run once without it first (meters missing)")
    return meters


def backfill(meters: list) -> dict[str, float]:
    from meters.models import Meter
    from meters.rollups import backfill_meter

    seconds = {}
    for meter in meters:
        # As an edit would: the meter is rebuilt over all history from its first day.
        Meter.objects.filter(pk=meter.pk).update(
            backfilled_version=0, backfill_next_day=None, backfill_days_done=0
        )
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
    """Rows, forms and values stored per meter: what a unique_count bucket costs in space."""
    from django.db import connection

    sizes = {}
    with connection.cursor() as cursor:
        for meter in meters:
            figures = {}
            for table in ("meters_hourlyusage", "meters_dailyusage"):
                cursor.execute(
                    f"""SELECT count(*), count(distinct_bits), count(distinct_positions),
                               coalesce(sum(bit_count(distinct_bits)), 0)
                               + coalesce(sum(cardinality(distinct_positions)), 0),
                               coalesce(sum(pg_column_size(distinct_bits)), 0)
                               + coalesce(sum(pg_column_size(distinct_positions)), 0),
                               coalesce(sum(pg_column_size(b.*)), 0)
                        FROM {table} b WHERE meter_id = %s""",
                    [meter.id],
                )
                rows, dense, sparse, values, set_bytes, size = cursor.fetchone()
                figures[table] = {
                    "rows": rows,
                    "dense": dense,
                    "sparse": sparse,
                    "values": int(values),
                    "set_bytes": int(set_bytes),
                    "bytes": int(size),
                }
            cursor.execute(
                "SELECT count(*) FROM meters_distinctvalue WHERE meter_id = %s", [meter.id]
            )
            figures["dictionary"] = cursor.fetchone()[0]
            sizes[meter.name] = figures
    return sizes


# --- interleaved ratios -------------------------------------------------------------------------

INTERLEAVED = {
    "per-customer table (usage_by_customer)": lambda m, start, end: _usage().usage_by_customer(
        m, start, end
    ),
    "daily series (usage_series day)": lambda m, start, end: _usage().usage_series(
        m, start, end, "day"
    ),
}


def _usage():
    from meters import usage

    return usage


def interleaved(meters: list, window_start: datetime, window_end: datetime, runs: int) -> dict:
    """The table and the series of the sum meter and of each unique_count meter, one after the
    other in every run, so each ratio is taken under the same moment's load; median ms."""
    chosen = [meters[0], *(m for m in meters if m.aggregation_type == "unique_count")]
    samples = {(label, m.name): [] for label in INTERLEAVED for m in chosen}
    for run in range(runs + 1):
        for label, query in INTERLEAVED.items():
            for meter in chosen:
                started = time.perf_counter()
                query(meter, window_start, window_end)
                if run:  # the first run warms the caches
                    samples[label, meter.name].append((time.perf_counter() - started) * 1000)
    figures: dict = {}
    for (label, name), times in samples.items():
        figures.setdefault(label, {})[name] = round(statistics.median(times), 1)
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser("python -m bench.aggregations", __doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to load")
    parser.add_argument("--customers", type=int, default=1000, help="customers in the events")
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each query")
    parser.add_argument(
        "--skip-load", action="store_true", help="reuse the loaded database and its meters"
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="with --skip-load: backfill every meter again (done anyway when one is not ready)",
    )
    add_database_options(parser, db_name="billing_bench_aggregations")
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
        results["events_loaded"] = loaded
        setup_django(db_url)
        meters = existing_meters()
        if args.rebuild or not all(meter.rollups_ready for meter in meters):
            # After a migration that marked meters for a rebuild, or asked: all five again.
            results["backfill_s"] = {k: round(v, 2) for k, v in backfill(meters).items()}
    else:
        db_url, start, _ = load_fresh_database(args)
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
    results["interleaved_ms"] = interleaved(meters, window_start, window_end, args.runs)
    finish(results, args.json)
    report(results)
    return 0


def report(results: dict) -> None:
    print("\n" + machine_line(results))
    print("exactness: rollups equal raw events for every meter and customer")
    names = [name for name, _, _ in METERS]
    print(f"\n{'':<48}" + "".join(f"{name:>20}" for name in names))
    if "backfill_s" in results:
        backfill_s = "".join(f"{results['backfill_s'][n]:>20.2f}" for n in names)
        print(f"{'backfill, s':<48}" + backfill_s)
    for table in ("meters_hourlyusage", "meters_dailyusage"):
        rows = "".join(f"{results['buckets'][n][table]['rows']:>20,}" for n in names)
        print(f"{table + ' rows':<48}" + rows)
        values = "".join(f"{results['buckets'][n][table]['values']:>20,}" for n in names)
        print(f"{table + ' distinct values stored':<48}" + values)
        forms = "".join(
            f"{results['buckets'][n][table]['dense']:>10,}/{results['buckets'][n][table]['sparse']:<9,}"
            for n in names
        )
        print(f"{table + ' dense/sparse':<48}" + forms)
        set_bytes = "".join(f"{results['buckets'][n][table]['set_bytes']:>20,}" for n in names)
        print(f"{table + ' bytes of the sets':<48}" + set_bytes)
    dictionary = "".join(f"{results['buckets'][n]['dictionary']:>20,}" for n in names)
    print(f"{'dictionary values':<48}" + dictionary)
    print("\nlatency from rollups, ms, median / p95 (x: median over sum's):")
    for query, by_meter in results["latency"].items():
        reference = by_meter[names[0]]["median_ms"]
        cells = []
        for name in names:
            figures = by_meter[name]
            ratio = figures["median_ms"] / reference
            cells.append(f"{figures['median_ms']:.1f}/{figures['p95_ms']:.1f} {ratio:.1f}x")
        print(f"{query:<48}" + "".join(f"{cell:>20}" for cell in cells))
    print("\ninterleaved (sum, then each unique_count meter, in every run), median ms:")
    for query, by_meter in results["interleaved_ms"].items():
        reference = by_meter[names[0]]
        cells = [f"{name} {ms:.1f} ({ms / reference:.1f}x)" for name, ms in by_meter.items()]
        print(f"  {query:<44}" + "   ".join(cells))


if __name__ == "__main__":
    run_benchmark(main)
