"""Meter health (an extension): on hand-made recent events, each finding with its count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from billing_site.names import name_distance
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_meter

pytestmark = pytest.mark.django_db

FILTER = {
    "conjunction": "and",
    "clauses": [
        {"key": "region", "operator": "equals", "value": "EU"},
        {"key": "amount", "operator": "greater_than", "value": 10},
    ],
}


@pytest.fixture
def meter():
    now = timezone.now()
    make_customer(customer_id="cus_1")
    made = make_meter("Tokens", "llm.call", "sum", "tokens", FILTER, now=now - timedelta(days=1))
    at = now - timedelta(hours=1)
    events = [
        event("ok", "cus_1", "llm.call", timestamp=at, metadata={"region": "us", "tokens": 5}),
        event("typo", "cus_1", "llm.call", timestamp=at, metadata={"Tokens": 5, "amount": 11}),
        event("str", "cus_1", "llm.call", timestamp=at, metadata={"tokens": "150"}),
        event("amt", "cus_ghost", "llm.call", timestamp=at, metadata={"amount": " 12 "}),
        event("case", "cus_1", "LLM.call", timestamp=at, metadata={}),
        event("edit", "cus_1", "llm.calls", timestamp=at, metadata={}),
        event("old", "cus_1", "LLM.CALL", timestamp=now - timedelta(days=9), metadata={}),
    ]
    ingest_events(events, now=now)
    return made


def test_the_api_reports_each_finding(api, meter):
    response = api.get(f"/api/meters/{meter.id}/health")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["sampled_events"] == 4
    assert {(n["event_name"], n["relation"], n["events"]) for n in body["similar_event_names"]} == {
        ("LLM.call", "case", 1),
        ("llm.calls", "edit", 1),
    }  # LLM.CALL is older than the window
    assert [(k["key"], k["close_to"], k["events"]) for k in body["near_keys"]] == [
        ("Tokens", ["tokens"], 1)
    ]
    assert {(n["key"], n["events"], tuple(n["examples"])) for n in body["numeric_strings"]} == {
        ("tokens", 1, ("str",)),
        ("amount", 1, ("amt",)),
    }
    # No event has region "EU"; two have a number amount > 10? only "typo" (11).
    passed = {c["path"]: c["passed"] for c in body["conditions"]}
    assert passed == {"filter.clauses[0]": 0, "filter.clauses[1]": 1}
    assert [c["path"] for c in body["conditions_never_passed"]] == ["filter.clauses[0]"]
    assert body["unknown_customers"] == {"events": 1, "customer_ids": 1, "examples": ["cus_ghost"]}
    assert api.get("/api/meters/nope/health").status_code == 404


def test_the_analytics_page_shows_the_findings(admin_client, meter):
    page = admin_client.get(f"/admin/meters/meter/{meter.id}/analytics/").content.decode()
    assert 'id="meter-health"' in page
    assert "LLM.call" in page and "llm.calls" in page
    assert "No event passed <code>filter.clauses[0]</code>" in page
    assert "cus_ghost" in page


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[len(b)]


@given(st.text("abc.", max_size=8), st.text("abc.", max_size=8))
def test_name_distance_is_levenshtein_capped(a, b):
    assert name_distance(a, b) == min(levenshtein(a, b), 3)
