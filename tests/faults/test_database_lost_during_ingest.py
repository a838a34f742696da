"""PostgreSQL goes away while clients ingest: nothing acknowledged is lost, nothing is stored
twice, and every answer is 200 or 503 with Retry-After, never a 500.

The production server (gunicorn, persistent connections) reaches PostgreSQL through a proxy the
test cuts three times: right after a COMMIT reached PostgreSQL (stored, but the answer is lost),
right before a COMMIT (the batch's rows were written but never committed), and at an arbitrary
moment. Clients keep posting batches of new events and retry each batch until it is answered 200.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest
from django.db import connection

from billing_site.models import ApiKey
from tests.conftest import UNLIMITED
from tests.faults.processes import database_address, database_url, start_gunicorn, stop
from tests.faults.proxy import CuttableProxy

CLIENTS = 4
BATCH_SIZE = 25
OUTAGE_SECONDS = 1.5
# A real client waits Retry-After (5 s); these retry sooner, so more requests meet the outage.
RETRY_PAUSE_SECONDS = 0.2
DEADLINE_SECONDS = 60


@dataclass
class Answer:
    batch: str
    attempt: int
    status: int | None  # None: no answer at all (the connection failed)
    text: str
    retry_after: str | None


@dataclass
class Traffic:
    """What the clients sent and were told, shared by their threads."""

    answers: list[Answer] = field(default_factory=list)
    batches: dict[str, list[str]] = field(default_factory=dict)
    acknowledged: dict[str, int] = field(default_factory=dict)  # batch -> its ingested_count
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def acknowledged_batches(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def post_until_acknowledged(
    client: httpx.Client, traffic: Traffic, batch: str, event_ids: list[str], deadline: float
) -> None:
    body = {
        "events": [
            {
                "event_id": event_id,
                "customer_id": f"cus_{n % 3}",
                "event_name": "api.call",
                "metadata": {"tokens": n},
            }
            for n, event_id in enumerate(event_ids)
        ]
    }
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        try:
            response = client.post("/api/events/ingest", json=body)
        except httpx.TransportError as exc:
            answer = Answer(batch, attempt, None, repr(exc), None)
        else:
            answer = Answer(
                batch,
                attempt,
                response.status_code,
                response.text,
                response.headers.get("Retry-After"),
            )
        with traffic.lock:
            traffic.answers.append(answer)
            if answer.status == 200:
                traffic.acknowledged[batch] = json.loads(answer.text)["ingested_count"]
        if answer.status == 200:
            return
        if answer.status not in (503, None):
            return  # a wrong answer: recorded, and the test fails on it
        time.sleep(RETRY_PAUSE_SECONDS)


def run_client(base_url: str, api_key: str, number: int, traffic: Traffic, deadline: float):
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        sequence = 0
        while not traffic.stop.is_set() and time.monotonic() < deadline:
            batch = f"c{number}-b{sequence}"
            event_ids = [f"fault-{batch}-e{i}" for i in range(BATCH_SIZE)]
            with traffic.lock:
                traffic.batches[batch] = event_ids
            post_until_acknowledged(client, traffic, batch, event_ids, deadline)
            sequence += 1


def wait_for_acknowledgements(traffic: Traffic, more: int, deadline: float) -> None:
    """Until `more` further batches are answered 200: the server serves (again)."""
    target = traffic.acknowledged_batches() + more
    while traffic.acknowledged_batches() < target:
        assert time.monotonic() < deadline, "the server did not acknowledge batches in time"
        time.sleep(0.05)


def stored_event_counts() -> Counter:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT event_id, count(*) FROM events_event WHERE event_id LIKE 'fault-%%' "
            "GROUP BY event_id"
        )
        return Counter(dict(cursor.fetchall()))


def pending_batch_event_ids() -> Counter:
    """Event ids by how many ingest batches (the rollups' log) list them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.event_id FROM events_ingestbatch b, unnest(b.event_ids) AS ids(id) "
            "JOIN events_event e ON e.id = ids.id"
        )
        return Counter(event_id for (event_id,) in cursor.fetchall())


@pytest.fixture
def server_behind_proxy(transactional_db, tmp_path):
    """gunicorn keeping its database connections (CONN_MAX_AGE) through a cuttable proxy."""
    _, api_key = ApiKey.create(name="fault tests", **UNLIMITED)
    proxy = CuttableProxy(database_address())
    env = {
        "DATABASE_URL": database_url(host="127.0.0.1", port=proxy.port),
        "CONN_MAX_AGE": "60",
        "DB_CONNECT_TIMEOUT": "2",
    }
    log_path = tmp_path / "gunicorn.log"
    server, url = start_gunicorn(env, log_path)
    try:
        yield url, api_key, proxy
    finally:
        stop(server)
        proxy.stop()
        # Shown by pytest only when the test fails.
        print(f"--- gunicorn log ---\n{log_path.read_text(errors='replace')}")


@pytest.mark.slow
def test_losing_the_database_mid_ingest_never_loses_or_duplicates_an_acknowledged_event(
    server_behind_proxy,
):
    url, api_key, proxy = server_behind_proxy
    traffic = Traffic()
    deadline = time.monotonic() + DEADLINE_SECONDS
    clients = [
        threading.Thread(target=run_client, args=(url, api_key, n, traffic, deadline))
        for n in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    try:
        wait_for_acknowledgements(traffic, 20, deadline)  # persistent connections are open

        # 1. The COMMIT reaches PostgreSQL, its answer never comes back.
        fired = proxy.cut_at(b"COMMIT", deliver=True)
        assert fired.wait(timeout=10), "no ingest transaction committed through the proxy"
        time.sleep(OUTAGE_SECONDS)
        proxy.restore()
        wait_for_acknowledgements(traffic, 10, deadline)

        # 2. The rows are written but the COMMIT never reaches PostgreSQL.
        fired = proxy.cut_at(b"COMMIT", deliver=False)
        assert fired.wait(timeout=10), "no ingest transaction committed through the proxy"
        time.sleep(OUTAGE_SECONDS)
        proxy.restore()
        wait_for_acknowledgements(traffic, 10, deadline)

        # 3. Whatever is in flight at an arbitrary moment.
        proxy.cut()
        time.sleep(OUTAGE_SECONDS)
        proxy.restore()
        wait_for_acknowledgements(traffic, 10, deadline)
    finally:
        traffic.stop.set()
        for client in clients:
            client.join(timeout=DEADLINE_SECONDS)

    answers = traffic.answers
    statuses = Counter(answer.status for answer in answers)
    assert set(statuses) <= {200, 503}, f"answers other than 200 and 503: {statuses}"
    assert statuses[503] > 0, "the outages never reached a client"
    assert proxy.connections_refused > 0, "no connection was attempted during an outage"
    for answer in answers:
        if answer.status == 503:
            assert int(answer.retry_after) > 0, answer
            assert json.loads(answer.text)["code"] == "SERVICE_UNAVAILABLE", answer
            assert "Traceback" not in answer.text, answer
        else:
            assert set(json.loads(answer.text)) == {"ingested_count"}, answer

    # Clients retried every 503 until it was acknowledged once the database was back.
    assert set(traffic.acknowledged) == set(traffic.batches), "batches never acknowledged"

    # Every acknowledged event is stored exactly once, and nothing else is.
    acknowledged_ids = {e for batch in traffic.acknowledged for e in traffic.batches[batch]}
    stored = stored_event_counts()
    assert [event_id for event_id, count in stored.items() if count != 1] == []
    missing, unexpected = acknowledged_ids - set(stored), set(stored) - acknowledged_ids
    assert not missing, f"{len(missing)} acknowledged events are not stored: {sorted(missing)[:5]}"
    assert not unexpected, f"{len(unexpected)} events stored unacknowledged"
    assert len(stored) == len(traffic.batches) * BATCH_SIZE

    # And each is listed once in the log that rollups consume, so it will be counted once.
    assert pending_batch_event_ids() == Counter(dict.fromkeys(acknowledged_ids, 1))

    # Each batch is atomic: stored whole by the attempt answered 200, or whole by an earlier
    # attempt whose answer was lost (then the retry found every event already there).
    first_attempt_status = {a.batch: a.status for a in answers if a.attempt == 1}
    lost_answers = []
    for batch, ingested_count in traffic.acknowledged.items():
        assert ingested_count in (0, BATCH_SIZE), (batch, ingested_count)
        if ingested_count == 0:
            assert first_attempt_status[batch] != 200, batch
            lost_answers.append(batch)
    assert lost_answers, "no batch was stored with its answer lost (cut 1 did not bite)"
