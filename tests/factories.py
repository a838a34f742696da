"""Plain helper functions that build test data through the same code paths the API uses."""

from __future__ import annotations

import json
from datetime import datetime

from django.utils import timezone

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
