"""Partitioning benchmark: how long migration 0005 takes to convert a plain events table.

    python -m bench.partitions                   # 1,000,000 rows over 3 months
    python -m bench.partitions --rows 200000     # quicker

It creates its own database (dropped and recreated), builds `events_event` as migrations 0001-0004
left it (`events.partitions.UNPARTITIONED_DDL`) and fills it with `--rows` events spread over
`--months` months (10 customers' worth of ids, 3 event names, a 3-key metadata object), then times
`events.partitions.convert_to_partitioned` in one transaction, as the migration runs it: rename,
partitions, the copy in id order, the key table, the indexes built after the copy, ANALYZE. It
checks that every row and key arrived and prints the seconds per million rows.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

import psycopg

from bench.common import add_database_options, benchmark_parser, recreate_database, run_benchmark
from events.partitions import UNPARTITIONED_DDL, convert_to_partitioned

FILL = """
INSERT INTO events_event (event_id, customer_id, event_name, timestamp, metadata, ingested_at)
SELECT md5(g::text), 'cus_' || g %% 10000,
       (ARRAY['api.call', 'llm.completion', 'storage.write'])[g %% 3 + 1],
       %s::timestamptz + (g::float8 / %s) * (%s::timestamptz - %s::timestamptz),
       jsonb_build_object('tokens', g %% 1000, 'model', 'm1', 'cached', g %% 2 = 0),
       %s::timestamptz + (g::float8 / %s) * (%s::timestamptz - %s::timestamptz)
FROM generate_series(1, %s) g
"""


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser("python -m bench.partitions", __doc__ or "")
    add_database_options(parser, db_name="billing_bench_partitions")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=3)
    args = parser.parse_args(argv)
    db_url = recreate_database(args.server_url, args.db_name)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = datetime(2026 + args.months // 12, args.months % 12 + 1, 1, tzinfo=UTC)
    load = os.getloadavg()[0]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(UNPARTITIONED_DDL)
        began = time.perf_counter()
        conn.execute(FILL, [start, args.rows, end, start] * 2 + [args.rows])
        conn.execute("VACUUM ANALYZE events_event")
        fill_seconds = time.perf_counter() - began
        size = conn.execute("SELECT pg_total_relation_size('events_event')").fetchone()[0]
        print(
            f"filled {args.rows:,} rows ({size / 2**20:,.0f} MiB with indexes) "
            f"in {fill_seconds:.1f} s"
        )
        began = time.perf_counter()
        with conn.transaction(), conn.cursor() as cursor:
            moved = convert_to_partitioned(cursor, now=end)
        seconds = time.perf_counter() - began
        keys = conn.execute("SELECT count(*) FROM events_eventkey").fetchone()[0]
        key_bytes = conn.execute("SELECT pg_total_relation_size('events_eventkey')").fetchone()[0]
        stored = conn.execute("SELECT count(*) FROM events_event").fetchone()[0]
    if not moved == keys == stored == args.rows:
        print(f"FAILED: moved {moved}, keys {keys}, stored {stored}, expected {args.rows}")
        return 1
    per_million = seconds * 1_000_000 / args.rows
    print(f"events_eventkey: {key_bytes / args.rows:.0f} bytes per key (32-character ids)")
    print(
        f"converted {args.rows:,} rows in {seconds:.1f} s: {per_million:.1f} s per million rows "
        f"(load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": args.rows,
                    "seconds": round(seconds, 2),
                    "per_million": round(per_million, 2),
                }
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    run_benchmark(main)
