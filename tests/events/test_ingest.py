"""Ingestion rules: idempotency, atomic validation naming every bad event, limits and timestamps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings

from events.models import Event, IngestBatch
from tests.factories import event

URL = "/api/events/ingest"


def post(api, body, **headers):
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return api.generic("POST", URL, raw, content_type="application/json", **headers)


def good_batch(count: int = 3, prefix: str = "e") -> dict:
    return {
        "events": [
            event(f"{prefix}{i}", "cus_1", "api.call", metadata={"tokens": i, "model": "gpt"})
            for i in range(count)
        ]
    }


def test_ingest_stores_events_and_counts_new_ones(api):
    response = post(api, good_batch(3))
    assert response.status_code == 200
    assert response.json() == {"ingested_count": 3}
    assert sorted(Event.objects.values_list("event_id", flat=True)) == ["e0", "e1", "e2"]


def test_repeated_batch_is_ignored_and_not_counted_again(api):
    post(api, good_batch(3))
    again = post(api, good_batch(5))  # e0..e2 repeat, e3 and e4 are new
    assert again.json() == {"ingested_count": 2}
    assert Event.objects.count() == 5
    assert post(api, good_batch(5)).json() == {"ingested_count": 0}
    assert Event.objects.count() == 5


def test_each_stored_batch_is_logged_once_for_rollups(api):
    post(api, good_batch(3))
    post(api, good_batch(3))  # nothing new: no batch row
    batches = list(IngestBatch.objects.all())
    assert len(batches) == 1
    assert sorted(batches[0].event_ids) == sorted(Event.objects.values_list("id", flat=True))


def test_decimal_metadata_is_stored_exactly(api):
    body = (
        '{"events":[{"event_id":"d1","customer_id":"c","event_name":"n",'
        '"metadata":{"v":0.10000000000000000555,"big":12345678901234567890}}]}'
    )
    assert post(api, body).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (metadata->>'v')::numeric, (metadata->>'big')::numeric FROM events_event"
        )
        value, big = cursor.fetchone()
    assert value == Decimal("0.10000000000000000555")
    assert big == Decimal("12345678901234567890")


def test_timestamp_defaults_to_now_and_accepts_offsets(api):
    before = datetime.now(UTC)
    body = {
        "events": [
            event("t1", "c", "n"),
            event("t2", "c", "n", timestamp="2026-01-01T10:00:00+02:00"),
            event("t3", "c", "n", timestamp="2026-01-01T08:00:00Z"),
        ]
    }
    with override_settings(EVENT_LATE_WINDOW_DAYS=100000):
        assert post(api, body).status_code == 200
    stored = {e.event_id: e.timestamp for e in Event.objects.all()}
    assert before <= stored["t1"] <= datetime.now(UTC)
    assert stored["t2"] == stored["t3"] == datetime(2026, 1, 1, 8, tzinfo=UTC)


def _bad_event(**override) -> dict:
    base = event("bad", "cus_1", "api.call", metadata={"ok": 1})
    base.update(override)
    return base


def _many_keys(count: int) -> dict:
    return {f"k{i}": i for i in range(count)}


BAD_BODIES = {
    "invalid json": (b'{"events": [', 400, "INVALID_JSON", None),
    "not an object": (b"[1, 2]", 422, "INVALID_REQUEST_BODY", None),
    "events missing": ({"evnts": []}, 422, "INVALID_REQUEST_BODY", "events"),
    "zero events": ({"events": []}, 422, "INVALID_REQUEST_BODY", "events"),
    "1001 events": (good_batch(1001, "big"), 422, "INVALID_REQUEST_BODY", "events"),
    "event_id wrong type": (
        {"events": [_bad_event(event_id=12)]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].event_id",
    ),
    "customer_id missing": (
        {"events": [{"event_id": "x", "event_name": "n"}]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].customer_id",
    ),
    "event_name empty": (
        {"events": [_bad_event(event_name="")]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].event_name",
    ),
    "timestamp wrong type": (
        {"events": [_bad_event(timestamp=1700000000)]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].timestamp",
    ),
    "timestamp not a date": (
        {"events": [_bad_event(timestamp="yesterday")]},
        400,  # Dodo: 400 for invalid timestamps and repeated event ids, 422 for schema errors
        "INVALID_REQUEST_BODY",
        "events[0].timestamp",
    ),
    "metadata not an object": (
        {"events": [_bad_event(metadata=[1, 2])]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].metadata",
    ),
    "nested metadata": (
        {"events": [_bad_event(metadata={"a": {"b": 1}})]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].metadata.a",
    ),
    "array metadata value": (
        {"events": [_bad_event(metadata={"a": [1]})]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].metadata.a",
    ),
    "null metadata value": (
        {"events": [_bad_event(metadata={"a": None})]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].metadata.a",
    ),
    "51 metadata keys": (
        {"events": [_bad_event(metadata=_many_keys(51))]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].metadata",
    ),
    "key of 101 characters": (
        {"events": [_bad_event(metadata={"k" * 101: 1})]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].metadata." + "k" * 100,
    ),
    "value of 501 characters": (
        {"events": [_bad_event(metadata={"k": "v" * 501})]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].metadata.k",
    ),
    "NUL in a value": (
        {"events": [_bad_event(metadata={"k": "a\u0000b"})]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].metadata.k",
    ),
    "NaN number": (
        b'{"events":[{"event_id":"x","customer_id":"c","event_name":"n","metadata":{"v":NaN}}]}',
        400,
        "INVALID_JSON",
        None,
    ),
    "huge number": (
        b'{"events":[{"event_id":"x","customer_id":"c","event_name":"n","metadata":{"v":1e400}}]}',
        422,
        "INVALID_REQUEST_BODY",
        "events[0].metadata.v",
    ),
    "unknown event field": (
        {"events": [_bad_event(quantity=3)]},
        422,
        "INVALID_REQUEST_BODY",
        "events[0].quantity",
    ),
    "unknown top-level field": (
        {"events": [event("e", "c", "n")], "batch": "b1"},
        422,
        "INVALID_REQUEST_BODY",
        "batch",
    ),
    "duplicate id in one request": (
        {"events": [_bad_event(event_id="same"), _bad_event(event_id="same")]},
        400,
        "INVALID_REQUEST_BODY",
        "events[1].event_id",
    ),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(api, case):
    post(api, good_batch(2, "kept"))
    body, status, code, field = BAD_BODIES[case]
    response = post(api, body)
    assert response.status_code == status, response.content
    payload = response.json()
    assert payload["code"] == code
    assert payload["message"]
    if field:
        assert field in [e["field"] for e in payload["errors"]], payload
    assert sorted(Event.objects.values_list("event_id", flat=True)) == ["kept0", "kept1"]


def test_every_bad_event_is_named_by_index(api):
    body = {
        "events": [
            event("ok", "c", "n"),
            _bad_event(event_id="b1", metadata={"x": {"y": 1}}),
            event("ok2", "c", "n"),
            _bad_event(event_id="b3", customer_id=5),
        ]
    }
    response = post(api, body)
    assert response.status_code == 422
    assert {e["index"] for e in response.json()["errors"]} == {1, 3}
    assert Event.objects.count() == 0


def test_timestamp_more_than_five_minutes_ahead_is_refused(api):
    ahead = datetime.now(UTC) + timedelta(minutes=10)
    nearly = datetime.now(UTC) + timedelta(minutes=4)
    refused = post(api, {"events": [event("f1", "c", "n", timestamp=ahead)]})
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "TIMESTAMP_IN_FUTURE"
    assert post(api, {"events": [event("f2", "c", "n", timestamp=nearly)]}).status_code == 200
    assert list(Event.objects.values_list("event_id", flat=True)) == ["f2"]


def test_late_events_within_the_window_are_accepted_and_older_refused(api):
    now = datetime.now(UTC)
    late = post(api, {"events": [event("l1", "c", "n", timestamp=now - timedelta(days=34))]})
    assert late.status_code == 200
    too_old = post(api, {"events": [event("l2", "c", "n", timestamp=now - timedelta(days=36))]})
    assert too_old.status_code == 400
    assert too_old.json()["errors"][0]["code"] == "TIMESTAMP_TOO_OLD"
    assert list(Event.objects.values_list("event_id", flat=True)) == ["l1"]


@override_settings(INGEST_MAX_BODY_BYTES=2000)
def test_body_over_the_size_limit_is_413(api):
    response = post(api, good_batch(40))
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert Event.objects.count() == 0


def test_unknown_customers_are_stored(api):
    response = post(api, {"events": [event("u1", "cus_nobody_yet", "n")]})
    assert response.status_code == 200
    assert Event.objects.get(event_id="u1").customer_id == "cus_nobody_yet"
