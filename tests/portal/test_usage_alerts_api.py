"""`POST|GET /subscriptions/{id}/usage-alerts` and `DELETE .../usage-alerts/{alert_id}`
(extensions): every field applied or refused by name, nothing stored on a refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audit.models import AuditEntry
from portal import alerts
from portal.models import UsageAlert
from tests.credits.factories import credit_product, make_entitlement
from tests.products.factories import make_meter, make_product, send_usage, subscribe

pytestmark = pytest.mark.django_db
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def plan():
    calls = make_meter("Calls", "api.call", now=NOW - timedelta(days=1))
    other = make_meter("Other", "other", now=NOW - timedelta(days=1))
    product = make_product([(calls, "0.5", 10)], now=NOW - timedelta(days=1))
    return calls, other, subscribe(product, now=NOW - timedelta(hours=2))


def _url(subscription) -> str:
    return f"/api/subscriptions/{subscription.pk}/usage-alerts"


def test_create_list_delete(api, plan):
    calls, _, subscription = plan
    created = api.post(
        _url(subscription),
        {"meter_id": calls.pk, "threshold_kind": "units", "threshold": "1000.5"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["threshold"] == "1000.5" and body["reached_at"] is None
    assert body["meter_id"] == calls.pk and body["subscription_id"] == subscription.pk
    assert AuditEntry.objects.filter(object_id=body["id"], action="created").exists()

    listed = api.get(_url(subscription)).json()["items"]
    assert [item["id"] for item in listed] == [body["id"]]

    assert api.delete(f"{_url(subscription)}/{body['id']}").status_code == 204
    assert UsageAlert.objects.count() == 0
    assert AuditEntry.objects.filter(object_id=body["id"], action="deleted").exists()
    assert api.delete(f"{_url(subscription)}/{body['id']}").status_code == 404


def test_the_list_says_when_it_fired_this_period(api, plan):
    calls, _, subscription = plan
    alert = alerts.create_alert(
        subscription.pk, meter_id=calls.pk, threshold_kind="units", threshold=2, now=NOW
    )
    send_usage(subscription, "api.call", [{}] * 2, start=NOW - timedelta(hours=1), prefix="x")
    alerts.check_usage_alerts(now=NOW)
    [item] = api.get(_url(subscription)).json()["items"]
    assert item["id"] == alert.pk and item["reached_at"] is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"meter_id": "mtr_nope", "threshold_kind": "units", "threshold": "5"}, "meter_id"),
        ({"threshold_kind": "units", "threshold": "5"}, "meter_id"),
        ({"meter_id": "CALLS", "threshold_kind": "kilos", "threshold": "5"}, "threshold_kind"),
        ({"threshold_kind": "units", "threshold": "5", "meter_id": "OTHER"}, "meter_id"),
        ({"meter_id": "CALLS", "threshold_kind": "units", "threshold": "0"}, "threshold"),
        ({"meter_id": "CALLS", "threshold_kind": "units", "threshold": "-3"}, "threshold"),
        ({"meter_id": "CALLS", "threshold_kind": "units", "threshold": "NaN"}, "threshold"),
        ({"meter_id": "CALLS", "threshold_kind": "units", "threshold": 1.5}, "threshold"),
        ({"meter_id": "CALLS", "threshold_kind": "units", "threshold": True}, "threshold"),
        ({"meter_id": "CALLS", "threshold_kind": "amount", "threshold": "2.5"}, "threshold"),
        ({"meter_id": "CALLS", "threshold_kind": "units", "threshold": "5", "x": 1}, "x"),
    ],
)
def test_bad_input_is_refused_naming_the_field(api, plan, body, field):
    calls, other, subscription = plan
    body = {
        k: {"CALLS": calls.pk, "OTHER": other.pk}.get(v, v) if isinstance(v, str) else v
        for k, v in body.items()
    }
    response = api.post(_url(subscription), body, format="json")
    assert response.status_code == 422, response.content
    assert field in response.content.decode()
    assert UsageAlert.objects.count() == 0


def test_the_same_alert_twice_is_a_conflict(api, plan):
    calls, _, subscription = plan
    body = {"meter_id": calls.pk, "threshold_kind": "amount", "threshold": 500}
    assert api.post(_url(subscription), body, format="json").status_code == 201
    assert api.post(_url(subscription), body, format="json").status_code == 409
    assert UsageAlert.objects.count() == 1


def test_an_amount_on_a_meter_billed_in_credits_is_refused(api):
    entitlement = make_entitlement(now=NOW)
    tokens = make_meter("Tokens", "tok", now=NOW)
    product = credit_product(entitlement, tokens, credits_amount=10, now=NOW)
    subscription = subscribe(product, now=NOW)
    response = api.post(
        _url(subscription),
        {"meter_id": tokens.pk, "threshold_kind": "amount", "threshold": 5},
        format="json",
    )
    assert response.status_code == 422 and "threshold_kind" in response.content.decode()
    ok = api.post(
        _url(subscription),
        {"meter_id": tokens.pk, "threshold_kind": "units", "threshold": 5},
        format="json",
    )
    assert ok.status_code == 201


def test_unknown_subscription_is_404(api):
    response = api.post(
        "/api/subscriptions/sub_nope/usage-alerts",
        {"meter_id": "m", "threshold_kind": "units", "threshold": "5"},
        format="json",
    )
    assert response.status_code == 404
    assert api.get("/api/subscriptions/sub_nope/usage-alerts").status_code == 404


def test_unknown_query_parameters_are_refused(api, plan):
    _, _, subscription = plan
    assert api.get(f"{_url(subscription)}?meter_id=x").status_code == 422
