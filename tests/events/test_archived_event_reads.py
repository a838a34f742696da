"""Reading raw events of archived months through the events API: `GET /api/events/{id}` and
`GET /api/events` answer 409 `EVENTS_ARCHIVED` (as explain does) instead of "unknown" or a
short list; an id never stored stays 404 and ranges of stored months are answered as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.partitions import Month
from meters import rollups
from products.archive import archive_events
from products.billing import run_billing_cycle
from tests.factories import ingest_events
from tests.products.factories import make_meter, make_product, subscribe

pytestmark = pytest.mark.django_db

ANCHOR = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
AFTER = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)  # February ended more than 35 days ago
FEBRUARY = Month(2026, 2)


@pytest.fixture
def january_archived():
    """Events from Jan 5 to Feb 15, both periods invoiced, January archived."""
    meter = make_meter("Calls", "api.call", now=ANCHOR - timedelta(days=1))
    subscription = subscribe(make_product([(meter, "2", 0)], now=ANCHOR), now=ANCHOR)
    events = [
        {
            "event_id": f"ev-{i}",
            "customer_id": subscription.customer_id,
            "event_name": "api.call",
            "timestamp": (ANCHOR + timedelta(days=i)).isoformat(),
        }
        for i in range(41)
    ]
    ingest_events(events[:21], now=ANCHOR + timedelta(days=21))
    ingest_events(events[21:], now=ANCHOR + timedelta(days=41))
    rollups.run_rollups()
    run_billing_cycle(now=AFTER)
    rollups.run_rollups()
    archive_events(before=FEBRUARY, now=AFTER)
    return subscription


def _archived(answer) -> bool:
    return answer.status_code == 409 and answer.json()["code"] == "EVENTS_ARCHIVED"


def test_an_archived_event_answers_409_and_an_unknown_one_404(api, january_archived):
    answer = api.get("/api/events/ev-0")
    assert _archived(answer)
    assert "ev-0" in answer.json()["message"] and "2026-02" in answer.json()["message"]
    assert api.get("/api/events/never-sent").status_code == 404
    stored = api.get("/api/events/ev-30")  # Feb 4: still stored
    assert stored.status_code == 200 and stored.json()["event_id"] == "ev-30"


def test_a_list_reaching_into_archived_months_answers_409(api, january_archived):
    assert _archived(api.get("/api/events", {"start": "2026-01-10T00:00:00Z"}))
    assert _archived(
        api.get("/api/events", {"start": "2026-01-10T00:00:00Z", "end": "2026-01-20T00:00:00Z"})
    )
    assert _archived(api.get("/api/events", {"end": "2026-02-01T00:00:00Z"}))
    stored = api.get("/api/events", {"start": "2026-02-01T00:00:00Z", "page_size": 100})
    assert stored.status_code == 200 and len(stored.json()["items"]) == 41 - 27
    # Without `start`: the events still stored, as documented.
    everything = api.get("/api/events", {"end": "2026-03-01T00:00:00Z", "page_size": 100})
    assert everything.status_code == 200 and len(everything.json()["items"]) == 41 - 27


def test_without_an_archive_every_range_is_answered(api):
    assert api.get("/api/events", {"end": "2026-02-01T00:00:00Z"}).json() == {"items": []}
    assert api.get("/api/events/never-sent").status_code == 404
