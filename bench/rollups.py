"""Rollup benchmark: backfill and incremental rollups against the plain GROUP BY ceiling, on
tables whose statistics are stale.

    python -m bench.rollups                     # 3M events, 1,000 customers, 30 days
    python -m bench.rollups --events 500000     # quicker
    python -m bench.rollups --skip-load         # reuse the loaded database
    python -m bench.rollups --help

The database is migrated, its events' monthly partitions created, ANALYZEd once while
`events_event` holds 100 events of another name in each (a new installation's first events;
autovacuum is off on the benchmark machine, and the benchmark never analyzes `events_event`
again), then loaded with PostgreSQL COPY (bench/usage.py's data: 10 event names, one meter
each). Every figure is events/s over the same events, measured in one run:

- ceiling: for each meter, one `INSERT ... SELECT ... GROUP BY` of its hourly buckets straight
  from the events, one of its daily buckets from those and one of its weekly buckets from
  those (meters that keep them), into empty copies of the bucket tables (same indexes): the
  least work that produces the same rows. Measured first with the
  stale statistics, and again at the very end after `ANALYZE events_event`; the faster of the
  two is the ceiling, both are shown;
- backfill: `meters.rollups.backfill_meter` for every meter from empty bucket tables;
- incremental: every event logged in `events_ingestbatch` (1,000 ids a row with their timestamp
  range, as ingestion writes them; bench/usage.py's `rewind`, which VACUUM ANALYZEs the bucket
  tables and the log, never the events), bucket tables empty, then
  `meters.rollups.roll_up_pending` on `--workers` threads (one connection each) until none is
  left. A sampler records how often a worker's backend waits on a lock (a bucket, meter or
  batch row held by the other worker).

After backfill and after incremental, the bucket tables must equal the ceiling's rows exactly;
the run stops with FAILED otherwise.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg

from bench.common import (
    BenchmarkFailed,
    add_database_options,
    benchmark_parser,
    database_url,
    finish,
    machine_line,
    run_benchmark,
    start_results,
)
from bench.usage import (
    DAYS,
    backfill_all,
    data_start_for,
    ensure_meters,
    load_events,
    loaded_data_start,
    prepare_database,
    rewind,
    roll_up,
    setup_django,
)
from events.partitions import Month, create_month_partition, month_partitions

BACKFILL_GOAL = 0.5  # of the ceiling
INCREMENTAL_GOAL = 0.3
BUCKET_TABLES = ("meters_hourlyusage", "meters_dailyusage", "meters_weeklyusage")
CEILING_TABLES = {  # bucket table: (its empty copy for the ceiling, its time column)
    "meters_hourlyusage": ("bench_ceiling_hourly", "hour"),
    "meters_dailyusage": ("bench_ceiling_daily", "day"),
    "meters_weeklyusage": ("bench_ceiling_weekly", "week"),
}


def analyze_while_small(db_url: str, start: datetime) -> None:
    """The statistics of a new installation: the months' partitions from `start` to now created
    (as the beat task would have), ANALYZE with 100 events of one other name in each month and
    one logged batch, then those rows deleted. Nothing analyzes the events again."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        months, month = [], Month.of(start)
        while month <= Month.of(datetime.now(UTC) + timedelta(days=DAYS)):
            months.append(month)
            month = month.next()
        with conn.transaction(), conn.cursor() as cursor:
            for month in months:
                if month not in month_partitions(cursor):
                    create_month_partition(cursor, month)
        for month in months:
            conn.execute(
                "INSERT INTO events_event (event_id, customer_id, event_name, timestamp, "
                "metadata, ingested_at) SELECT 'seed_' || %s || '_' || n, 'cus_seed', "
                "'seed.event', %s, '{}', now() FROM generate_series(1, 100) n",
                [str(month), month.start],
            )
        conn.execute("INSERT INTO events_ingestbatch (event_ids, created_at) VALUES ('{1}', now())")
        conn.execute("ANALYZE")
        conn.execute("DELETE FROM events_ingestbatch")
        conn.execute("DELETE FROM events_event")


def load_on_stale_statistics(
    args: argparse.Namespace, events: int
) -> tuple[str, dict[str, str], datetime, dict[str, float]]:
    """The benchmark's database (`--db-name`), its statistics a new installation's
    (`analyze_while_small`), then `events` events of the last month (`--customers`, `--seed`)
    COPYed in and never analyzed; (URL, project env, first hour of the events, load timings)."""
    print(f"creating {args.db_name}, ANALYZE while small, COPY {events:,} events")
    db_url, env = prepare_database(args.server_url, args.db_name)
    start = data_start_for(datetime.now(UTC).date())
    analyze_while_small(db_url, start)
    timings = load_events(
        db_url,
        events=events,
        customers=args.customers,
        start=start,
        seed=args.seed,
        analyze=False,
    )
    return db_url, env, start, timings


def statistics_seen(db_url: str) -> dict:
    """What the planner's statistics say about the tables the rollups read."""
    with psycopg.connect(db_url) as conn:
        tables = dict(
            conn.execute(
                "SELECT relname, reltuples::bigint FROM pg_class "
                "WHERE (relname = ANY(%s) OR relname LIKE 'events\\_event\\_p%%') "
                "AND relkind IN ('r', 'p') ORDER BY relname",
                [["events_event", "events_ingestbatch", *BUCKET_TABLES]],
            ).fetchall()
        )
        names = conn.execute(
            "SELECT string_agg(DISTINCT most_common_vals::text, ' ') FROM pg_stats "
            "WHERE tablename LIKE 'events\\_event%' AND attname = 'event_name'"
        ).fetchone()
        analyzed = conn.execute(
            "SELECT max(last_analyze)::text, max(last_autoanalyze)::text FROM pg_stat_user_tables "
            "WHERE relname LIKE 'events\\_event\\_%'"
        ).fetchone()
    return {
        "reltuples": tables,
        "event_name_most_common_vals": names[0] if names else None,
        "events_last_analyze": analyzed[0],
        "events_last_autoanalyze": analyzed[1],
    }


# --- the three measurements (Django configured on the benchmark database) ----------------------


def empty_buckets() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(BUCKET_TABLES)}")


def ceiling(meters: list) -> float:
    """Each meter's buckets with one plain GROUP BY per table into empty copies; seconds taken."""
    from django.db import connection, transaction

    from meters.usage import (
        BUCKET_COLUMNS,
        bucket_rows_sql,
        event_row_sql,
        matching_events_sql,
        merged_aggregate_columns,
        raw_aggregate_columns,
    )

    with connection.cursor() as cursor:
        for table, (copy, _) in CEILING_TABLES.items():
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {copy} (LIKE {table} INCLUDING ALL)")
            cursor.execute(f"TRUNCATE {copy}")
    started = time.perf_counter()
    for meter in meters:
        match_sql, match_params = matching_events_sql(meter)
        row_sql, row_params = event_row_sql(meter)
        hours = (
            "(SELECT *, date_trunc('day', hour, 'UTC') AS day FROM bench_ceiling_hourly "
            "WHERE meter_id = %s)"
        )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")  # as the rollups run
            cursor.execute(
                f"""
                INSERT INTO bench_ceiling_hourly (meter_id, customer_id, hour, {BUCKET_COLUMNS})
                SELECT %s, customer_id, hour, {raw_aggregate_columns(meter)}
                FROM (
                    SELECT e.customer_id, date_trunc('hour', e.timestamp, 'UTC') AS hour,
                           {row_sql}
                    FROM events_event e WHERE {match_sql}
                ) matched
                GROUP BY customer_id, hour
                """,
                [meter.id, *row_params, *match_params],
            )
            cursor.execute(
                f"""
                INSERT INTO bench_ceiling_daily (meter_id, customer_id, day, {BUCKET_COLUMNS})
                SELECT meter_id, customer_id, day, {merged_aggregate_columns(meter)}
                FROM {bucket_rows_sql(meter, hours)}
                GROUP BY meter_id, customer_id, day
                """,
                [meter.id],
            )
            if meter.keeps_weekly_buckets:
                days = "(SELECT * FROM bench_ceiling_daily WHERE meter_id = %s)"
                cursor.execute(
                    f"""
                    INSERT INTO bench_ceiling_weekly
                        (meter_id, customer_id, week, {BUCKET_COLUMNS})
                    SELECT meter_id, customer_id, date_trunc('week', day, 'UTC'),
                           {merged_aggregate_columns(meter)}
                    FROM {bucket_rows_sql(meter, days)}
                    GROUP BY meter_id, customer_id, date_trunc('week', day, 'UTC')
                    """,
                    [meter.id],
                )
    return time.perf_counter() - started


def verify_against_ceiling(label: str) -> None:
    """Both bucket tables hold exactly the ceiling's rows."""
    from django.db import connection

    from meters.usage import BUCKET_COLUMNS

    with connection.cursor() as cursor:
        for table, (copy, key) in CEILING_TABLES.items():
            columns = f"meter_id, customer_id, {key}, {BUCKET_COLUMNS}"
            cursor.execute(
                f"""
                SELECT (SELECT count(*) FROM (SELECT {columns} FROM {table}
                                              EXCEPT ALL SELECT {columns} FROM {copy}) a),
                       (SELECT count(*) FROM (SELECT {columns} FROM {copy}
                                              EXCEPT ALL SELECT {columns} FROM {table}) b),
                       (SELECT count(*) FROM {copy})
                """
            )
            extra, missing, rows = cursor.fetchone()
            if extra or missing or not rows:
                raise BenchmarkFailed(
                    f"{label}: {table} differs from the ceiling's {rows:,} rows: "
                    f"{extra} rows not in it, {missing} of its rows missing"
                )


def incremental(workers: int, db_url: str, start: datetime) -> tuple[int, float, dict]:
    """Every event logged again (`rewind`), then `roll_up` on `workers` threads while a sampler
    watches their backends; (events, seconds, lock waits)."""
    pending = rewind(start.replace(hour=0))
    samples = {"samples": 0, "waiting_on_lock": 0, "busy": 0}
    done = threading.Event()

    def sample() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not done.is_set():
                rows = conn.execute(
                    "SELECT wait_event_type FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend' AND state = 'active'"
                ).fetchall()
                samples["samples"] += workers
                samples["busy"] += len(rows)
                samples["waiting_on_lock"] += sum(1 for (kind,) in rows if kind == "Lock")
                time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        seconds = roll_up(pending, workers)
    finally:
        done.set()
        sampler.join()
    return pending, seconds, samples


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser("python -m bench.rollups", __doc__)
    parser.add_argument("--events", type=int, default=3_000_000, help="events to load")
    parser.add_argument("--customers", type=int, default=1000, help="customers in the events")
    parser.add_argument("--workers", type=int, default=2, help="incremental rollup workers")
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded database")
    add_database_options(parser, db_name="billing_bench_rollups")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = start_results(args)
    if args.skip_load:
        db_url = database_url(args.server_url, args.db_name)
        start, loaded = loaded_data_start(db_url)
    else:
        db_url, _, start, timings = load_on_stale_statistics(args, args.events)
        loaded = args.events
        results["load"] = {k: round(v, 1) for k, v in timings.items()}
    results["events"] = loaded
    results["statistics"] = statistics_seen(db_url)
    setup_django(db_url)
    meters = ensure_meters(now=start)

    first_ceiling = ceiling(meters)
    print(f"ceiling: {loaded / first_ceiling:,.0f} events/s")
    empty_buckets()
    backfill_s = backfill_all(meters)
    verify_against_ceiling("backfill")
    print(f"backfill: {loaded / backfill_s:,.0f} events/s")
    empty_buckets()
    pending, incremental_s, waits = incremental(args.workers, db_url, start)
    verify_against_ceiling("incremental")
    print(f"incremental: {pending / incremental_s:,.0f} events/s")
    results["statistics_after"] = statistics_seen(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE events_event")
    second_ceiling = ceiling(meters)
    ceiling_s = min(first_ceiling, second_ceiling)
    results["ceiling"] = {
        "seconds": [round(first_ceiling, 1), round(second_ceiling, 1)],
        "events_per_s": round(loaded / ceiling_s),
    }
    results["backfill"] = {
        "seconds": round(backfill_s, 1),
        "events_per_s": round(loaded / backfill_s),
        "of_ceiling": round(ceiling_s / backfill_s, 2),
    }
    results["incremental"] = {
        "workers": args.workers,
        "events": pending,
        "seconds": round(incremental_s, 1),
        "events_per_s": round(pending / incremental_s),
        "of_ceiling": round(ceiling_s / incremental_s * pending / loaded, 2),
        "lock_wait_share": round(waits["waiting_on_lock"] / max(1, waits["samples"]), 3),
        "busy_share": round(waits["busy"] / max(1, waits["samples"]), 3),
    }
    finish(results, args.json)
    report(results)
    return 0


def report(results: dict) -> None:
    print()
    print(machine_line(results))
    stats = results["statistics"]
    print(
        f"statistics: reltuples {stats['reltuples']}, event_name most common values "
        f"{stats['event_name_most_common_vals']}, last ANALYZE {stats['events_last_analyze']}"
    )
    ceiling_ = results["ceiling"]
    print(
        f"ceiling (plain GROUP BY)  {ceiling_['events_per_s']:>9,} events/s "
        f"({ceiling_['seconds'][0]} s stale statistics, {ceiling_['seconds'][1]} s after ANALYZE)"
    )
    for name, goal in (("backfill", BACKFILL_GOAL), ("incremental", INCREMENTAL_GOAL)):
        run = results[name]
        verdict = "meets" if run["of_ceiling"] >= goal else "MISSES"
        print(
            f"{name:<25} {run['events_per_s']:>9,} events/s in {run['seconds']} s = "
            f"{run['of_ceiling']:.2f} of the ceiling ({verdict} the {goal} goal)"
        )
    inc = results["incremental"]
    print(
        f"incremental, {inc['workers']} workers: waiting on a lock in {inc['lock_wait_share']:.1%} "
        f"of samples (active in {inc['busy_share']:.0%})"
    )


if __name__ == "__main__":
    run_benchmark(main)
