"""A/B ingest benchmark: the same batches sent to two trees' servers in alternating chunks.

    python -m bench.ingest_ab --before /tmp/main-tree          # this tree is "after"
    python -m bench.ingest_ab --before /tmp/main-tree --after /tmp/main-tree   # A/A: the bias

On a shared machine back-to-back runs of `bench.ingest` move by ±40% with the load of others; this
starts both servers at once (gunicorn, 4 sync workers each, production settings, each tree on its
own database `billing_ab_before` / `billing_ab_after` (`--db-prefix`), migrated by its own tree),
then sends every chunk of `--chunk` batches of 1,000 events (10% repeated ids) to one server and
then the other, alternating which goes first, so drifting load hits both alike. Two streams:
accepted batches, then the same batches each with one event 60 days old (refused whole, so the
refusal path and, where the tree keeps refused events, their insert). Prints events/s per tree
and after/before: the ratio of total times and the median ratio of chunk times. `--before` is
any checkout, e.g. `git archive main | tar -x -C /tmp/main-tree`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

import bench.common as common
from bench.ingest import encode_bodies, make_stream, post_bodies, refused_bodies, reset_tables


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_ab")
    parser.add_argument("--before", type=Path, required=True, help="the tree to compare with")
    parser.add_argument("--after", type=Path, default=common.REPO_ROOT)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=10, help="batches sent to one side in a row")
    parser.add_argument("--server-url", default=common.DEFAULT_SERVER_URL)
    parser.add_argument("--db-prefix", default="billing_ab", help="databases PREFIX_before/after")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    servers, databases, keys = {}, {}, {}
    with ExitStack() as stack:
        for name, tree in trees.items():
            common.REPO_ROOT = tree  # manage.py and gunicorn run from (and import) this tree
            db = common.recreate_database(args.server_url, f"{args.db_prefix}_{name}")
            env = common.project_env(db, Path(tempfile.mkdtemp(prefix="bench-data-")))
            env.update(API_RATE_LIMIT_PER_SECOND="0", API_RATE_LIMIT_PER_MINUTE="0")
            common.manage(env, "migrate", "--no-input")
            keys[name] = common.create_api_key(env)
            servers[name] = stack.enter_context(
                common.gunicorn_server(env, workers=4, port=common.free_port(), api_key=keys[name])
            )
            databases[name] = db
        stream = make_stream(args.batches * 1000, 1000, 0.1, 1000, lag=4, seed=7)
        print(f"load average {os.getloadavg()[0]:.1f}; {args.batches} batches of 1,000")
        for kind, bodies, expect in (
            ("accepted", encode_bodies(stream), 200),
            ("refused", refused_bodies(stream), 400),
        ):
            for db in databases.values():
                reset_tables(db)
            times: dict[str, list[float]] = {name: [] for name in trees}
            for number, offset in enumerate(range(0, len(bodies), args.chunk)):
                order = list(trees) if number % 2 == 0 else list(reversed(trees))
                for name in order:
                    seconds, _ = post_bodies(
                        servers[name].url,
                        keys[name],
                        bodies[offset : offset + args.chunk],
                        4,
                        expect,
                    )
                    times[name].append(seconds)
            total = {name: sum(t) for name, t in times.items()}
            ratios = [a / b for a, b in zip(times["after"], times["before"], strict=True)]
            print(
                f"{kind}: before {len(bodies) * 1000 / total['before']:,.0f} events/s, after "
                f"{len(bodies) * 1000 / total['after']:,.0f} events/s; after/before time: total "
                f"{total['after'] / total['before']:.3f}, median of {len(ratios)} chunks "
                f"{statistics.median(ratios):.3f}"
            )
        print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    common.run_benchmark(main)
