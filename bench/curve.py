"""Cost curve: ingest, rollup and usage-query cost against the size of the event history.

    python -m bench.curve                                  # 1M, then grown to 10M events
    python -m bench.curve --sizes 1000000 --out-dir /tmp   # a quick check, docs/ left alone
    python -m bench.curve --sizes 100000000 --grow         # 100M on demand: grows the 10M database
    python -m bench.curve --help

One database (`--db-name`, dropped and recreated unless `--grow`) is grown to each size in turn:
only the difference is loaded (1M, then +9M, then +90M) with bench.usage's generator and COPY.
History grows the way an account ages: events arrive at a fixed rate per day (`--per-day`,
31,250: 1M events are 32 days, 10M are 320 days, 100M are 8.8 years), every load adds older
months before the ones already there, and the last 32 days are the same events at every size. The
30-day usage queries therefore read the same recent data whatever the size: a flat curve is the
goal, anything that grows is a cost of history.

At each size, after the load (`COPY`, indexes rebuilt, `VACUUM ANALYZE`; seconds and
`pg_database_size` noted):

- backfill: bench.usage's 10 meters rebuilt over the whole history with `backfill_meter` (that is
  how the meters catch up with the older months just loaded, and what a meter created or edited
  at that size costs); events/s is all events over the total time;
- ingest: gunicorn (4 sync workers) started on the grown database, `--ingest-events` fresh events
  (stamped within the last hour, 10% repeated ids, the meters' event names and customers)
  POSTed in batches of 1,000 from 4 client threads, as bench.ingest's `http-1000` mode;
- rollup: the pending batches those requests logged applied by one `roll_up_pending` worker;
- exactness: for a sample of customers, every meter's usage over the whole history from rollups
  equals the same query over raw events (and each timed query is compared once), else exit 1;
- latency, warm, median and p95 of `--runs` runs, of bench.usage's three queries over an
  unaligned 30-day window inside the last 32 days, for a sum and a last meter: idle (with the
  raw-event figures beside them), then again with both cores loaded by the benchmark itself: 2
  connections (`--load-connections`) that repeat, without pause and without parallel workers, a
  raw-event report over the same 30 days (per customer, count and sum of `api.call`, about
  94,000 events); the CPU they used is noted;
- plans: between the two, EXPLAIN (ANALYZE, BUFFERS) of each timed query's main statement once
  (pages hit and read, rows per relation), kept in cost_curve.json.

Results go to `--out-dir` as cost_curve.json, cost_curve.csv and cost_curve.png (the chart, log
x). `--grow` keeps the database and the rows already in cost_curve.json for the smaller sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from bench.common import (
    REPO_ROOT,
    BenchmarkFailed,
    add_database_options,
    benchmark_parser,
    cpu_seconds,
    create_api_key,
    database_url,
    finish,
    free_port,
    gunicorn_server,
    machine,
    machine_line,
    manage,
    project_env,
    run_benchmark,
)
from bench.ingest import encode_bodies, make_stream, run_http, warm_up
from bench.usage import (
    EVENT_NAMES,
    LATENCY_GOAL_MS,
    LATENCY_METERS,
    backfill_all,
    customer_id,
    ensure_meters,
    load_events,
    measure_latency,
    prepare_database,
    raw_copy,
    roll_up,
    setup_django,
)

DEFAULT_SIZES = (1_000_000, 10_000_000)
WINDOW_DAYS = 30
RECENT_DAYS = 32  # the window sits inside them; 1M events at the default rate fill exactly these
INGEST_THREADS = 4
GUNICORN_WORKERS = 4
REPEAT_FRACTION = 0.1
SAMPLE_CUSTOMERS = 25

# The load: a raw-event report over the window, as an unrolled-up export would run it.
LOAD_SQL = """
SELECT customer_id, count(*), sum((metadata->>'value')::numeric)
FROM events_event
WHERE event_name = 'api.call' AND timestamp >= %s AND timestamp < %s
GROUP BY customer_id
"""
QUERY_KEYS = {  # bench.usage's labels -> short names used in the CSV and the chart
    "one customer, 30 days (meter_usage)": "meter_usage",
    "per-customer table, 30 days (usage_by_customer)": "usage_by_customer",
    "daily series, 30 days (usage_series day)": "usage_series",
}
STATE_TABLE = "bench_curve_load"  # one row per load: what --grow continues from
# What `measure_queries` writes into a size's row (what --requery replaces).
QUERY_FIGURES = (
    "verified_customers",
    "window",
    "idle",
    "machine_busy_while_idle",
    "explain",
    "loaded",
    "load_while_timing",
    "disk",
)
# Tables summed as "buckets" (rows of cost_curve.json measured before a table existed lack it).
BUCKET_TABLES = (
    "meters_hourlyusage",
    "meters_dailyusage",
    "meters_meterdailytotal",
    "meters_weeklyusage",
)


# --- growing the history -----------------------------------------------------------------------


def history_end_for(now: datetime) -> datetime:
    """Midnight UTC two days ago: history ends in the past, fresh events come after it."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)


def read_state(db_url: str) -> tuple[int, datetime | None]:
    """(events loaded so far, history end) of the benchmark database; (0, None) if new."""
    with psycopg.connect(db_url) as conn:
        if conn.execute("SELECT to_regclass(%s)", [STATE_TABLE]).fetchone()[0] is None:
            return 0, None
        row = conn.execute(f"SELECT max(size), max(history_end) FROM {STATE_TABLE}").fetchone()
    return (int(row[0]), row[1]) if row[0] else (0, None)


def grow(
    db_url: str, *, loaded: int, size: int, end: datetime, per_day: int, customers: int, seed: int
) -> dict:
    """Load events `loaded` to `size`: the days before the history already there."""
    days = (size - loaded) / per_day
    start = end - timedelta(days=size / per_day)
    print(f"loading {size - loaded:,} events over {days:,.0f} days from {start:%Y-%m-%d}")
    timings = load_events(
        db_url,
        events=size - loaded,
        customers=customers,
        start=start,
        seed=seed + loaded,
        days=days,
        first_number=loaded,
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (size bigint PRIMARY KEY,"
            " start timestamptz, history_end timestamptz, seconds double precision)"
        )
        conn.execute(
            f"INSERT INTO {STATE_TABLE} VALUES (%s, %s, %s, %s)",
            [size, start, end, sum(timings.values())],
        )
    return {
        "events": size - loaded,
        "history_start": start.isoformat(),
        "history_days": round(size / per_day, 1),
        **{k: round(v, 1) for k, v in timings.items()},
        "seconds": round(sum(timings.values()), 1),
    }


def check_free_space(db_url: str, events: int, rows: list[dict]) -> None:
    """Refuse to grow when the server's disk (if it is this machine's) would be left with less
    than 10 GB; bytes per event are the last size's, or 700 (1M at the default rate) at first."""
    per_event = rows[-1]["disk"]["database"] / rows[-1]["size"] if rows else 700
    with psycopg.connect(db_url) as conn:
        data_directory = Path(conn.execute("SHOW data_directory").fetchone()[0])
    if not data_directory.exists():
        return  # a server elsewhere: its operator's call
    free = shutil.disk_usage(data_directory).free
    needed = per_event * events * 1.2  # + the index rebuild's sort files
    if free - needed < 10e9:
        raise BenchmarkFailed(
            f"{events:,} more events need about {needed / 1e9:.0f} GB; "
            f"{free / 1e9:.0f} GB are free under {data_directory}"
        )


def disk(db_url: str) -> dict:
    """Bytes on disk: the database, and the events and bucket tables with their indexes."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT pg_database_size(current_database()),"
            # Partitioned by month: the parent holds no rows, its partitions do.
            " (SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint"
            "  FROM pg_partition_tree('events_event')),"
            + "".join(f" pg_total_relation_size('{table}')," for table in BUCKET_TABLES)
            + " (SELECT reltuples FROM pg_class WHERE oid = 'meters_hourlyusage'::regclass),"
            " (SELECT reltuples FROM pg_class WHERE oid = 'meters_dailyusage'::regclass)"
        ).fetchone()
    keys = ("database", "events_event", *BUCKET_TABLES)
    return dict(zip(keys, row[: len(keys)], strict=True)) | {
        "hourly_rows_estimate": int(row[len(keys)]),
        "daily_rows_estimate": int(row[len(keys) + 1]),
    }


def vacuum_buckets() -> None:
    """As autovacuum soon would after a backfill: planner statistics for the new buckets."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "VACUUM (ANALYZE) meters_hourlyusage, meters_dailyusage, meters_weeklyusage,"
            " meters_meterdailytotal, events_ingestbatch"
        )


# --- ingest and rollup of fresh events ---------------------------------------------------------


def meter_event(rng: random.Random, now: datetime, customers: int) -> dict:
    """A fresh event for one of the benchmark's meters, stamped within the last hour."""
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "customer_id": customer_id(rng.randrange(customers)),
        "event_name": rng.choice(EVENT_NAMES),
        "timestamp": (now - timedelta(seconds=rng.uniform(0, 3600))).isoformat(),
        "metadata": {"region": rng.choice(("eu", "us")), "value": rng.randrange(1, 1000)},
    }


def pending_events() -> int:
    from events.queries import pending_batch_stats

    return pending_batch_stats()[1]


def ingest_and_roll_up(db_url: str, env: dict[str, str], api_key: str, args, size: int) -> dict:
    """HTTP ingest of fresh events on the grown table, then the incremental rollup of them."""
    stream = make_stream(
        args.ingest_events,
        1000,
        REPEAT_FRACTION,
        args.customers,
        lag=INGEST_THREADS,
        seed=args.seed + size,
        make_event=meter_event,
    )
    bodies = encode_bodies(stream)
    with gunicorn_server(
        env, workers=GUNICORN_WORKERS, port=free_port(), api_key=api_key
    ) as server:
        warm_up(server.url, api_key, INGEST_THREADS, GUNICORN_WORKERS)
        roll_up(pending_events())  # the warm-up's events, so only the timed ones are pending
        since = datetime.now(UTC)
        seconds, reported, server_cpu = run_http(server, db_url, api_key, bodies, INGEST_THREADS)
    with psycopg.connect(db_url) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM events_event WHERE ingested_at >= %s", [since]
        ).fetchone()[0]
    pending = pending_events()
    checks = {"sum of ingested_count": reported, "new rows": stored, "pending ids": pending}
    wrong = {k: v for k, v in checks.items() if v != stream.distinct_ids}
    if wrong:
        raise BenchmarkFailed(f"ingest: expected {stream.distinct_ids} distinct ids, got {wrong}")
    rollup_s = roll_up(pending)
    return {
        "ingest": {
            "events": stream.events,
            "distinct": stream.distinct_ids,
            "seconds": round(seconds, 2),
            "events_per_s": round(stream.events / seconds),
            "server_cpu_ms_per_1000": round(server_cpu * 1e6 / stream.events, 1),
        },
        "rollup": {
            "events": pending,
            "seconds": round(rollup_s, 2),
            "events_per_s": round(pending / rollup_s),
        },
    }


# --- exactness ---------------------------------------------------------------------------------


def verify_sample(meters: list, start: datetime, end: datetime, customers: int, seed: int) -> int:
    """Every meter's usage over [start, end) from rollups equals raw events for a sample of
    customers (the whole table over all history would cost minutes at 100M)."""
    from meters.usage import usage_by_customer

    sample = sorted(
        {customer_id(n) for n in random.Random(seed).sample(range(customers), SAMPLE_CUSTOMERS)}
    )
    for meter in meters:
        if not meter.rollups_ready:
            raise BenchmarkFailed(f"{meter.name}: rollups are not ready")
        from_rollups = usage_by_customer(meter, start, end, customer_ids=sample)
        from_raw = usage_by_customer(raw_copy(meter), start, end, customer_ids=sample)
        if from_rollups != from_raw or len(from_raw) != len(sample):
            different = [c for c in sample if from_rollups.get(c) != from_raw.get(c)]
            raise BenchmarkFailed(
                f"{meter.name}: rollups differ from raw events (or customers are missing) for "
                f"{len(different)} of {len(sample)} sampled customers, e.g. {different[:3]}"
            )
    return len(sample)


# --- latency, idle and loaded ------------------------------------------------------------------


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


@contextlib.contextmanager
def sql_load(db_url: str, start: datetime, end: datetime, connections: int) -> Iterator[dict]:
    """`connections` backends repeating LOAD_SQL until the block ends; yields a dict that gets
    the queries they ran and the CPU cores they kept busy on average."""
    stop = threading.Event()
    conns = [psycopg.connect(db_url, autocommit=True) for _ in range(connections)]
    pids = [conn.info.backend_pid for conn in conns]
    done = [0] * connections
    errors: list[BaseException] = []

    def work(number: int) -> None:
        conn = conns[number]
        try:
            conn.execute("SET max_parallel_workers_per_gather = 0")
            while not stop.is_set():
                conn.execute(LOAD_SQL, [start, end]).fetchall()
                done[number] += 1
        except psycopg.errors.QueryCanceled:
            if not stop.is_set():
                errors.append(BenchmarkFailed("a load query was cancelled"))
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(connections)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # under way before the first timed query
    stats: dict = {"connections": connections, "query": "raw api.call per customer, 30 days"}
    cpu_before, began, ticks_before = cpu_seconds(pids), time.perf_counter(), machine_ticks()
    try:
        yield stats
    finally:
        wall = time.perf_counter() - began
        used = cpu_seconds(pids) - cpu_before
        (busy_after, total_after), (busy_before, total_before) = machine_ticks(), ticks_before
        busy, total = busy_after - busy_before, total_after - total_before
        stop.set()
        for conn in conns:
            conn.cancel_safe()
        for thread in threads:
            thread.join()
        for conn in conns:
            conn.close()
        stats.update(
            queries=sum(done),
            seconds=round(wall, 1),
            cores_busy=round(used / wall, 2),
            machine_busy=round(busy / max(total, 1), 2),  # share of all CPUs, anyone's work
            query_ms=round(wall * connections * 1000 / max(sum(done), 1), 1),
        )
    if errors:
        raise BenchmarkFailed(f"the load failed: {errors[0]!r}")


def latency_rows(meters: list, window: tuple[datetime, datetime], args, *, raw: bool) -> dict:
    """{query: {meter: {p50_ms, p95_ms[, raw_p50_ms, raw_p95_ms]}}} for LATENCY_METERS."""
    rows: dict = {}
    for meter in meters:
        if meter.name not in LATENCY_METERS:
            continue
        for latency in measure_latency(
            meter, *window, args.customers, args.runs, args.seed, with_raw=raw
        ):
            figures = {
                "p50_ms": round(statistics.median(latency.rollups_ms), 2),
                "p95_ms": round(latency.p95(latency.rollups_ms), 2),
            }
            if raw:
                figures["raw_p50_ms"] = round(statistics.median(latency.raw_ms), 1)
                figures["raw_p95_ms"] = round(latency.p95(latency.raw_ms), 1)
            rows.setdefault(QUERY_KEYS[latency.query], {})[meter.name] = figures
    return rows


def _plan_nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def explain_queries(meters: list, window: tuple[datetime, datetime]) -> dict:
    """{query: {meter: plan summary}}: EXPLAIN (ANALYZE, BUFFERS) of the statement each timed
    query spends its time in (its longest), run once on a warm cache. Pages read from outside
    `shared_buffers` against pages hit, and the rows each relation gave, tell a cache effect
    from a plan change when a size is slower than the one before."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from meters.usage import meter_usage, usage_by_customer, usage_series

    queries = {
        "meter_usage": lambda m: meter_usage(m, customer_id(0), *window),
        "usage_by_customer": lambda m: usage_by_customer(m, *window),
        "usage_series": lambda m: usage_series(m, *window, "day"),
    }
    summaries: dict = {}
    for meter in meters:
        if meter.name not in LATENCY_METERS:
            continue
        for name, query in queries.items():
            with CaptureQueriesContext(connection) as captured:
                query(meter)
            sql = max((q["sql"] for q in captured.captured_queries), key=len)
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
                result = cursor.fetchone()[0][0]
            relations: dict = {}
            for node in _plan_nodes(result["Plan"]):
                if "Relation Name" in node:
                    seen = relations.setdefault(node["Relation Name"], {"rows": 0, "scans": []})
                    seen["rows"] += node["Actual Rows"] * node["Actual Loops"]
                    indexes = [
                        child["Index Name"]
                        for child in _plan_nodes(node)
                        if child is node or "Relation Name" not in child
                        if "Index Name" in child
                    ]
                    on = f" ({', '.join(dict.fromkeys(indexes))})" if indexes else ""
                    seen["scans"].append(node["Node Type"] + on)
            summaries.setdefault(name, {})[meter.name] = {
                "execution_ms": round(result["Execution Time"], 2),
                "planning_ms": round(result["Planning Time"], 2),
                "shared_hit": result["Plan"].get("Shared Hit Blocks", 0),
                "shared_read": result["Plan"].get("Shared Read Blocks", 0),
                "relations": relations,
            }
    return summaries


# --- one size ----------------------------------------------------------------------------------


def measure_size(
    db_url: str, env: dict[str, str], api_key: str, args, size: int, loaded: int, rows: list
) -> dict:
    """Grow to `size` events and measure everything there; returns the size's results."""
    from meters.models import Meter

    check_free_space(db_url, size - loaded, rows)

    row: dict = {"size": size, "load_average_before": os.getloadavg()}
    began = time.perf_counter()
    _, end = read_state(db_url)
    end = end or history_end_for(datetime.now(UTC))
    row["load"] = grow(
        db_url,
        loaded=loaded,
        size=size,
        end=end,
        per_day=args.per_day,
        customers=args.customers,
        seed=args.seed,
    )
    row["disk_after_load"] = disk(db_url)
    meters = ensure_meters(now=datetime.now(UTC))
    backfill_s = backfill_all(meters)
    vacuum_buckets()
    row["backfill"] = {
        "scope": "10 meters, whole history",
        "events": size,
        "seconds": round(backfill_s, 1),
        "events_per_s": round(size / backfill_s),
    }
    print(f"backfill: {size:,} events in {backfill_s:.1f} s = {size / backfill_s:,.0f}/s")
    row |= ingest_and_roll_up(db_url, env, api_key, args, size)
    vacuum_buckets()
    print("ingest {events_per_s:,}/s, rollup ".format(**row["ingest"]) + f"{row['rollup']}")

    meters = [Meter.objects.get(pk=meter.pk) for meter in meters]
    history_start = datetime.fromisoformat(row["load"]["history_start"])
    row |= measure_queries(db_url, args, meters, history_start, end, size)
    row["seconds"] = round(time.perf_counter() - began, 1)
    row["load_average_after"] = os.getloadavg()
    return row


def measure_queries(
    db_url: str, args, meters: list, history_start: datetime, end: datetime, size: int
) -> dict:
    """Exactness on a sample, then the queries' latency idle and loaded, and the disk used."""
    row: dict = {}
    row["verified_customers"] = verify_sample(
        meters,
        history_start - timedelta(hours=1),
        datetime.now(UTC) + timedelta(days=1),
        args.customers,
        args.seed + size,
    )
    print(f"exactness: rollups equal raw events for {row['verified_customers']} customers")

    window_start = (
        end - timedelta(days=WINDOW_DAYS + 1) + timedelta(hours=7, minutes=13, seconds=27.5)
    )
    window = (window_start, window_start + timedelta(days=WINDOW_DAYS))
    row["window"] = [moment.isoformat() for moment in window]
    (busy_before, total_before) = machine_ticks()
    row["idle"] = latency_rows(meters, window, args, raw=True)
    busy_after, total_after = machine_ticks()
    # "Idle" means no load of the benchmark's own; other work on a shared machine shows here.
    row["machine_busy_while_idle"] = round(
        (busy_after - busy_before) / max(total_after - total_before, 1), 2
    )
    row["explain"] = explain_queries(meters, window)
    for query, by_meter in row["explain"].items():
        for name, plan in by_meter.items():
            print(
                f"explain {query}, {name}: {plan['execution_ms']} ms in the backend, "
                f"{plan['shared_hit']:,} pages hit, {plan['shared_read']:,} read"
            )
    with sql_load(db_url, *window, args.load_connections) as load:
        row["loaded"] = latency_rows(meters, window, args, raw=False)
    row["load_while_timing"] = load
    row["disk"] = disk(db_url)
    return row


def requery(db_url: str, env: dict[str, str], args, results: dict) -> None:
    """Migrate the grown database to this code and time its queries again at the size it holds:
    a change to the queries or their pre-aggregates measured without loading the history again.
    The size's load, backfill, ingest and rollup figures stay those of the run that grew it; its
    earlier query figures move to `queries_before`."""
    from meters.models import Meter

    size, end = read_state(db_url)
    kept = {row["size"]: row for row in results["sizes"]}
    if not size or size not in kept:
        raise BenchmarkFailed(f"{args.db_name} holds no size measured in {args.out_dir}")
    row = kept[size]
    print(f"=== {size:,} events: queries again ===")
    began = time.perf_counter()
    manage(env, "migrate", "--no-input")
    migrated_s = time.perf_counter() - began
    vacuum_buckets()
    meters = list(Meter.objects.filter(name__in=LATENCY_METERS).order_by("name"))
    history_start = datetime.fromisoformat(row["load"]["history_start"])
    row["queries_before"] = {key: row[key] for key in QUERY_FIGURES if key in row}
    row["requery"] = {
        "load_average_before": os.getloadavg(),
        "migrate_and_vacuum_s": round(time.perf_counter() - began, 1),
        "migrate_s": round(migrated_s, 1),
    }
    row |= measure_queries(db_url, args, meters, history_start, end, size)
    row["requery"]["load_average_after"] = os.getloadavg()


# --- output ------------------------------------------------------------------------------------


def bucket_bytes(disk_row: dict) -> int:
    return sum(disk_row.get(table, 0) for table in BUCKET_TABLES)


def flat(row: dict) -> dict:
    """One CSV line per size."""
    line = {
        "events": row["size"],
        "history_days": row["load"]["history_days"],
        "load_s": row["load"]["seconds"],
        "database_bytes": row["disk"]["database"],
        "events_table_bytes": row["disk"]["events_event"],
        "bucket_tables_bytes": bucket_bytes(row["disk"]),
        "backfill_events_per_s": row["backfill"]["events_per_s"],
        "ingest_events_per_s": row["ingest"]["events_per_s"],
        "ingest_server_cpu_ms_per_1000": row["ingest"]["server_cpu_ms_per_1000"],
        "rollup_events_per_s": row["rollup"]["events_per_s"],
        "machine_busy_while_idle": row["machine_busy_while_idle"],
        "load_cores_busy": row["load_while_timing"]["cores_busy"],
        "machine_busy_while_loaded": row["load_while_timing"]["machine_busy"],
    }
    for condition in ("idle", "loaded"):
        for query, by_meter in row[condition].items():
            for meter, figures in by_meter.items():
                for key, value in figures.items():
                    line[f"{query} {meter} {condition} {key}"] = value
    return line


def write_outputs(results: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cost_curve.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    lines = [flat(row) for row in results["sizes"]]
    with (out_dir / "cost_curve.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(lines[-1]))
        writer.writeheader()
        writer.writerows(lines)
    chart(results, out_dir / "cost_curve.png")


def chart(results: dict, path: Path) -> None:
    """The curve: throughput, query latency and disk against history size, log x."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = results["sizes"]
    sizes = [row["size"] for row in rows]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), constrained_layout=True)
    throughput = (
        (axes[0][0], "HTTP ingest (batches of 1,000)", [("ingest", "ingest", "tab:blue")]),
        (
            axes[0][1],
            "rollup",
            [
                ("rollup", "incremental, 1 worker", "tab:blue"),
                ("backfill", "backfill, 10 meters, whole history", "tab:green"),
            ],
        ),
    )
    for ax, title, series in throughput:
        for key, label, color in series:
            ax.plot(sizes, [r[key]["events_per_s"] for r in rows], "o-", color=color, label=label)
        ax.set_title(title)
        ax.set_ylabel("events/s")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    colors = {
        ("idle", "LLM tokens"): "tab:blue",
        ("idle", "Seats"): "tab:green",
        ("loaded", "LLM tokens"): "tab:orange",
        ("loaded", "Seats"): "tab:red",
    }
    panels = (axes[0][2], axes[1][0], axes[1][1])
    for ax, query in zip(panels, QUERY_KEYS.values(), strict=True):
        for (condition, meter), color in colors.items():
            for key, style in (("p95_ms", "o-"), ("p50_ms", "x--")):
                values = [r[condition][query][meter][key] for r in rows]
                label = f"{meter}, {condition}, {key.split('_')[0]}"
                ax.plot(sizes, values, style, color=color, label=label)
        ax.axhline(LATENCY_GOAL_MS, color="grey", linestyle=":", label="goal: p95 < 50 ms")
        ax.set_title(f"{query}, 30 days")
        ax.set_ylabel("ms")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, ncol=2)
    ax = axes[1][2]
    ax.plot(sizes, [r["disk"]["database"] / 1e9 for r in rows], "o-", label="pg_database_size")
    ax.plot(sizes, [r["disk"]["events_event"] / 1e9 for r in rows], "x--", label="events_event")
    ax.set_title("disk")
    ax.set_ylabel("GB")
    ax.legend(fontsize=8)
    for ax in axes.flat:
        ax.set_xscale("log")
        ax.set_xlabel("events in history")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Cost curve ({machine_line(results)})", fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def estimate(rows: list[dict], target: int = 100_000_000) -> dict | None:
    """Disk and time at `target` events, extrapolated linearly from the last load step."""
    if len(rows) < 2 or rows[-1]["size"] >= target:
        return None
    before, last = rows[-2], rows[-1]
    grown = last["size"] - before["size"]
    per_event_disk = (last["disk"]["database"] - before["disk"]["database"]) / grown
    per_event_load = last["load"]["seconds"] / last["load"]["events"]
    backfill_per_event = last["backfill"]["seconds"] / last["size"]
    more = target - last["size"]
    return {
        "events": target,
        "database_bytes": round(last["disk"]["database"] + per_event_disk * more),
        "disk_per_10m_bytes": round(per_event_disk * 10_000_000),
        "load_seconds": round(per_event_load * more),
        "backfill_seconds": round(backfill_per_event * target),
        "basis": f"{before['size']:,} -> {last['size']:,} events",
    }


def report(results: dict) -> None:
    """Markdown tables, as docs/benchmarks.md shows them."""
    print("\n" + machine_line(results) + "\n")
    print(
        "| events | history | load | database | events_event | buckets | backfill, 10 meters "
        "| HTTP ingest (server CPU / 1k) | incremental rollup |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in results["sizes"]:
        d, b, i, r = row["disk"], row["backfill"], row["ingest"], row["rollup"]
        buckets = bucket_bytes(d)
        print(
            f"| {row['size']:,} | {row['load']['history_days']:,.0f} days "
            f"| {row['load']['seconds']:,.0f} s | {d['database'] / 1e9:.2f} GB "
            f"| {d['events_event'] / 1e9:.2f} GB | {buckets / 1e9:.2f} GB "
            f"| {b['events_per_s']:,}/s ({b['seconds']:,.0f} s) "
            f"| {i['events_per_s']:,}/s ({i['server_cpu_ms_per_1000']:.0f} ms) "
            f"| {r['events_per_s']:,}/s |"
        )
    print(
        "\n| events | query (30 days) | meter | idle p50 / p95 | raw events, idle p50 / p95 "
        "| loaded p50 / p95 | loaded p95 < 50 ms |"
    )
    print("|---:|---|---|---:|---:|---:|---|")
    for row in results["sizes"]:
        for query in QUERY_KEYS.values():
            for meter in LATENCY_METERS:
                idle, loaded = row["idle"][query][meter], row["loaded"][query][meter]
                print(
                    f"| {row['size']:,} | `{query}` | {meter} "
                    f"| {idle['p50_ms']:.1f} / {idle['p95_ms']:.1f} ms "
                    f"| {idle['raw_p50_ms']:,.0f} / {idle['raw_p95_ms']:,.0f} ms "
                    f"| {loaded['p50_ms']:.1f} / {loaded['p95_ms']:.1f} ms "
                    f"| {'met' if loaded['p95_ms'] < LATENCY_GOAL_MS else 'missed'} |"
                )
    print()
    for row in results["sizes"]:
        load = row["load_while_timing"]
        print(
            f"{row['size']:,}: load {load['connections']} x {load['query']}, "
            f"{load['cores_busy']:.2f} cores busy (machine {load['machine_busy']:.0%} busy), "
            f"{load['query_ms']:.0f} ms per load query; machine "
            f"{row['machine_busy_while_idle']:.0%} busy while timing idle; "
            f"load average {row['load_average_before'][0]:.1f} -> "
            f"{row['load_average_after'][0]:.1f}, step {row['seconds']:.0f} s"
        )
    if results.get("estimate"):
        e = results["estimate"]
        print(
            f"estimate for {e['events']:,} events ({e['basis']}): database "
            f"{e['database_bytes'] / 1e9:.0f} GB ({e['disk_per_10m_bytes'] / 1e9:.1f} GB per 10M), "
            f"load {e['load_seconds'] / 60:.0f} min, backfill {e['backfill_seconds'] / 60:.0f} min"
        )


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser("python -m bench.curve", __doc__)
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=list(DEFAULT_SIZES),
        help="history sizes in events, ascending, e.g. 1000000,10000000,100000000",
    )
    parser.add_argument("--per-day", type=int, default=31_250, help="events per day of history")
    parser.add_argument("--customers", type=int, default=1000, help="customers in the events")
    parser.add_argument(
        "--ingest-events", type=int, default=100_000, help="fresh events sent by HTTP per size"
    )
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each query")
    parser.add_argument(
        "--load-connections", type=int, default=2, help="busy connections while timing loaded"
    )
    parser.add_argument(
        "--grow", action="store_true", help="keep the database and the results of smaller sizes"
    )
    parser.add_argument(
        "--requery",
        action="store_true",
        help="with --grow: migrate the database and time the queries again at the size it holds",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=REPO_ROOT / "docs", help="cost_curve.json/.csv/.png"
    )
    add_database_options(parser, db_name="billing_bench_curve")
    args = parser.parse_args(argv)
    if args.requery and not args.grow:
        parser.error("--requery needs --grow (the database to time is kept)")
    if args.sizes != sorted(set(args.sizes)):
        parser.error("--sizes must be ascending and distinct")
    if args.per_day * RECENT_DAYS > args.sizes[0]:
        parser.error(f"the first size must fill the last {RECENT_DAYS} days (--per-day)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict = {
        "parameters": vars(args) | {"json": str(args.json), "out_dir": str(args.out_dir)},
        "machine": machine(args.server_url),
        "sizes": [],
    }
    data_dir = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        if args.grow:
            db_url = database_url(args.server_url, args.db_name)
            env = project_env(db_url, data_dir)
            loaded, _ = read_state(db_url)
            previous = args.out_dir / "cost_curve.json"
            if args.requery:
                if not previous.exists():
                    raise BenchmarkFailed(f"no {previous} to time the queries of again")
                # The run that grew the database stays as it was; this run is added to it.
                results = json.loads(previous.read_text()) | {
                    "requery_parameters": results["parameters"],
                    "requery_machine": results["machine"],
                }
                setup_django(db_url)
                requery(db_url, env, args, results)
                results["estimate"] = estimate(results["sizes"])
                write_outputs(results, args.out_dir)
                report(results)
                return 0
            if previous.exists():
                kept = json.loads(previous.read_text())["sizes"]
                results["sizes"] = [row for row in kept if row["size"] < args.sizes[0]]
            print(f"growing {args.db_name} from {loaded:,} events")
        else:
            print(f"creating {args.db_name}")
            db_url, env = prepare_database(args.server_url, args.db_name)
            loaded = 0
        if loaded >= args.sizes[0]:
            raise BenchmarkFailed(f"{args.db_name} already holds {loaded:,} events")
        # Throughput, not the per-key rate limit, is measured: 0 turns it off (as bench.ingest).
        env.update(API_RATE_LIMIT_PER_SECOND="0", API_RATE_LIMIT_PER_MINUTE="0")
        api_key = create_api_key(env)
        setup_django(db_url)
        for size in args.sizes:
            print(f"\n=== {size:,} events ===")
            results["sizes"].append(
                measure_size(db_url, env, api_key, args, size, loaded, results["sizes"])
            )
            loaded = size
            results["estimate"] = estimate(results["sizes"])
            results["load_average_after"] = os.getloadavg()
            write_outputs(results, args.out_dir)  # after every size: a late failure keeps them
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    finish(results, args.json)
    write_outputs(results, args.out_dir)
    report(results)
    if results["estimate"] is None and len(results["sizes"]) >= 2:
        print(f"(no estimate: the largest size is {results['sizes'][-1]['size']:,})")
    return 0


if __name__ == "__main__":
    run_benchmark(main)
