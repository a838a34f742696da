"""PostgreSQL restarts while the web server keeps its connections (CONN_MAX_AGE): each kept
connection is checked before a request uses it (CONN_HEALTH_CHECKS), so a restart between
requests costs no client anything, and one during requests costs each client at most the
request it had in flight, which its one retry gets through.

The "restart" is the TCP proxy dropping every connection and accepting new ones at once; the real
PostgreSQL is never touched.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
import pytest
from django.db import connection

from billing_site.models import ApiKey
from tests.conftest import UNLIMITED
from tests.faults.processes import database_address, database_url, start_gunicorn, stop
from tests.faults.proxy import CuttableProxy

CLIENTS = 4
WEB_WORKERS = 2
APPLICATION_NAME = "faults-stale-connections"
RETRY_PAUSE_SECONDS = 0.3
DEADLINE_SECONDS = 60


@dataclass
class Outcomes:
    """Per client: the status of every attempt (None: no answer), and requests given up."""

    attempts: dict[int, list[int | None]] = field(default_factory=lambda: defaultdict(list))
    gave_up: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, client: int) -> int:
        return sum(1 for status in self.attempts[client] if status != 200)


def get_with_one_retry(http: httpx.Client, number: int, outcomes: Outcomes) -> None:
    """One read, retried once after a failure, as a careful client would."""
    for attempt in range(2):
        try:
            status: int | None = http.get("/api/customers", params={"page_size": 1}).status_code
        except httpx.TransportError:
            status = None
        with outcomes.lock:
            outcomes.attempts[number].append(status)
        if status == 200:
            return
        if attempt == 0:
            time.sleep(RETRY_PAUSE_SECONDS)
    with outcomes.lock:
        outcomes.gave_up.append(number)


def database_sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [APPLICATION_NAME],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def server_behind_proxy(transactional_db, tmp_path):
    _, api_key = ApiKey.create(name="stale connections", **UNLIMITED)
    proxy = CuttableProxy(database_address())
    env = {
        "DATABASE_URL": database_url(
            host="127.0.0.1", port=proxy.port, application_name=APPLICATION_NAME
        ),
        "CONN_MAX_AGE": "60",
        "DB_CONNECT_TIMEOUT": "2",
    }
    log_path = tmp_path / "gunicorn.log"
    server, url = start_gunicorn(env, log_path, workers=WEB_WORKERS)
    try:
        yield url, api_key, proxy
    finally:
        stop(server)
        proxy.stop()
        print(f"--- gunicorn log ---\n{log_path.read_text(errors='replace')}")


def run_clients(url: str, api_key: str, outcomes: Outcomes, *, until: threading.Event) -> list:
    """CLIENTS threads, each reading with one retry until `until` is set."""
    deadline = time.monotonic() + DEADLINE_SECONDS

    def client(number: int) -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            while not until.is_set() and time.monotonic() < deadline:
                get_with_one_retry(http, number, outcomes)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.slow
def test_a_database_restart_costs_each_client_at_most_one_retried_request(server_behind_proxy):
    url, api_key, proxy = server_behind_proxy

    # Every web worker has served requests and keeps its connection.
    warm_up, stop_warm_up = Outcomes(), threading.Event()
    clients = run_clients(url, api_key, warm_up, until=stop_warm_up)
    deadline = time.monotonic() + 30
    while database_sessions() < WEB_WORKERS:
        assert time.monotonic() < deadline, "the web workers never all connected"
        time.sleep(0.1)
    stop_warm_up.set()
    for thread in clients:
        thread.join(timeout=30)
    assert not warm_up.gave_up and sum(map(warm_up.failed, range(CLIENTS))) == 0

    # 1. A restart while the server is idle: the kept connections are dead, yet no request
    # fails, since each is checked before use and replaced.
    proxy.cut()
    proxy.restore()
    idle = Outcomes()

    def one_request(number: int) -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            get_with_one_retry(http, number, idle)

    once = [threading.Thread(target=one_request, args=(n,)) for n in range(CLIENTS)]
    for thread in once:
        thread.start()
    for thread in once:
        thread.join(timeout=30)
    assert dict(idle.attempts) == {n: [200] for n in range(CLIENTS)}, (
        "requests failed on connections the restart had left dead"
    )

    # 2. A restart during requests: what was in flight may fail, once per client, and its retry
    # succeeds.
    under_load, stop_load = Outcomes(), threading.Event()
    clients = run_clients(url, api_key, under_load, until=stop_load)
    try:
        time.sleep(1)
        before = sum(len(a) for a in under_load.attempts.values())
        proxy.cut()
        proxy.restore()
        deadline = time.monotonic() + 30
        while sum(len(a) for a in under_load.attempts.values()) < before + 4 * CLIENTS:
            assert time.monotonic() < deadline, "the clients made no progress after the restart"
            time.sleep(0.05)
    finally:
        stop_load.set()
        for thread in clients:
            thread.join(timeout=30)

    assert under_load.gave_up == [], f"retries that failed too: {dict(under_load.attempts)}"
    statuses = {status for attempts in under_load.attempts.values() for status in attempts}
    assert statuses <= {200, 503}, statuses
    for number in range(CLIENTS):
        assert under_load.failed(number) <= 1, (number, under_load.attempts[number])
