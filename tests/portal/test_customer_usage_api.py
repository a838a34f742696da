"""`GET /customers/{id}/usage?meter_id=` (extension): where a customer stands in each open period,
for an application to refuse work before the customer runs over; against a hand count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from meters.rollups import roll_up_all_pending
from portal import alerts
from tests.portal.helpers import make_world
from tests.products.factories import send_usage

pytestmark = pytest.mark.django_db


def _items(api, customer, query="") -> list[dict]:
    response = api.get(f"/api/customers/{customer.pk}/usage{query}")
    assert response.status_code == 200, response.content
    return response.json()["items"]


def test_usage_free_units_charge_and_credits_left(api):
    world = make_world()
    alert = alerts.create_alert(
        world.ada.subscription.pk,
        meter_id=world.calls.pk,
        threshold_kind="units",
        threshold="100",
        now=world.now,
    )
    items = {item["meter_id"]: item for item in _items(api, world.ada.customer)}
    calls = items[world.calls.pk]
    # 13 calls this period, 10 free: none left; 3 chargeable at 0.5 cents = 1.5 -> 2.
    assert calls["subscription_id"] == world.ada.subscription.pk
    assert (calls["consumed_units"], calls["free_units_left"], calls["chargeable_units"]) == (
        "13",
        "0",
        "3",
    )
    assert (calls["amount_so_far"], calls["currency"], calls["credits_left"]) == (2, "USD", None)
    assert calls["alerts"] == [{"id": alert.pk, "threshold_kind": "units", "threshold": "100"}]
    period = world.ada.subscription
    period.refresh_from_db()
    assert calls["period_start"] == period.current_period_start.isoformat().replace("+00:00", "Z")
    tokens = items[world.tokens.pk]
    assert tokens["consumed_units"] == "90"
    assert tokens["credit_entitlement_id"] == world.entitlement.pk
    balance = api.get(
        f"/api/credit-entitlements/{world.entitlement.pk}/balances/{world.ada.customer.pk}"
    ).json()["balance"]
    assert tokens["credits_left"] == balance


def test_one_meter_only(api):
    world = make_world()
    items = _items(api, world.bob.customer, f"?meter_id={world.calls.pk}")
    assert [(i["meter_id"], i["consumed_units"]) for i in items] == [(world.calls.pk, "4")]
    assert _items(api, world.bob.customer, "?meter_id=mtr_other") == []


def test_exact_before_and_after_the_rollup(api):
    """Events not rolled up yet count at once; the rollup changes nothing."""
    world = make_world()
    before = _items(api, world.ada.customer, f"?meter_id={world.calls.pk}")[0]
    now = datetime.now(UTC)
    send_usage(
        world.ada.subscription,
        "api.call",
        [{}] * 5,
        start=now - timedelta(minutes=10),
        prefix="late",
    )
    pending = _items(api, world.ada.customer, f"?meter_id={world.calls.pk}")[0]
    assert int(pending["consumed_units"]) == int(before["consumed_units"]) + 5
    roll_up_all_pending()
    assert _items(api, world.ada.customer, f"?meter_id={world.calls.pk}")[0] == pending


def test_free_units_left_before_the_threshold(api):
    world = make_world()
    items = _items(api, world.bob.customer, f"?meter_id={world.calls.pk}")
    # Bob: 4 calls of 10 free.
    assert (items[0]["free_units_left"], items[0]["amount_so_far"]) == ("6", 0)


def test_unknown_customer_and_parameters(api):
    assert api.get("/api/customers/cus_nope/usage").status_code == 404
    world = make_world()
    assert api.get(f"/api/customers/{world.ada.customer.pk}/usage?meter=x").status_code == 422
