"""Ingest benchmark: HTTP ingestion through the real server against the raw PostgreSQL ceiling.

    python -m bench.ingest                      # 200k events per mode, 4 client threads
    python -m bench.ingest --events 50000       # quicker
    python -m bench.ingest --help

It creates its own database (dropped and recreated, then migrated), starts gunicorn with
production settings, creates an API key, and measures, each on a freshly truncated table:

- `http-1000`: POST /api/events/ingest with batches of 1,000 events from 4 client threads, one
  `httpx.Client` each (keep-alive on the client side; gunicorn's default sync workers still close
  the connection after every response);
- `http-100`: the same with batches of 100;
- `raw`: the same rows as `http-1000`, batch by batch, straight into a plain (unpartitioned)
  `events_event` with `INSERT ... ON CONFLICT (event_id) DO NOTHING` via psycopg `executemany`,
  in `event_id` order, one transaction per batch: the ceiling the HTTP figures are compared with
  (the schema `unpartitioned`: a partitioned table has no unique index on event_id to conflict on);
- `sql-unnest`: the same batches through the server's own statement (`events.ingest._INSERT_SQL`:
  the event_id keys, one `unnest` insert into the monthly partitions and the ingest-batch log
  row, binary parameters) on a direct connection: what the database part of a request costs,
  without HTTP, Django or validation;
- `sql-unnest-unpartitioned`: the same batches through the statement of before partitioning
  (`ON CONFLICT (event_id)` on a plain table with a unique index), into a copy of that table in
  the schema `unpartitioned` of the same database: partitioning's cost, measured interleaved;
- `http-refused` (not run by default): the `http-1000` batches, each with one event too old, so
  every request is refused (400) and, since refused events are kept for
  `/api/events/{id}/explain`, leaves its 1,000 ids in `events_refusedevent`: what remembering a
  refusal costs.

A share of each stream (10% by default) repeats event_ids sent in earlier batches, as client retries
do. Request bodies are encoded before timing. After each mode it checks that the stored rows, the
sum of `ingested_count` and the ingest-batch log all equal the number of distinct ids sent, and
exits non-zero if not. Events/s counts every event sent, repeats included; every mode runs
`--rounds` times, interleaved, and the medians are shown. Beside wall-clock rates it reports CPU
milliseconds per 1,000 events (gunicorn workers + their postgres backends, and this process), read
from /proc: on a shared 2-core machine that figure moves far less than events/s.
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from bench.common import (
    DEFAULT_SERVER_URL,
    BenchmarkFailed,
    Server,
    cpu_seconds,
    create_api_key,
    free_port,
    gunicorn_server,
    manage,
    project_env,
    recreate_database,
    run_benchmark,
)
from events.ingest import _INSERT_SQL as APP_INSERT  # importable without Django settings
from events.partitions import UNPARTITIONED_DDL

GOAL_RATIO = 0.60
MODES = ("http-1000", "http-100", "raw", "sql-unnest", "sql-unnest-unpartitioned", "http-refused")
# Modes that write to the plain table of before partitioning, in this schema.
UNPARTITIONED = "unpartitioned"
ON_PLAIN_TABLE = ("raw", "sql-unnest-unpartitioned")

# events.ingest._INSERT_SQL as it was before partitioning (commit 30d9cd9).
UNPARTITIONED_INSERT = """
WITH inserted AS (
    INSERT INTO events_event (event_id, customer_id, event_name, timestamp, metadata, ingested_at)
    SELECT event_id, customer_id, event_name, ts, metadata, %b
    FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[]::jsonb[])
        AS incoming(event_id, customer_id, event_name, ts, metadata)
    ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING id
), batch AS (
    INSERT INTO events_ingestbatch (event_ids, created_at)
    SELECT array_agg(id ORDER BY id), %b FROM inserted HAVING count(*) > 0
    RETURNING cardinality(event_ids) AS stored
)
SELECT coalesce((SELECT stored FROM batch), 0)
"""
EVENT_NAMES = ("api.call", "llm.completion", "storage.write")

RAW_INSERT = """
INSERT INTO events_event (event_id, customer_id, event_name, timestamp, metadata, ingested_at)
VALUES (%s, %s, %s, %s, %s::jsonb, %s)
ON CONFLICT (event_id) DO NOTHING
"""


@dataclass
class Stream:
    """Events cut into batches; repeats are the very same event objects sent again (retries)."""

    batches: list[list[dict]]
    distinct_ids: int

    @property
    def events(self) -> int:
        return sum(len(batch) for batch in self.batches)


@dataclass
class Result:
    mode: str
    batch_size: int
    batches: int
    events: int
    distinct: int
    seconds: list[float] = field(default_factory=list)  # one per round
    server_cpu: list[float] = field(default_factory=list)  # gunicorn workers + postgres backends
    client_cpu: list[float] = field(default_factory=list)  # this process

    @property
    def rates(self) -> list[float]:
        return [self.events / s for s in self.seconds]

    @property
    def events_per_second(self) -> float:
        """The median over rounds: other load on a 2-core machine skews single runs."""
        return statistics.median(self.rates)

    def cpu_ms_per_1000(self, samples: list[float]) -> float:
        return statistics.median(samples) * 1e6 / self.events


def llm_event(rng: random.Random, now: datetime, customers: int) -> dict:
    """The default stream's event: one of EVENT_NAMES, stamped within the last hour."""
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "customer_id": f"cus_bench_{rng.randrange(customers):04d}",
        "event_name": rng.choice(EVENT_NAMES),
        "timestamp": (now - timedelta(seconds=rng.uniform(0, 3600))).isoformat(),
        "metadata": {
            "tokens": rng.randrange(1, 20_000),
            "model": "m1",
            "cached": rng.random() < 0.3,
        },
    }


def make_stream(
    total: int,
    batch_size: int,
    repeat_fraction: float,
    customers: int,
    lag: int,
    seed: int,
    make_event: Callable[[random.Random, datetime, int], dict] = llm_event,
) -> Stream:
    """`total` events in batches of `batch_size`; about `repeat_fraction` of them repeat ids sent at
    least `lag` batches earlier (so mostly already committed), never twice within one batch.

    `make_event(rng, now, customers)` makes each new event (bench.curve sends its own meters')."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    batches: list[list[dict]] = []
    sent: list[dict] = []  # distinct events in sending order
    sent_before_batch: list[int] = []  # len(sent) when each batch started
    produced = repeats = 0
    while produced < total:
        size = min(batch_size, total - produced)
        sent_before_batch.append(len(sent))
        b = len(batches)
        pool = sent_before_batch[b - lag] if b >= lag else 0
        wanted = round(repeat_fraction * (produced + size)) - repeats
        k = max(0, min(wanted, size, pool))
        batch = [sent[i] for i in rng.sample(range(pool), k)] if k else []
        for _ in range(size - k):
            event = make_event(rng, now, customers)
            sent.append(event)
            batch.append(event)
        rng.shuffle(batch)
        batches.append(batch)
        produced += size
        repeats += k
    distinct = len({event["event_id"] for event in sent})
    if distinct != len(sent):
        raise BenchmarkFailed("generated event_ids collide; use another --seed")
    return Stream(batches, distinct)


def run_threads(threads: int, work: Callable[[int], None]) -> float:
    """Run `work(thread_number)` on `threads` threads started together; return the wall time."""
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def body(number: int) -> None:
        try:
            start.wait()
            work(number)
        except BaseException as exc:  # reported after the join, so the run fails loudly
            errors.append(exc)

    pool = [threading.Thread(target=body, args=(n,), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        first = errors[0]
        raise BenchmarkFailed(f"{len(errors)} thread(s) failed; first: {first!r}") from first
    return elapsed


def post_bodies(
    base_url: str, api_key: str, bodies: list[bytes], threads: int, expect: int = 200
) -> tuple[float, int]:
    """POST every body to /api/events/ingest; return (seconds, sum of ingested_count)."""
    next_index = itertools.count()  # next() on a count is atomic under the GIL
    ingested: list[int] = []
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def work(_: int) -> None:
        total = 0
        with httpx.Client(base_url=base_url, headers=headers, timeout=120) as client:
            while (index := next(next_index)) < len(bodies):
                response = client.post("/api/events/ingest", content=bodies[index])
                if response.status_code != expect:
                    raise BenchmarkFailed(
                        f"batch {index}: HTTP {response.status_code}: {response.text[:500]}"
                    )
                total += response.json().get("ingested_count", 0)
        ingested.append(total)

    seconds = run_threads(threads, work)
    return seconds, sum(ingested)


def encode_bodies(stream: Stream) -> list[bytes]:
    return [json.dumps({"events": batch}).encode() for batch in stream.batches]


def refused_bodies(stream: Stream) -> list[bytes]:
    """The batches with their first event 60 days old: each request is refused whole."""
    too_old = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    return [
        json.dumps({"events": [{**batch[0], "timestamp": too_old}, *batch[1:]]}).encode()
        for batch in stream.batches
    ]


def raw_rows(stream: Stream) -> list[list[tuple]]:
    """Parameters for the raw inserts, each batch in event_id order, encoded before timing."""
    ingested_at = datetime.now(UTC)
    return [
        [
            (
                e["event_id"],
                e["customer_id"],
                e["event_name"],
                datetime.fromisoformat(e["timestamp"]),
                json.dumps(e["metadata"]),
                ingested_at,
            )
            for e in sorted(batch, key=lambda e: e["event_id"])
        ]
        for batch in stream.batches
    ]


def app_params(stream: Stream) -> list[list]:
    """Parameters for the server's statement, in its placeholder order, built before timing."""
    now = datetime.now(UTC)
    return [
        [
            [e["event_id"] for e in batch],
            [e["customer_id"] for e in batch],
            [e["event_name"] for e in batch],
            [datetime.fromisoformat(e["timestamp"]) for e in batch],
            [json.dumps(e["metadata"]) for e in batch],
            now,
            now,
        ]
        for batch in stream.batches
    ]


def unpartitioned_params(stream: Stream) -> list[list]:
    """Parameters for UNPARTITIONED_INSERT (its ingested_at comes first)."""
    return [[p[5], *p[:5], p[6]] for p in app_params(stream)]


def create_unpartitioned_tables(db_url: str) -> None:
    """The events tables of before partitioning, in their own schema of the same database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {UNPARTITIONED}")
        conn.execute(f"SET search_path = {UNPARTITIONED}")
        conn.execute(UNPARTITIONED_DDL)
        conn.execute(
            "CREATE TABLE events_ingestbatch (LIKE public.events_ingestbatch INCLUDING ALL)"
        )


def insert_direct(
    db_url: str, batches: list, connections: int, *, statement: str | None, schema: str
) -> tuple[float, int, float]:
    """Each batch in its own transaction, either executemany of RAW_INSERT (`statement` None) or
    one execute of `statement`, on tables of `schema`; return (seconds, rows inserted, CPU
    seconds of the postgres backends)."""
    next_index = itertools.count()
    inserted: list[int] = []
    conns = [psycopg.connect(db_url, autocommit=True) for _ in range(connections)]
    for conn in conns:
        conn.execute(f"SET search_path = {schema}")
    backends = [conn.info.backend_pid for conn in conns]

    def work(number: int) -> None:
        conn = conns[number]
        total = 0
        with conn.cursor() as cursor:
            while (index := next(next_index)) < len(batches):
                with conn.transaction():
                    if statement is not None:
                        cursor.execute(statement, batches[index])
                        total += cursor.fetchone()[0]
                    else:
                        cursor.executemany(RAW_INSERT, batches[index])
                        total += cursor.rowcount
        inserted.append(total)

    try:
        cpu_before = cpu_seconds(backends)
        seconds = run_threads(connections, work)
        backend_cpu = cpu_seconds(backends) - cpu_before
    finally:
        for conn in conns:
            conn.close()
    return seconds, sum(inserted), backend_cpu


def backend_cpu_by_pid(db_url: str) -> dict[int, float]:
    """CPU seconds so far of every other backend connected to the benchmark database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return {pid: cpu_seconds([pid]) for (pid,) in pids}


def run_http(
    server: Server, db_url: str, api_key: str, bodies: list[bytes], threads: int, expect: int = 200
) -> tuple[float, int, float]:
    """post_bodies, plus the CPU seconds the server side (workers and their backends) spent.

    A backend a worker opens during the run (connections are renewed after CONN_MAX_AGE) counts
    from its start; one that closes during the run loses its last share: a small undercount.
    """
    workers = server.worker_pids()
    workers_before = cpu_seconds(workers)
    backends_before = backend_cpu_by_pid(db_url)
    seconds, reported = post_bodies(server.url, api_key, bodies, threads, expect)
    backends_after = backend_cpu_by_pid(db_url)
    backend_cpu = sum(
        max(0.0, cpu - backends_before.get(pid, 0.0)) for pid, cpu in backends_after.items()
    )
    return seconds, reported, cpu_seconds(workers) - workers_before + backend_cpu


def reset_tables(db_url: str) -> None:
    """Empty the event tables and flush dirty pages, so each mode starts from the same state."""
    tables = (
        "events_event",
        "events_eventkey",
        "events_ingestbatch",
        "events_refusedevent",
        f"{UNPARTITIONED}.events_event",
        f"{UNPARTITIONED}.events_ingestbatch",
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        # Not every tree has every table (bench.ingest_ab compares with older checkouts).
        present = [t for t in tables if conn.execute("SELECT to_regclass(%s)", [t]).fetchone()[0]]
        conn.execute(f"TRUNCATE {', '.join(present)} RESTART IDENTITY")
        conn.execute("CHECKPOINT")


def verify(db_url: str, result: Result, reported: int, check_batch_log: bool) -> None:
    """Stored rows, the new-row counts reported to the sender and (unless the mode bypasses it) the
    ingest-batch log all equal the number of distinct ids sent."""
    with psycopg.connect(db_url) as conn:
        schema = UNPARTITIONED if result.mode in ON_PLAIN_TABLE else "public"
        conn.execute(f"SET search_path = {schema}")
        stored = conn.execute("SELECT count(*) FROM events_event").fetchone()[0]
        logged = conn.execute(
            "SELECT coalesce(sum(cardinality(event_ids)), 0) FROM events_ingestbatch"
        ).fetchone()[0]
    expected = 0 if result.mode == "http-refused" else result.distinct
    label = "sum of ingested_count" if result.mode.startswith("http") else "rows inserted"
    checks = [("stored rows", stored), (label, reported)]
    if check_batch_log:
        checks.append(("ids in events_ingestbatch", logged))
    failures = [f"{name} = {value}" for name, value in checks if value != expected]
    if failures:
        raise BenchmarkFailed(
            f"{result.mode}: expected {expected} distinct ids, got " + ", ".join(failures)
        )
    print(f"  OK: {', '.join(f'{n} = {v}' for n, v in checks)} == distinct ids sent ({expected})")


def warm_up(base_url: str, api_key: str, threads: int, workers: int) -> None:
    """A few requests per worker so every worker has its connection and caches before timing."""
    stream = make_stream(
        total=100 * threads * workers * 2,
        batch_size=100,
        repeat_fraction=0.1,
        customers=10,
        lag=1,
        seed=1,
    )
    post_bodies(base_url, api_key, encode_bodies(stream), threads)


def report(result: Result) -> None:
    print(
        f"  {result.mode}: {result.events} events ({result.distinct} distinct) in "
        f"{result.batches} batches of {result.batch_size}: {result.seconds[-1]:.2f}s, "
        f"{result.rates[-1]:,.0f} events/s"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description="HTTP ingest throughput against the raw PostgreSQL ceiling.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=200_000, help="events per mode")
    parser.add_argument("--large-batch", type=int, default=1000, help="HTTP and raw batch size")
    parser.add_argument("--small-batch", type=int, default=100, help="second HTTP batch size")
    parser.add_argument(
        "--repeat-fraction", type=float, default=0.1, help="share of repeated event_ids"
    )
    parser.add_argument("--customers", type=int, default=1000, help="customer id pool")
    parser.add_argument("--threads", type=int, default=4, help="HTTP client threads")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class")
    parser.add_argument("--gunicorn-threads", type=int, default=1, help="threads per worker")
    parser.add_argument(
        "--raw-connections", type=int, default=1, help="connections for the raw ceiling"
    )
    parser.add_argument("--sql-connections", type=int, default=2, help="connections for sql-unnest")
    parser.add_argument(
        "--modes",
        default=",".join(m for m in MODES if m not in ("http-refused", "sql-unnest-unpartitioned")),
        help="comma-separated subset of " + ", ".join(MODES),
    )
    parser.add_argument(
        "--server-url", default=DEFAULT_SERVER_URL, help="PostgreSQL server (no database)"
    )
    parser.add_argument("--db-name", default="billing_bench", help="dropped and recreated")
    parser.add_argument("--port", type=int, default=0, help="gunicorn port (0: any free port)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every mode; medians shown")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    if not 0 <= args.repeat_fraction < 1:
        parser.error("--repeat-fraction must be in [0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    print(
        f"ingest benchmark: {args.events:,} events per mode, {args.repeat_fraction:.0%} repeats, "
        f"{args.threads} client threads, gunicorn {args.workers} x {args.worker_class} worker(s), "
        f"{args.rounds} round(s); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )

    print(f"database {args.db_name}: recreate and migrate")
    db_url = recreate_database(args.server_url, args.db_name)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-data-"))  # settings' BILLING_DATA_DIR
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    env = project_env(db_url, data_dir)
    # Throughput, not the per-key rate limit (default 40/s, 240/min) is measured: 0 turns it off.
    env.update(API_RATE_LIMIT_PER_SECOND="0", API_RATE_LIMIT_PER_MINUTE="0")
    manage(env, "migrate", "--no-input")
    create_unpartitioned_tables(db_url)
    api_key = create_api_key(env)

    print("generating events and encoding request bodies")
    streams: dict[int, Stream] = {}

    def stream_for(batch_size: int) -> Stream:
        if batch_size not in streams:
            streams[batch_size] = make_stream(
                args.events,
                batch_size,
                args.repeat_fraction,
                args.customers,
                lag=max(args.threads, args.raw_connections, args.sql_connections),
                seed=args.seed,
            )
        return streams[batch_size]

    sizes = {
        "http-1000": args.large_batch,
        "http-100": args.small_batch,
        "raw": args.large_batch,
        "sql-unnest": args.large_batch,
        "sql-unnest-unpartitioned": args.large_batch,
        "http-refused": args.large_batch,
    }
    inputs = {
        "http-1000": encode_bodies,
        "http-100": encode_bodies,
        "raw": raw_rows,
        "sql-unnest": app_params,
        "sql-unnest-unpartitioned": unpartitioned_params,
        "http-refused": refused_bodies,
    }
    prepared = {m: inputs[m](stream_for(sizes[m])) for m in args.modes}

    results = {
        m: Result(m, sizes[m], len(s.batches), s.events, s.distinct_ids)
        for m in args.modes
        for s in [stream_for(sizes[m])]
    }
    port = args.port or free_port()
    with gunicorn_server(
        env,
        workers=args.workers,
        port=port,
        api_key=api_key,
        worker_class=args.worker_class,
        threads=args.gunicorn_threads,
    ) as server:
        print(f"gunicorn ready at {server.url}; warming up")
        warm_up(server.url, api_key, args.threads, args.workers)
        for round_number in range(1, args.rounds + 1):
            for mode in args.modes:  # modes interleaved, so drifting background load hits all
                reset_tables(db_url)
                print(f"round {round_number}, {mode}:")
                client_before = time.process_time()
                if mode.startswith("http"):
                    seconds, reported, server_cpu = run_http(
                        server,
                        db_url,
                        api_key,
                        prepared[mode],
                        args.threads,
                        expect=400 if mode == "http-refused" else 200,
                    )
                else:
                    statement = {
                        "sql-unnest": APP_INSERT,
                        "sql-unnest-unpartitioned": UNPARTITIONED_INSERT,
                    }.get(mode)
                    connections = args.raw_connections if mode == "raw" else args.sql_connections
                    seconds, reported, server_cpu = insert_direct(
                        db_url,
                        prepared[mode],
                        connections,
                        statement=statement,
                        schema=UNPARTITIONED if mode in ON_PLAIN_TABLE else "public",
                    )
                result = results[mode]
                result.seconds.append(seconds)
                result.server_cpu.append(server_cpu)
                result.client_cpu.append(time.process_time() - client_before)
                report(result)
                verify(db_url, result, reported, check_batch_log=mode != "raw")

    print()
    print(f"median of {args.rounds} round(s); load average now {os.getloadavg()[0]:.1f}")
    print("CPU: milliseconds per 1,000 events; server = gunicorn workers + postgres backends")
    header = ("mode", "batch", "events", "events/s", "min", "max", "/raw", "server", "client")
    print("{:<24} {:>6} {:>8} {:>9} {:>8} {:>8} {:>6} {:>7} {:>7}".format(*header))
    raw = results.get("raw")
    for r in results.values():
        ratio = f"{r.events_per_second / raw.events_per_second:.0%}" if raw else "-"
        print(
            f"{r.mode:<24} {r.batch_size:>6} {r.events:>8} {r.events_per_second:>9,.0f} "
            f"{min(r.rates):>8,.0f} {max(r.rates):>8,.0f} {ratio:>6} "
            f"{r.cpu_ms_per_1000(r.server_cpu):>7.1f} {r.cpu_ms_per_1000(r.client_cpu):>7.1f}"
        )
    if raw and "http-1000" in results:
        ratio = results["http-1000"].events_per_second / raw.events_per_second
        verdict = "meets" if ratio >= GOAL_RATIO else "is BELOW"
        print(
            f"HTTP ({args.large_batch}-event batches) / raw = {ratio:.2f}: "
            f"{verdict} the {GOAL_RATIO:.0%} goal"
        )
    print(f"total run time {time.perf_counter() - started:.0f}s")

    if args.json:
        payload = {
            "settings": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(args).items()
                if k != "json"
            },
            "results": {
                m: {
                    "batch_size": r.batch_size,
                    "events": r.events,
                    "distinct": r.distinct,
                    "seconds": [round(s, 3) for s in r.seconds],
                    "events_per_second_median": round(r.events_per_second),
                    "server_cpu_ms_per_1000": round(r.cpu_ms_per_1000(r.server_cpu), 2),
                    "client_cpu_ms_per_1000": round(r.cpu_ms_per_1000(r.client_cpu), 2),
                }
                for m, r in results.items()
            },
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_benchmark(main)
