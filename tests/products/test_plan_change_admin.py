"""The admin's change-plan page: a Billing admin previews the charge (the API's preview, so the
lines of the invoice the change then writes) and confirms; a Viewer gets 403; the change is
audit-logged as the staff user. Amounts by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from products.models import Invoice, Subscription
from tests.products.test_plan_changes import (
    CHANGE,
    OLD_FEE,
    OLD_PRICE,
    PRORATED_FREE,
    USED,
    calls,
    half_up,
    plans,  # noqa: F401 - the fixture
)
from tests.roles.helpers import staff_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: CHANGE)


def body(new, **changes) -> dict:
    return {
        "product": new.pk,
        "quantity": "2",
        "proration_billing_mode": "prorated_immediately",
        "effective_at": "immediately",
        **changes,
    }


def url(subscription: Subscription) -> str:
    return reverse("admin:products_subscription_change_plan", args=[quote(subscription.pk)])


def test_a_billing_admin_previews_the_charge_then_confirms_it(plans, clock):  # noqa: F811
    subscription, new = plans
    calls(subscription, 150, CHANGE - timedelta(days=1), "before-")
    admin = staff_client("alice", "billing_admin")
    page = admin.get(url(subscription))
    assert page.status_code == 200 and new.name in page.content.decode()
    assert (
        url(subscription)
        in admin.get(
            reverse("admin:products_subscription_change", args=[quote(subscription.pk)])
        ).content.decode()
    )

    total = half_up(OLD_FEE * USED) + (150 - PRORATED_FREE) * OLD_PRICE  # 1000 + 236
    shown = admin.post(url(subscription), body(new, preview="1"))
    html = shown.content.decode()
    assert shown.status_code == 200
    assert '<th class="change-plan-total">12.36 USD</th>' in html
    assert "prorated 0.322583 of the period" in html
    assert not Invoice.objects.exists()  # a preview keeps nothing
    assert Subscription.objects.get(pk=subscription.pk).product_id != new.pk

    done = admin.post(url(subscription), body(new, confirm="1"))
    assert done.status_code == 302
    [invoice] = Invoice.objects.all()
    assert invoice.total_minor == total
    changed = Subscription.objects.get(pk=subscription.pk)
    assert (changed.product_id, changed.quantity) == (new.pk, 2)
    [entry] = AuditEntry.objects.filter(action="plan_changed", object_id=subscription.pk)
    assert (entry.actor_kind, entry.actor_name) == ("user", "alice")
    assert entry.details["invoice_id"] == invoice.invoice_id


def test_a_scheduled_change_previews_nothing_charged_and_is_recorded(plans, clock):  # noqa: F811
    subscription, new = plans
    admin = staff_client("alice", "billing_admin")
    scheduled = body(new, effective_at="next_billing_date")
    shown = admin.post(url(subscription), {**scheduled, "preview": "1"})
    assert "Nothing is charged now" in shown.content.decode()
    assert admin.post(url(subscription), {**scheduled, "confirm": "1"}).status_code == 302
    subscription.refresh_from_db()
    assert subscription.scheduled_change.quantity == 2
    assert not Invoice.objects.exists()


def test_bad_input_and_refused_changes_show_the_reason_and_change_nothing(plans, clock):  # noqa: F811
    subscription, new = plans
    admin = staff_client("alice", "billing_admin")
    zero = admin.post(url(subscription), body(new, quantity="0", confirm="1"))
    assert zero.status_code == 200 and "quantity" in zero.content.decode()
    weekly_mode = body(new, proration_billing_mode="prorated_immediately_keep_cycle")
    from tests.products.factories import make_product

    weekly = make_product([], fixed_price=700, interval="Week", now=CHANGE, name="Weekly")
    refused = admin.post(url(subscription), {**weekly_mode, "product": weekly.pk, "confirm": "1"})
    assert refused.status_code == 200 and "keeps the billing cycle" in refused.content.decode()
    assert not Invoice.objects.exists()
    assert Subscription.objects.get(pk=subscription.pk).product_id == subscription.product_id


def test_a_viewer_cannot_open_or_post_the_change_plan_page(plans, clock):  # noqa: F811
    subscription, new = plans
    viewer = staff_client("victor", "viewer")
    assert viewer.get(url(subscription)).status_code == 403
    assert viewer.post(url(subscription), body(new, confirm="1")).status_code == 403
    assert not Invoice.objects.exists()
    assert not AuditEntry.objects.filter(action="plan_changed").exists()
