"""The subscriptions table: product, status, current period, next billing date and a scheduled
plan change, as the subscription stands."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from products import plan_changes
from tests.portal.helpers import make_world, portal_client
from tests.products.factories import make_product

pytestmark = pytest.mark.django_db


def test_a_scheduled_plan_change_and_the_next_billing_date():
    world = make_world()
    bigger = make_product([(world.calls, "0.4", 100)], now=world.now, name="Scale plan")
    plan_changes.schedule_plan_change(
        world.ada.subscription.pk,
        product_id=bigger.pk,
        quantity=1,
        mode="do_not_bill",
        now=datetime.now(UTC),
    )
    page = portal_client(world.ada.customer).get("/portal/")
    rows = dict(page.context["subscriptions"])
    subscription = next(s for s in rows if s.pk == world.ada.subscription.pk)
    assert rows[subscription] == subscription.current_period_end  # the next billing date
    html = page.content.decode()
    assert "to Scale plan at the next billing date" in html
    # The other subscription has none.
    assert html.count("at the next billing date") == 1


def test_a_paused_subscription_has_no_open_period_and_no_gating_items(api):
    world = make_world()
    plan_changes.pause(world.bob.subscription.pk, now=datetime.now(UTC))
    page = portal_client(world.bob.customer).get("/portal/")
    assert [p.subscription.pk for p in page.context["periods"]] == [
        world.bob.credit_subscription.pk
    ]
    assert "paused" in page.content.decode()
    items = api.get(f"/api/customers/{world.bob.customer.pk}/usage").json()["items"]
    assert {i["subscription_id"] for i in items} == {world.bob.credit_subscription.pk}
