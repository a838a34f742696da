"""Where the CPU of a 1,000-event ingest request goes, measured in-process, stage by stage.

    python -m bench.ingest_stages                         # 5 rounds of 20 batches per stage
    python -m bench.ingest_stages --profile 20            # also cProfile 20 whole requests
    python -m bench.ingest_stages --help

It creates its own database (dropped, recreated, migrated) and an API key, then runs Django
in-process on it with production settings and times, in CPU time of this process
(`time.process_time`) and of its PostgreSQL backend (from /proc), each stage of
`events.ingest` on the same kind of batches as `bench.ingest` (1,000 events, metadata
`{"tokens", "model", "cached"}`, fresh ids so every store inserts):

- `parse`: `parse_body` (bytes to Python values, exact decimals);
- `validate`: `validate_batch` (every rule, rows with their metadata as JSON text);
- `fast`: `fast_rows`, the fast path a valid batch takes instead of parse + validate (msgspec
  decoding into typed structs, then the checks the schema cannot make);
- `api key`: the API-key lookup every request makes (`ApiKey.find_active`: a hash, one query);
- `admit`: billing's admission rule alone (`refuse_invoiced_periods`: the advisory locks on the
  batch's customers and the invoiced-period lookup), in its own transaction;
- `store`: `store_batch` with that rule (so `admit` included) and the insert;
- `request`: a whole `POST /api/events/ingest` through Django's WSGI handler (middleware, API-key
  lookup, DRF, the stages above, the JSON answer); `request - parse - validate - store` is the
  per-request overhead (`request - fast - store`; in a tree without the fast path,
  `request - parse - validate - store`: run it from such a checkout to compare).

Milliseconds per batch: the median of `--rounds` rounds of `--batches` batches each.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_SERVER_URL,
    BenchmarkFailed,
    cpu_seconds,
    create_api_key,
    manage,
    project_env,
    recreate_database,
    run_benchmark,
)
from bench.ingest import encode_bodies, make_stream


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest_stages",
        description="CPU per stage of a 1,000-event ingest request, in-process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--batch", type=int, default=1000, help="events per batch")
    parser.add_argument("--batches", type=int, default=20, help="batches per round and stage")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, help="cProfile this many requests")
    parser.add_argument("--profile-lines", type=int, default=60, help="functions shown")
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--db-name", default="billing_bench_stages", help="dropped and recreated")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f}; database {args.db_name}: recreate and migrate")
    db_url = recreate_database(args.server_url, args.db_name)
    env = project_env(db_url, Path(tempfile.mkdtemp(prefix="bench-data-")))
    env.update(API_RATE_LIMIT_PER_SECOND="0", API_RATE_LIMIT_PER_MINUTE="0", ALLOWED_HOSTS="*")
    manage(env, "migrate", "--no-input")
    api_key = create_api_key(env)
    os.environ.update(env)

    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection, transaction

    from billing_site.models import ApiKey
    from events.ingest import parse_body, store_batch, validate_batch

    try:
        from events.ingest import fast_rows  # type: ignore[attr-defined, unused-ignore]
    except ImportError:  # a tree from before the fast path: parse + validate is its path
        fast_rows = None
    from products.billing import refuse_invoiced_periods

    # Fresh ids for every store and request, so each one inserts 1,000 rows.
    needed = args.batches * (2 * args.rounds + 1) + args.profile
    stream = make_stream(needed * args.batch, args.batch, 0.0, 1000, lag=1, seed=11)
    bodies = encode_bodies(stream)
    handler = WSGIHandler()
    fresh = iter(bodies)

    def request(body: bytes) -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/api/events/ingest",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Bearer {api_key}",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        statuses: list[str] = []
        answer = b"".join(handler(environ, lambda status, headers: statuses.append(status)))
        if not statuses[0].startswith("200"):
            raise BenchmarkFailed(f"{statuses[0]}: {answer[:500]!r}")

    request(next(fresh))  # connection, caches, imports
    sample = bodies[: args.batches]
    payloads = [parse_body(body) for body in sample]
    if fast_rows and any(fast_rows(body, now=datetime.now(UTC)) is None for body in sample):
        raise BenchmarkFailed("the fast path declined a valid batch")
    stages: dict[str, list[float]] = {}
    backend: dict[str, list[float]] = {}

    def timed(stage: str, work: Callable[[Any], object], items: list) -> None:
        """CPU ms per item of `work` over `items`: this process's, and its backend's."""
        connection.ensure_connection()
        pid = connection.connection.info.backend_pid
        backend_before = cpu_seconds([pid])
        began = time.process_time()
        for item in items:
            work(item)
        elapsed = time.process_time() - began
        stages.setdefault(stage, []).append(elapsed * 1000 / len(items))
        backend_ms = (cpu_seconds([pid]) - backend_before) * 1000 / len(items)
        backend.setdefault(stage, []).append(backend_ms)

    def admit(rows: list) -> None:
        with transaction.atomic():
            refuse_invoiced_periods(rows)

    for _ in range(args.rounds):
        now = datetime.now(UTC)
        timed("parse", parse_body, sample)
        timed("validate", partial(validate_batch, now=now), payloads)
        if fast_rows:
            timed("fast", partial(fast_rows, now=now), sample)
        timed("api key", ApiKey.find_active, [api_key] * args.batches)
        rows = [validate_batch(parse_body(next(fresh)), now=now) for _ in range(args.batches)]
        timed("admit", admit, rows)
        timed("store", partial(store_batch, now=now, admit=refuse_invoiced_periods), rows)
        timed("request", request, [next(fresh) for _ in range(args.batches)])

    median = {stage: statistics.median(times) for stage, times in stages.items()}
    print(f"CPU ms per batch of {args.batch} (median of {args.rounds} rounds, min - max):")
    print("  stage       this process               its PostgreSQL backend")
    for stage, times in stages.items():
        print(
            f"  {stage:<9} {median[stage]:6.2f}  ({min(times):5.2f} - {max(times):5.2f})"
            f"   {statistics.median(backend[stage]):6.2f}"
        )
    path = median["fast"] if fast_rows else median["parse"] + median["validate"]
    overhead = median["request"] - path - median["store"]
    print(f"  overhead  {overhead:6.2f}  (request - its path - store: middleware, DRF, API key)")
    print("  (admit and the insert are parts of store; the backend's CPU is read from /proc)")
    print(f"load average {os.getloadavg()[0]:.1f}")

    if args.profile:
        profiler = cProfile.Profile(time.process_time)  # CPU, not waits on the database
        profile_bodies = [next(fresh) for _ in range(args.profile)]
        profiler.enable()
        for body in profile_bodies:
            request(body)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.profile_lines)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    run_benchmark(main)
