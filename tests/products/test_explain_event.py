"""GET /api/events/{event_id}/explain (an extension): every reason the issue lists, each checked
against what the test set up by hand, not against the explainer's own computation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.ingest import InvalidEvents
from events.models import RefusedEvent
from products import billing
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_meter, make_product, subscribe

START = datetime(2026, 3, 2, tzinfo=UTC)
WEEK = timedelta(days=7)
pytestmark = pytest.mark.django_db

# amount > 10 and (region = "EU" or (tier = "gold" and plan contains "pro"))
FILTER = {
    "conjunction": "and",
    "clauses": [
        {"key": "amount", "operator": "greater_than", "value": 10},
        {
            "conjunction": "or",
            "clauses": [
                {"key": "region", "operator": "equals", "value": "EU"},
                {
                    "conjunction": "and",
                    "clauses": [
                        {"key": "tier", "operator": "equals", "value": "gold"},
                        {"key": "plan", "operator": "contains", "value": "pro"},
                    ],
                },
            ],
        },
    ],
}


@pytest.fixture
def setup():
    meter = make_meter("Tokens", "llm.call", "sum", "tokens", FILTER, now=START)
    product = make_product([(meter, "2", 0)], now=START, interval="Week")
    subscription = subscribe(product, now=START, customer=make_customer(customer_id="cus_1"))
    return meter, subscription


def send(event_id, *, customer="cus_1", name="llm.call", at=START + timedelta(hours=1), **meta):
    ingest_events(
        [event(event_id, customer, name, timestamp=at, metadata=meta)], now=at + timedelta(1)
    )


def explain(api, event_id):
    response = api.get(f"/api/events/{event_id}/explain")
    assert response.status_code == 200, response.content
    return response.json()


def only_meter(body, meter_id):
    [entry] = [m for m in body["meters"] if m["meter_id"] == meter_id]
    return entry


GOOD = {"amount": 20, "region": "EU", "tokens": 7}


def test_an_id_never_seen_is_404(api, setup):
    response = api.get("/api/events/nope/explain")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_billed_event_names_its_invoice_and_line(api, setup):
    meter, subscription = setup
    send("e1", **GOOD)
    [invoice] = billing.run_billing_cycle(now=START + WEEK)
    body = explain(api, "e1")
    assert body["stored"] is True and body["refused"] is None
    assert body["customer"]["exists"] is True and body["customer"]["subscribed"] is True
    entry = only_meter(body, meter.id)
    assert (entry["matched"], entry["counted"], entry["reason"]) == (True, True, "BILLED")
    assert entry["value"] == 7
    assert entry["billing"]["invoice_id"] == invoice.invoice_id
    assert entry["billing"]["invoice_number"] == invoice.number
    assert entry["billing"]["line"] == 1  # line 0 is the fixed fee
    assert entry["billing"]["period_start"] == "2026-03-02T00:00:00Z"


def test_open_period(api, setup):
    meter, _ = setup
    send("e1", **GOOD)
    entry = only_meter(explain(api, "e1"), meter.id)
    assert entry["reason"] == "PERIOD_OPEN"
    assert entry["billing"]["period_end"] == "2026-03-09T00:00:00Z"


def test_case_different_and_similar_event_names(api, setup):
    meter, _ = setup
    other = make_meter("Calls", "llm.cal", now=START)
    send("e1", name="LLM.Call", **GOOD)
    body = explain(api, "e1")
    entry = only_meter(body, meter.id)
    assert (entry["matched"], entry["counted"]) == (False, False)
    assert entry["reason"] == "EVENT_NAME_DIFFERS_BY_CASE"
    assert "'llm.call'" in entry["message"] and "'LLM.Call'" in entry["message"]
    # "llm.cal" is two edits from "LLM.Call" only case aside: three edits, not considered.
    assert other.id not in {m["meter_id"] for m in body["meters"]}
    send("e2", name="llm.calls", **GOOD)
    names = {m["meter_id"]: m["reason"] for m in explain(api, "e2")["meters"]}
    assert names == {meter.id: "EVENT_NAME_SIMILAR", other.id: "EVENT_NAME_SIMILAR"}


def test_failing_nested_condition_names_its_path_and_both_values(api, setup):
    meter, _ = setup
    # amount passes; region fails and so does the nested and-group, at its tier condition.
    send("e1", amount=20, region="eu", tier="silver", plan="pro", tokens=5)
    entry = only_meter(explain(api, "e1"), meter.id)
    assert (entry["matched"], entry["counted"], entry["reason"]) == (False, False, "FILTER_FAILED")
    paths = [f["path"] for f in entry["failed_conditions"]]
    assert paths == ["filter.clauses[1].clauses[0]", "filter.clauses[1].clauses[1].clauses[0]"]
    first = entry["failed_condition"]
    assert first["condition"] == {"key": "region", "operator": "equals", "value": "EU"}
    assert first["event_value"] == "eu"
    assert "filter.clauses[1].clauses[0]" in first["message"]
    assert '"EU"' in first["message"] and '"eu"' in first["message"]
    nested = entry["failed_conditions"][1]
    assert (nested["event_value"], nested["condition"]["value"]) == ("silver", "gold")


def test_a_numeric_string_fails_a_number_condition_and_says_why(api, setup):
    meter, _ = setup
    send("e1", amount="150", region="EU", tokens=5)
    entry = only_meter(explain(api, "e1"), meter.id)
    assert entry["failed_condition"]["path"] == "filter.clauses[0]"
    assert entry["failed_condition"]["event_value_type"] == "string"
    assert "numbers must be sent as numbers" in entry["failed_condition"]["message"]


def test_key_missing(api, setup):
    meter, _ = setup
    send("e1", amount=20, region="EU", token=5)
    entry = only_meter(explain(api, "e1"), meter.id)
    assert (entry["matched"], entry["counted"], entry["reason"]) == (True, False, "KEY_MISSING")
    assert "'token'" in entry["message"]  # the close key it did send


def test_numeric_string_value_is_skipped(api, setup):
    meter, _ = setup
    send("e1", amount=20, region="EU", tokens="150")
    entry = only_meter(explain(api, "e1"), meter.id)
    assert (entry["matched"], entry["counted"], entry["reason"]) == (True, False, "NUMERIC_STRING")
    assert entry["value"] == "150"


def test_not_a_number(api, setup):
    meter, _ = setup
    send("e1", amount=20, region="EU", tokens=True)
    assert only_meter(explain(api, "e1"), meter.id)["reason"] == "NOT_A_NUMBER"


def test_unknown_customer(api, setup):
    meter, _ = setup
    send("e1", customer="cus_ghost", **GOOD)
    body = explain(api, "e1")
    assert body["customer"] == {
        "customer_id": "cus_ghost",
        "exists": False,
        "subscribed": False,
        "subscriptions": [],
    }
    assert only_meter(body, meter.id)["reason"] == "UNKNOWN_CUSTOMER"


def test_no_subscription(api, setup):
    meter, _ = setup
    make_customer(customer_id="cus_2")
    send("e1", customer="cus_2", **GOOD)
    body = explain(api, "e1")
    assert body["customer"]["exists"] is True and body["customer"]["subscribed"] is False
    assert only_meter(body, meter.id)["reason"] == "NO_SUBSCRIPTION"


def test_before_the_subscription(api, setup):
    meter, _ = setup
    send("e1", at=START - timedelta(hours=2), **GOOD)
    assert only_meter(explain(api, "e1"), meter.id)["reason"] == "BEFORE_SUBSCRIPTION"


def test_no_product_prices_the_meter(api, setup):
    meter, _ = setup
    unpriced = make_meter("Other", "llm.call", now=START)
    send("e1", **GOOD)
    assert only_meter(explain(api, "e1"), unpriced.id)["reason"] == "NOT_PRICED"


def test_period_invoiced_before_arrival(api, setup):
    meter, _ = setup
    [invoice] = billing.run_billing_cycle(now=START + WEEK)
    late = event("late", "cus_1", "llm.call", timestamp=START + timedelta(days=1), metadata=GOOD)
    with pytest.raises(InvalidEvents):
        ingest_events([late], now=START + WEEK + timedelta(hours=1))
    body = explain(api, "late")
    assert body["stored"] is False
    [refusal] = body["refused"]
    assert refusal["code"] == "PERIOD_ALREADY_INVOICED"
    assert refusal["at"] == "2026-03-09T01:00:00Z"
    entry = only_meter(body, meter.id)
    assert entry["reason"] == "PERIOD_INVOICED_BEFORE_ARRIVAL"
    assert entry["billing"]["invoice_id"] == invoice.invoice_id


def test_refused_for_a_duplicate_id_in_its_batch(api, setup):
    with pytest.raises(InvalidEvents):
        ingest_events(
            [
                event("ok", "cus_1", "llm.call", metadata=GOOD),
                event("dup", "cus_1", "llm.call", metadata=GOOD),
                event("dup", "cus_1", "llm.call", metadata=GOOD),
            ],
            now=START,
        )
    body = explain(api, "dup")
    assert body["stored"] is False
    assert [r["code"] for r in body["refused"]] == ["DUPLICATE_EVENT_ID"]
    assert "events[1]" in body["refused"][0]["message"]
    # The valid event of the batch was refused with it, and says so.
    [batch] = explain(api, "ok")["refused"]
    assert batch["code"] == "BATCH_REFUSED"
    assert "events[2].event_id" in batch["message"]


def test_refused_as_too_old(api, setup):
    old = event("old", "cus_1", "llm.call", timestamp=START - timedelta(days=60))
    with pytest.raises(InvalidEvents):
        ingest_events([old], now=START)
    body = explain(api, "old")
    assert body["stored"] is False
    [refusal] = body["refused"]
    assert refusal["code"] == "TIMESTAMP_TOO_OLD"
    assert refusal["field"] == "events[0].timestamp"
    assert "Refused at ingestion (TIMESTAMP_TOO_OLD)" in body["summary"]


def test_refusals_are_kept_for_the_retention_only(api, setup, settings):
    from events.ingest import prune_refusals

    with pytest.raises(InvalidEvents):
        ingest_events([event("old", "cus_1", "llm.call", timestamp="yesterday")], now=START)
    assert RefusedEvent.objects.count() == 1
    settings.REJECTED_EVENTS_RETENTION_DAYS = 7
    assert prune_refusals(now=START + timedelta(days=6)) == 0
    assert prune_refusals(now=START + timedelta(days=7, seconds=1)) == 1
    assert api.get("/api/events/old/explain").status_code == 404


def test_refusals_beyond_the_row_cap_go_oldest_first(setup, settings):
    from events.ingest import prune_refusals

    for n in range(3):
        with pytest.raises(InvalidEvents):
            ingest_events([event(f"bad{n}", "cus_1", "x", timestamp="never")], now=START)
    settings.REJECTED_EVENTS_MAX_ROWS = 2
    assert prune_refusals(now=START) == 1
    assert set(RefusedEvent.objects.values_list("event_id", flat=True)) == {"bad1", "bad2"}


def test_an_event_stored_as_x_slash_explain_is_still_found(api, setup):
    send("a/explain", **GOOD)
    response = api.get("/api/events/a/explain")
    assert response.status_code == 200
    assert response.json()["event_id"] == "a/explain"
    assert "stored" not in response.json()


def test_the_staff_page_is_linked_from_the_event(admin_client, setup):
    from events.models import Event

    send("e1", amount=20, region="eu", tier="silver", plan="pro", tokens=5)
    stored = Event.objects.get(event_id="e1")
    change = admin_client.get(f"/admin/events/event/{stored.pk}/change/")
    assert b"/admin/events/event/explain/e1/" in change.content
    page = admin_client.get("/admin/events/event/explain/e1/")
    assert page.status_code == 200
    assert b"FILTER_FAILED" in page.content
    assert b"filter.clauses[1].clauses[0]" in page.content
    assert admin_client.get("/admin/events/event/explain/nope/").status_code == 404


def test_the_schema_names_the_endpoints_as_extensions(api):
    schema = api.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, method in (
        ("/api/events/{event_id}/explain", "get"),
        ("/api/invoices/{invoice_id}/lines/{position}/events", "get"),
        ("/api/meters/{meter_id}/health", "get"),
    ):
        assert "extension" in schema["paths"][path][method]["description"], path
