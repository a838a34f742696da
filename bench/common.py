"""Shared plumbing for the benchmarks: a throwaway database, migrations, an API key, and a real
gunicorn server started (and always stopped) by the benchmark itself.

Every helper talks to the project the way an operator would: `manage.py` commands and gunicorn run
as subprocesses with `DATABASE_URL` pointing at the benchmark database and production settings
(`DEBUG` off).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432"


# --- options and the results' header, the same in every benchmark ------------------------------


def benchmark_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A parser whose description is the first paragraph of the benchmark's docstring."""
    return argparse.ArgumentParser(
        prog=prog,
        description=doc.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def add_database_options(parser: argparse.ArgumentParser, *, db_name: str) -> None:
    """--server-url, --db-name, --seed and --json, as every benchmark that loads a database
    takes them."""
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_SERVER_URL", DEFAULT_SERVER_URL),
        help="PostgreSQL server (any database path is replaced)",
    )
    parser.add_argument("--db-name", default=db_name, help="dropped and recreated")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")


def machine(server_url: str) -> dict:
    """What the figures were measured on; the load average shows whether the machine was shared."""
    with psycopg.connect(database_url(server_url, "postgres")) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                "('shared_buffers', 'work_mem', 'max_parallel_workers_per_gather')"
            ).fetchall()
        )
    return {
        "cpus": os.cpu_count(),
        "postgresql": version,
        "settings": settings,
        "load_average_before": os.getloadavg(),
    }


def start_results(args: argparse.Namespace) -> dict:
    """A run's results as every benchmark starts them: its parameters and the machine."""
    return {
        "parameters": vars(args) | {"json": str(args.json) if args.json else None},
        "machine": machine(args.server_url),
    }


def machine_line(results: dict) -> str:
    """The results' first line: where they were measured and how busy the machine was."""
    before, after = results["machine"]["load_average_before"][0], results["load_average_after"][0]
    return (
        f"{results['machine']['cpus']} CPUs, PostgreSQL {results['machine']['postgresql']}, "
        f"load average {before:.1f} before, {after:.1f} after"
    )


def finish(results: dict, json_path: Path | None) -> None:
    """Note the load at the end and write the JSON copy if one was asked for."""
    results["load_average_after"] = os.getloadavg()
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")


class BenchmarkFailed(RuntimeError):
    """A check failed or a step did not work; the benchmark stops with a non-zero exit."""


def run_benchmark(main: Callable[[], int | None]) -> NoReturn:
    """Every benchmark's entry point: exit with `main`'s status, or 1 with one FAILED line."""
    try:
        sys.exit(main())
    except BenchmarkFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)


def database_url(server_url: str, name: str) -> str:
    """`server_url` with its database path replaced by `name`."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def recreate_database(server_url: str, name: str) -> str:
    """Drop and create database `name` on the server; return its URL."""
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as conn:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    return database_url(server_url, name)


def project_env(db_url: str, data_dir: Path) -> dict[str, str]:
    """Environment for manage.py and gunicorn: production settings on the benchmark database."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        BILLING_DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="billing_site.settings",
        LOG_LEVEL="WARNING",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Run `python manage.py ARGS`; return its stdout, or raise with its output on failure."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BenchmarkFailed(
            f"manage.py {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def create_api_key(env: dict[str, str], name: str = "bench") -> str:
    """The management command prints the key alone on its last stdout line."""
    lines = manage(env, "create_api_key", name).strip().splitlines()
    if not lines:
        raise BenchmarkFailed("create_api_key printed no key")
    return lines[-1].strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc; a gone process counts 0).

    Unlike wall time this hardly moves when other work shares the machine, so it is the steadier
    figure on a busy 2-core VM.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


@dataclass(frozen=True)
class Server:
    url: str
    pid: int  # the gunicorn master; its children are the workers

    def worker_pids(self) -> list[int]:
        return child_pids(self.pid)


@contextlib.contextmanager
def gunicorn_server(
    env: dict[str, str],
    *,
    workers: int,
    port: int,
    api_key: str,
    worker_class: str = "sync",
    threads: int = 1,
    ready_timeout: float = 60.0,
) -> Iterator[Server]:
    """Run `gunicorn billing_site.wsgi` until the block ends (also on error); yield it.

    Ready means every worker has had the chance to boot: an authenticated request answers 200.
    """
    base_url = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the server's lifetime
        mode="w+", prefix="bench-gunicorn-", suffix=".log", delete=False
    )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "billing_site.wsgi",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_until_ready(process, base_url, api_key, ready_timeout, log.name)
        yield Server(base_url, process.pid)
    finally:
        _stop(process)
        log.close()
        os.unlink(log.name)


def _wait_until_ready(
    process: subprocess.Popen, base_url: str, api_key: str, timeout: float, log_path: str
) -> None:
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {api_key}"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkFailed(
                f"gunicorn exited {process.returncode} before it was ready:\n"
                + Path(log_path).read_text()
            )
        try:
            response = httpx.get(
                f"{base_url}/api/events", params={"page_size": 1}, headers=headers, timeout=5
            )
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 200:
            return
        raise BenchmarkFailed(
            f"gunicorn answered {response.status_code} to the readiness probe: {response.text}"
        )
    raise BenchmarkFailed(f"gunicorn was not ready after {timeout:.0f}s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # graceful: workers finish their request and exit
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
