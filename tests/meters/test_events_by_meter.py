"""`GET /api/events?meter_id=`: exactly the events the meter matches (its event name and its
nested filter), combined with the other list filters, and following edits of the filter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from tests.factories import event, ingest_events

pytestmark = pytest.mark.django_db

NOW = timezone.now().astimezone(UTC)


def cond(key: str, operator: str, value) -> dict:
    return {"key": key, "operator": operator, "value": value}


# (region = "eu" and (plan contains "pro" or latency <= 2.5) and status != "error")
#   or tier = "vip", written three levels deep.
NESTED = {
    "conjunction": "or",
    "clauses": [
        {
            "conjunction": "and",
            "clauses": [
                {"conjunction": "and", "clauses": [cond("region", "equals", "eu")]},
                {
                    "conjunction": "or",
                    "clauses": [
                        cond("plan", "contains", "pro"),
                        cond("latency", "less_than_or_equals", 2.5),
                    ],
                },
                {"conjunction": "and", "clauses": [cond("status", "not_equals", "error")]},
            ],
        },
        {
            "conjunction": "and",
            "clauses": [{"conjunction": "or", "clauses": [cond("tier", "equals", "vip")]}],
        },
    ],
}


def number(value) -> Decimal | None:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return Decimal(str(value))
    return None


def nested(m: dict) -> bool:
    """NESTED in plain Python: typed values, a missing key fails its condition."""
    latency = number(m.get("latency"))
    pro = isinstance(m.get("plan"), str) and "pro" in m["plan"]
    fast = latency is not None and latency <= Decimal("2.5")
    healthy = "status" in m and m["status"] != "error"
    return (m.get("region") == "eu" and (pro or fast) and healthy) or m.get("tier") == "vip"


SAMPLES = [
    {"region": "eu", "plan": "pro-annual", "status": "ok"},
    {"region": "eu", "plan": "Pro", "status": "ok"},  # contains is case-sensitive
    {"region": "us", "plan": "pro", "status": "ok"},
    {"region": "eu", "latency": 2.5, "status": "ok"},
    {"region": "eu", "latency": 2.51, "status": "ok"},
    {"region": "eu", "latency": 1, "status": "error"},
    {"region": "eu", "plan": "pro"},  # no status: not_equals needs the key
    {"region": "eu", "latency": "1", "status": "ok"},  # a string is not a number
    {"region": "eu", "latency": 0.1, "status": 500},  # 500 is not "error"
    {"tier": "vip"},
    {"tier": "VIP", "region": "eu"},
    {"region": "eu", "plan": 7, "tier": True, "status": "ok"},
    {},
]


def make_events() -> list[dict]:
    events = []
    for i, metadata in enumerate(SAMPLES):
        for customer in ("cus_a", "cus_b"):
            for name in ("api.call", "api.other"):
                events.append(
                    event(
                        f"{name}-{customer}-{i}",
                        customer,
                        name,
                        timestamp=NOW - timedelta(minutes=10 * i + (customer == "cus_b")),
                        metadata=metadata,
                    )
                )
    ingest_events(events, now=NOW)
    return events


def create_meter(api, flt: dict | None) -> str:
    body = {
        "name": "Calls",
        "event_name": "api.call",
        "measurement_unit": "calls",
        "aggregation": {"type": "count"},
        "filter": flt,
    }
    response = api.post("/api/meters", json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def listed(api, **params) -> list[str]:
    response = api.get("/api/events", {"page_size": 100, **params})
    assert response.status_code == 200, response.content
    return [e["event_id"] for e in response.json()["items"]]


def test_meter_id_lists_what_a_three_level_filter_matches(api):
    events = make_events()
    meter_id = create_meter(api, NESTED)

    expected = {
        e["event_id"] for e in events if e["event_name"] == "api.call" and nested(e["metadata"])
    }
    assert {i.split("-", 2)[2] for i in expected} == {"0", "3", "8", "9"}  # the samples that match
    got = listed(api, meter_id=meter_id)
    assert set(got) == expected
    assert len(got) == len(expected)


def test_meter_id_combines_with_customer_and_time(api):
    events = make_events()
    meter_id = create_meter(api, NESTED)
    start, end = NOW - timedelta(minutes=35), NOW - timedelta(minutes=5)

    def in_window(e):
        return start <= datetime.fromisoformat(e["timestamp"]) < end

    expected = {
        e["event_id"]
        for e in events
        if e["event_name"] == "api.call"
        and e["customer_id"] == "cus_b"
        and in_window(e)
        and nested(e["metadata"])
    }
    assert expected == {"api.call-cus_b-3"}
    got = listed(
        api,
        meter_id=meter_id,
        customer_id="cus_b",
        start=start.isoformat(),
        end=end.isoformat(),
    )
    assert set(got) == expected


def test_meter_without_a_filter_lists_every_event_of_its_name_newest_first(api):
    events = make_events()
    meter_id = create_meter(api, None)
    calls = [e for e in events if e["event_name"] == "api.call"]
    newest_first = sorted(calls, key=lambda e: e["timestamp"], reverse=True)
    assert listed(api, meter_id=meter_id) == [e["event_id"] for e in newest_first]
    first_page = listed(api, meter_id=meter_id, page_size=5, page_number=0)
    assert first_page == [e["event_id"] for e in newest_first[:5]]


def test_the_list_follows_an_edited_filter_at_once(api):
    events = make_events()
    meter_id = create_meter(api, NESTED)
    vip_only = {
        "conjunction": "and",
        "clauses": [{"key": "tier", "operator": "equals", "value": "vip"}],
    }
    response = api.patch(
        f"/api/meters/{meter_id}", json.dumps({"filter": vip_only}), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    expected = {
        e["event_id"]
        for e in events
        if e["event_name"] == "api.call" and e["metadata"].get("tier") == "vip"
    }
    assert set(listed(api, meter_id=meter_id)) == expected


def test_an_event_name_other_than_the_meters_is_refused(api):
    make_events()
    meter_id = create_meter(api, NESTED)
    response = api.get("/api/events", {"meter_id": meter_id, "event_name": "api.other"})
    assert response.status_code == 400  # Dodo: "conflicting meter/event names"
    assert [e["field"] for e in response.json()["errors"]] == ["event_name"]
    assert set(listed(api, meter_id=meter_id, event_name="api.call")) == set(
        listed(api, meter_id=meter_id)
    )


def test_an_unknown_meter_is_refused(api):
    response = api.get("/api/events", {"meter_id": "mtr_missing"})
    assert response.status_code == 404  # Dodo: "Meter not found"
    assert response.json()["code"] == "NOT_FOUND"
    assert [e["field"] for e in response.json()["errors"]] == ["meter_id"]
