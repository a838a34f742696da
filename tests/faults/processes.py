"""Starting and killing the real processes of the fault tests: gunicorn and Celery workers.

Each runs in a process group of its own, so SIGKILL takes the whole of it (a Celery worker's pool
child dies with its parent, as when the machine or the container goes). Workers consume a queue
no other test uses, so a shared Redis needs no flushing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis
from celery import Celery
from django.db import connection

from tests.utils import ROOT

# The broker for the workers: the test Redis of tests/meters/test_celery_rollups.py if set, else
# the configured one. Queues are named per test, so sharing either is safe.
BROKER_URL = (
    os.environ.get("CELERY_TEST_REDIS_URL")
    or os.environ.get("REDIS_URL")
    or "redis://127.0.0.1:6379/15"
)
# A task that found its work held by a killed worker's unfinished transaction is sent again.
RESEND_SECONDS = 2.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _socket_dir() -> str | None:
    """The unix socket folder of this run's PostgreSQL (the embedded server), if it uses one."""
    db = connection.settings_dict
    host = db["HOST"] or db.get("OPTIONS", {}).get("host") or ""
    return host if host.startswith("/") else None


def database_url(
    *, host: str | None = None, port: int | None = None, application_name: str = "faults"
) -> str:
    """A DATABASE_URL for this test run's database, optionally through another host and port.
    `application_name` names the process's sessions in pg_stat_activity."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "postgres")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"])
    query = f"application_name={quote(application_name)}"
    if host is None and _socket_dir():
        return f"postgresql://{credentials}@/{db['NAME']}?host={quote(_socket_dir())}&{query}"
    host = host or db["HOST"] or "127.0.0.1"
    port = port or db["PORT"] or 5432
    return f"postgresql://{credentials}@{host}:{port}/{db['NAME']}?{query}"


def database_address() -> tuple[str, int] | str:
    """Where this run's PostgreSQL listens: (host, port), or a unix socket path."""
    db = connection.settings_dict
    port = int(db["PORT"] or 5432)
    if _socket_dir():
        return f"{_socket_dir()}/.s.PGSQL.{port}"
    return (db["HOST"] or "127.0.0.1", port)


def wait_for_sessions_to_end(application_name: str, timeout: float = 15) -> bool:
    """Wait until the named process has no session left; False if one outlived the timeout.

    A killed process's session ends (rolling back its open transaction) only once PostgreSQL
    notices the client is gone, which may be after the statement it was running.
    """
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s",
                [application_name],
            )
            if cursor.fetchone()[0] == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def start_process(command: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    """`command` in a process group of its own (so that `stop` and `kill` take its children
    too), with `env` over this process's environment, its output appended to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the whole process group: no cleanup, no goodbye to the broker or the database."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=15)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        kill(process)
    except ProcessLookupError:
        pass


# --- gunicorn ------------------------------------------------------------------------------------


def start_gunicorn(env: dict, log_path: Path, *, workers: int = 2) -> tuple[subprocess.Popen, str]:
    """The production server on a free port; returns it with its base URL once it answers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "billing_site.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--graceful-timeout",
        "5",
    ]
    process = start_process(command, env, log_path)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/api/schema", timeout=2)
            return process, url
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop(process)
                raise RuntimeError(f"gunicorn did not start:\n{log_path.read_text()}") from None
            time.sleep(0.1)


# --- Celery --------------------------------------------------------------------------------------


class Worker:
    """A `celery -A billing_site worker` on a queue of its own, against the test database."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.queue = f"faults-{uuid.uuid4().hex[:12]}"
        self.log_path = tmp_path / f"{name}.log"
        # Not the current app: shared tasks of later tests would go to this broker.
        self.client_app = Celery("faults", broker=BROKER_URL, set_as_current=False)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "billing_site",
            "worker",
            "--queues",
            self.queue,
            "--hostname",
            f"{self.queue}@%h",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ]
        env = {
            "DATABASE_URL": database_url(application_name=self.queue),
            "REDIS_URL": BROKER_URL,
            "DJANGO_SETTINGS_MODULE": "billing_site.settings",
            # Billing commits 10 subscriptions at a time, so a kill lands between commits.
            "BILLING_BATCH_SIZE": "10",
        }
        self.process = start_process(command, env, self.log_path)

    def send(self, task_name: str) -> None:
        self.client_app.send_task(task_name, queue=self.queue)

    def run_until(self, task_name: str, done, *, timeout: float = 60) -> None:
        """Send the task now and again every few seconds, as beat would, until `done()`."""
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while not done():
            if time.monotonic() >= next_send:
                self.send(task_name)
                next_send = time.monotonic() + RESEND_SECONDS
            self.assert_alive()
            assert time.monotonic() < deadline, f"{task_name} did not finish in {timeout} s"
            time.sleep(0.1)

    def assert_alive(self) -> None:
        assert self.process is not None and self.process.poll() is None, (
            f"the worker exited with {self.process.returncode}:\n{self.log()}"
        )

    def kill(self) -> None:
        if self.process is not None:
            kill(self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def sessions_ended(self, timeout: float = 15) -> bool:
        """True once none of this worker's database sessions is left (see wait_for_sessions...)."""
        return wait_for_sessions_to_end(self.queue, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def forget_queue(self) -> None:
        """Remove this queue and the message the killed worker held from Redis."""
        try:
            client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2)
            for key in client.scan_iter(match=f"*{self.queue}*"):
                client.delete(key)
            for key in client.scan_iter(match="_kombu.binding.*"):
                for member in client.sscan_iter(key):
                    if self.queue.encode() in member:
                        client.srem(key, member)
            for tag, raw in client.hscan_iter("unacked"):
                if self.queue.encode() in raw:
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)
            client.close()
        except redis.RedisError:
            pass
        self.client_app.close()


def redis_or_skip() -> None:
    client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {BROKER_URL} ({exc}); the worker needs a broker")
    finally:
        client.close()
