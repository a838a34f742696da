"""Aggregation benchmark: unique_count and min against sum, over the usage benchmark's events.

    python -m bench.aggregations                    # 1M events, 1,000 customers, 30 days
    python -m bench.aggregations --events 10000000
    python -m bench.aggregations --skip-load --bitmap-prototype   # the loaded database again
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

With `--bitmap-prototype` it also measures a way forward on copies of the unique_count meters'
buckets (scratch tables, nothing in the schema changes): each set as a bit string over a
per-meter dictionary of the values, merged by `bit_or` and counted by `bit_count`, checked equal
to the stored sets' distinct counts and timed against them and against the sum meter's buckets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from bench.common import (
    BenchmarkFailed,
    add_database_options,
    benchmark_parser,
    database_url,
    finish,
    machine,
    machine_line,
)
from bench.usage import (
    DAYS,
    data_start_for,
    load_events,
    loaded_data_start,
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


def existing_meters() -> list:
    """--skip-load: the meters an earlier run created and backfilled, in METERS order."""
    from meters.models import Meter

    meters = [Meter.objects.filter(name=name).first() for name, _, _ in METERS]
    if not all(meter is not None and meter.rollups_ready for meter in meters):
        raise BenchmarkFailed(
            "--skip-load: run once without it first (meters missing or not ready)"
        )
    return meters


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


# --- the bit-string prototype ------------------------------------------------------------------

# The whole-bucket part of the usage query, grouped per customer or per day, from a bucket
# table (`{daily}`, `{hourly}`) or a scratch copy. Raw edges are left out: they cost the same
# whatever the buckets hold.
_SHAPES = {
    "per customer (table)": ("customer_id", "customer_id"),
    "per day (series)": ("day", "date_trunc('day', hour, 'UTC')"),
}


def _prototype_sql(kind: str, shape: str, tables: tuple[str, str], meter_filter: str) -> str:
    daily_group, hourly_group = _SHAPES[shape]
    daily, hourly = tables
    if kind == "bits":
        columns, merged = (
            "event_count, bits",
            "sum(event_count), coalesce(bit_count(bit_or(bits)), 0)",
        )
    elif kind == "text":
        columns = "event_count, distinct_values"
        merged = "sum(event_count) FILTER (WHERE first), count(DISTINCT v)"
    else:
        columns, merged = "event_count, value_sum", "sum(event_count), sum(value_sum)"
    source = f"""
        SELECT {daily_group} AS g, {columns} FROM {daily}
        WHERE {meter_filter} AND day >= %(day_start)s AND day < %(day_end)s
        UNION ALL
        SELECT {hourly_group} AS g, {columns} FROM {hourly}
        WHERE {meter_filter} AND ((hour >= %(h1_start)s AND hour < %(h1_end)s)
                                  OR (hour >= %(h2_start)s AND hour < %(h2_end)s))"""
    if kind == "text":
        source = f"""
            SELECT r.g, r.event_count, dv.v COLLATE "C" AS v, coalesce(dv.p, 1) = 1 AS first
            FROM ({source}) r
            LEFT JOIN LATERAL unnest(r.distinct_values) WITH ORDINALITY AS dv(v, p) ON TRUE"""
    return f"SELECT g, {merged} FROM ({source}) rows GROUP BY g ORDER BY g"


def bitmap_prototype(meters: list, window_start: datetime, window_end: datetime, runs: int):
    """Per unique_count meter: build the dictionary and the bit-string copies of its buckets,
    check them exact, and time the two shapes for sum, stored text sets and bit strings."""
    from django.db import connection

    from meters.usage import split_window

    parts = split_window(window_start, window_end)
    [(day_start, day_end)] = parts.daily
    (h1_start, h1_end), (h2_start, h2_end) = parts.hourly
    bounds = dict(
        day_start=day_start, day_end=day_end,
        h1_start=h1_start, h1_end=h1_end, h2_start=h2_start, h2_end=h2_end,
    )  # fmt: skip
    sum_meter = meters[0]
    figures = {}
    with connection.cursor() as cursor:
        for meter in meters:
            if meter.aggregation_type != "unique_count":
                continue
            cursor.execute("DROP TABLE IF EXISTS bench_dict, bench_bits_daily, bench_bits_hourly")
            cursor.execute(
                """
                CREATE TABLE bench_dict AS
                SELECT v, (row_number() OVER (ORDER BY v))::int AS id FROM (
                    SELECT unnest(distinct_values) AS v FROM meters_dailyusage WHERE meter_id = %s
                    UNION
                    SELECT unnest(distinct_values) FROM meters_hourlyusage WHERE meter_id = %s
                ) values_seen
                """,
                [meter.id, meter.id],
            )
            cursor.execute("CREATE UNIQUE INDEX ON bench_dict (v)")
            cursor.execute("SELECT count(*) FROM bench_dict")
            [size] = cursor.fetchone()
            for table, column in (("daily", "day"), ("hourly", "hour")):
                cursor.execute(
                    f"""
                    CREATE TABLE bench_bits_{table} AS
                    SELECT b.customer_id, b.{column}, b.event_count,
                           bit_or(set_bit(repeat('0', %s)::varbit, d.id - 1, 1)) AS bits
                    FROM meters_{table}usage b
                    LEFT JOIN LATERAL unnest(b.distinct_values) AS u(v) ON TRUE
                    LEFT JOIN bench_dict d ON d.v = u.v
                    WHERE b.meter_id = %s
                    GROUP BY b.id, b.customer_id, b.{column}, b.event_count
                    """,
                    [max(size, 1), meter.id],
                )
                cursor.execute(f"CREATE INDEX ON bench_bits_{table} ({column})")
                cursor.execute(f"ANALYZE bench_bits_{table}")
            cursor.execute(
                "SELECT (SELECT coalesce(sum(pg_column_size(distinct_values)), 0) FROM"
                " meters_hourlyusage WHERE meter_id = %s) + (SELECT coalesce(sum("
                "pg_column_size(distinct_values)), 0) FROM meters_dailyusage WHERE meter_id = %s),"
                " (SELECT sum(pg_column_size(bits)) FROM bench_bits_hourly)"
                " + (SELECT sum(pg_column_size(bits)) FROM bench_bits_daily)",
                [meter.id, meter.id],
            )
            text_bytes, bits_bytes = cursor.fetchone()
            times = {}
            for shape in _SHAPES:
                queries = {
                    "sum": _prototype_sql(
                        "sum", shape, ("meters_dailyusage", "meters_hourlyusage"),
                        f"meter_id = '{sum_meter.id}'",
                    ),
                    "text": _prototype_sql(
                        "text", shape, ("meters_dailyusage", "meters_hourlyusage"),
                        f"meter_id = '{meter.id}'",
                    ),
                    "bits": _prototype_sql(
                        "bits", shape, ("bench_bits_daily", "bench_bits_hourly"), "TRUE"
                    ),
                }  # fmt: skip
                answers = {}
                for kind, sql in queries.items():
                    cursor.execute(sql, bounds)
                    answers[kind] = [(g, int(n or 0), int(d or 0)) for g, n, d in cursor.fetchall()]
                if answers["text"] != answers["bits"]:
                    raise BenchmarkFailed(f"{meter.name}: bit strings differ from the text sets")
                samples: dict[str, list[float]] = {kind: [] for kind in queries}
                for _ in range(runs):
                    for kind, sql in queries.items():  # interleaved: the same load for each
                        started = time.perf_counter()
                        cursor.execute(sql, bounds)
                        cursor.fetchall()
                        samples[kind].append((time.perf_counter() - started) * 1000)
                times[shape] = {k: round(statistics.median(v), 1) for k, v in samples.items()}
            cursor.execute("DROP TABLE bench_dict, bench_bits_daily, bench_bits_hourly")
            figures[meter.name] = {
                "dictionary": size,
                "text_bytes": int(text_bytes),
                "bits_bytes": int(bits_bytes),
                "ms": times,
            }
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
        "--bitmap-prototype", action="store_true", help="also measure the bit-string sets"
    )
    add_database_options(parser, db_name="billing_bench_aggregations")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict = {
        "parameters": vars(args) | {"json": str(args.json) if args.json else None},
        "machine": machine(args.server_url),
    }
    try:
        if args.skip_load:
            db_url = database_url(args.server_url, args.db_name)
            start, loaded = loaded_data_start(db_url)
            print(f"reusing {args.db_name}: {loaded:,} events from {start.isoformat()}")
            results["events_loaded"] = loaded
            setup_django(db_url)
            meters = existing_meters()
        else:
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
        if args.bitmap_prototype:
            results["bitmap_prototype"] = bitmap_prototype(
                meters, window_start, window_end, args.runs
            )
    except BenchmarkFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
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
    print("\nlatency from rollups, ms, median / p95 (x: median over sum's):")
    for query, by_meter in results["latency"].items():
        reference = by_meter[names[0]]["median_ms"]
        cells = []
        for name in names:
            figures = by_meter[name]
            ratio = figures["median_ms"] / reference
            cells.append(f"{figures['median_ms']:.1f}/{figures['p95_ms']:.1f} {ratio:.1f}x")
        print(f"{query:<48}" + "".join(f"{cell:>20}" for cell in cells))
    for meter_name, figures in results.get("bitmap_prototype", {}).items():
        print(
            f"\nbit-string prototype, {meter_name}: {figures['dictionary']:,} values in the "
            f"dictionary; sets {figures['text_bytes']:,} bytes as text, "
            f"{figures['bits_bytes']:,} as bits; whole buckets of the window, ms median:"
        )
        for shape, times in figures["ms"].items():
            ratio = times["bits"] / times["sum"]
            print(
                f"  {shape:<28} sum {times['sum']:>7.1f}  text sets {times['text']:>7.1f}"
                f"  bits {times['bits']:>7.1f}  bits/sum {ratio:.1f}x"
            )


if __name__ == "__main__":
    sys.exit(main())
