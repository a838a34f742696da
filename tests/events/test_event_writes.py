"""Events are written only by ingestion, which writes each event_id's key in the same statement:
the ORM's inserts are refused, so no test (or bench, or command) can store an event without its
key and see a dedupe that production does not have. The test factory goes through ingestion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.models import Event, EventKey
from tests.factories import event, ingest_events

pytestmark = pytest.mark.django_db

AT = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
LATER = AT + timedelta(hours=1)
FIELDS = {"event_id": "e1", "customer_id": "c", "event_name": "api.call", "timestamp": AT}


def test_orm_inserts_of_events_are_refused():
    with pytest.raises(TypeError, match="tests.factories.ingest_events"):
        Event.objects.create(**FIELDS)
    with pytest.raises(TypeError, match="events_eventkey"):
        Event(**FIELDS).save()
    with pytest.raises(TypeError, match="events_eventkey"):
        Event.objects.bulk_create([Event(**FIELDS)])
    with pytest.raises(TypeError):
        Event.objects.get_or_create(**FIELDS)
    assert not Event.objects.exists() and not EventKey.objects.exists()


def test_the_factory_writes_each_key_as_ingestion_does():
    events = [event("e1", "c", timestamp=AT), event("e2", "c", timestamp=AT)]
    assert ingest_events(events, now=LATER) == 2
    assert set(EventKey.objects.values_list("event_id", flat=True)) == {"e1", "e2"}
    # A repeat is ignored, ever, even once its row is gone (as after archiving).
    Event.objects.filter(event_id="e1").delete()
    assert ingest_events([event("e1", "c", timestamp=AT)], now=LATER) == 0
    assert not Event.objects.filter(event_id="e1").exists()


def test_a_stored_event_can_still_be_saved():
    ingest_events([event("e1", "c", timestamp=AT)], now=LATER)
    stored = Event.objects.get(event_id="e1")
    stored.metadata = {"note": "kept"}
    stored.save(update_fields=["metadata"])
    assert Event.objects.get(event_id="e1").metadata == {"note": "kept"}
