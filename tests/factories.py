"""Plain helper functions that build test data through the same code paths the API uses."""

from __future__ import annotations

import json
import threading
from datetime import datetime

from django.db import connection
from django.utils import timezone

from meters import rollups
from products.billing import ingest_events as ingest
from products.models import Customer


def make_customer(**fields) -> Customer:
    fields.setdefault("email", "ada@example.com")
    fields.setdefault("name", "Ada")
    return Customer.objects.create(**fields)


def event(event_id: str, customer_id: str, event_name: str = "api.call", **extra) -> dict:
    body = {"event_id": event_id, "customer_id": customer_id, "event_name": event_name}
    timestamp = extra.pop("timestamp", None)
    if isinstance(timestamp, datetime):
        timestamp = timestamp.isoformat()
    if timestamp is not None:
        body["timestamp"] = timestamp
    if extra.get("metadata") is not None:
        body["metadata"] = extra["metadata"]
    return body


def ingest_events(events: list[dict], *, now: datetime | None = None) -> int:
    """Ingest through the real validation and write path (no HTTP)."""
    return ingest(json.dumps({"events": events}).encode(), now=now or timezone.now())


def log_stored_events(where: str, params: list, *, now: datetime) -> None:
    """Key the stored events matching `where` and log them for the rollup, 1,000 ids a batch with
    their timestamp range, as the ingest statement does: for tests that write events in bulk
    with SQL."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO events_eventkey (event_id) SELECT event_id FROM events_event "
            f"WHERE {where}",
            params,
        )
        cursor.execute(
            "INSERT INTO events_ingestbatch (event_ids, first_timestamp, last_timestamp, "
            "created_at) SELECT array_agg(id ORDER BY id), min(timestamp), max(timestamp), %s "
            "FROM (SELECT id, timestamp, (row_number() OVER (ORDER BY id) - 1) / 1000 AS batch "
            f"      FROM events_event WHERE {where}) numbered GROUP BY batch",
            [now, *params],
        )


def roll_up_concurrently(workers: int = 4, *, max_batches: int = 2) -> None:
    """Roll up everything pending on `workers` threads at once, each on its own connection, a
    few batches a step so that they interleave. An error in any of them is raised here: the
    others would otherwise finish its work and hide it."""
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while rollups.roll_up_pending(max_batches=max_batches):
                pass
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
