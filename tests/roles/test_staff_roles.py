"""Staff roles: a Viewer reads every dashboard page and changes nothing; a Billing admin also
changes meters, prices and credits; staff without a role see nothing; superusers do everything.
Users, groups and API keys stay with superusers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.urls import reverse

from credits.models import CreditBalance, CreditEntitlement
from meters.models import Meter
from products.models import Customer, Product, Subscription
from tests.dashboard.test_meter_form import form_data as meter_form
from tests.roles.helpers import admin_form_data, make_world, staff_client

pytestmark = pytest.mark.django_db

PREVIEW = '{"event_name": "api.call", "aggregation": {"type": "count"}, "filter": null}'


@pytest.fixture
def world():
    return make_world()


def read_pages(world) -> list[str]:
    """Every staff page that only shows data: the custom views and the models' admin pages."""
    meter, customer_id = world.meter.pk, world.subscription.customer_id
    return [
        reverse("staff-dashboard"),
        reverse("staff-plotly-js"),
        reverse("admin:meters_meter_changelist"),
        reverse("admin:meters_meter_change", args=[quote(meter)]),  # analytics for read-only users
        reverse("admin:meters_meter_analytics", args=[quote(meter)]),
        reverse("admin:meters_meter_events_csv", args=[quote(meter)]),
        reverse("admin:meters_meter_customers_csv", args=[quote(meter)]),
        reverse("admin:events_event_changelist"),
        reverse("admin:products_customer_changelist"),
        reverse("admin:products_customer_change", args=[quote(customer_id)]),
        reverse("admin:products_product_changelist"),
        reverse("admin:products_product_change", args=[quote(world.product.pk)]),
        reverse("admin:products_subscription_changelist"),
        reverse("admin:products_subscription_change", args=[quote(world.subscription.pk)]),
        reverse("admin:products_invoice_changelist"),
        reverse("admin:products_invoice_change", args=[quote(world.invoice.pk)]),
        reverse("admin:products_invoice_print", args=[world.invoice.pk]),
        reverse("admin:credits_creditentitlement_changelist"),
        reverse("admin:credits_creditentitlement_change", args=[quote(world.entitlement.pk)]),
        reverse("admin:credits_creditbalance_changelist"),
        reverse("admin:credits_creditbalance_change", args=[quote(world.balance.pk)]),
        reverse("admin:credits_ledgerentry_changelist"),
        reverse("admin:credits_creditgrant_changelist"),
    ]


def change_requests(world) -> list[tuple[str, str, object]]:
    """(method, url, body) of every form and action that changes something."""
    meter = world.meter.pk
    adjust = reverse("admin:credits_creditbalance_adjust", args=[world.balance.pk])
    return [
        ("get", reverse("admin:meters_meter_add"), None),
        ("post", reverse("admin:meters_meter_add"), meter_form()),
        ("post", reverse("admin:meters_meter_change", args=[quote(meter)]), meter_form()),
        ("json", reverse("admin:meters_meter_preview"), PREVIEW),
        ("get", reverse("admin:products_customer_add"), None),
        ("post", reverse("admin:products_customer_add"), {"email": "x@example.com"}),
        (
            "post",
            reverse("admin:products_customer_change", args=[quote(world.subscription.customer_id)]),
            {"name": "Renamed"},
        ),
        (
            "post",
            reverse("admin:products_product_change", args=[quote(world.product.pk)]),
            {"name": "X"},
        ),
        (
            "post",
            reverse("admin:products_subscription_change", args=[quote(world.subscription.pk)]),
            {"cancel_at_next_billing_date": "on"},
        ),
        ("get", reverse("admin:credits_creditentitlement_add"), None),
        ("post", reverse("admin:credits_creditentitlement_add"), {"name": "More", "unit": "c"}),
        (
            "post",
            reverse("admin:credits_creditentitlement_change", args=[quote(world.entitlement.pk)]),
            {"name": "Renamed", "unit": "c"},
        ),
        ("get", adjust, None),
        ("post", adjust, {"entry_type": "credit", "amount": "5", "reason": "goodwill"}),
    ]


def send(client, method: str, url: str, body: object = None):
    if method == "json":
        return client.post(url, body, content_type="application/json")
    if method == "post":
        return client.post(url, body)
    return client.get(url)


def state(world) -> tuple:
    """Everything a change request above could change."""
    return (
        list(Meter.objects.values_list("name", "event_name", "aggregation_type", "archived_at")),
        list(Customer.objects.values_list("customer_id", "name")),
        list(Product.objects.values_list("name", "archived_at")),
        list(Subscription.objects.values_list("cancel_at_next_billing_date", flat=True)),
        list(CreditEntitlement.objects.values_list("name", "unit")),
        list(CreditBalance.objects.values_list("balance", flat=True)),
    )


# --- Viewer ------------------------------------------------------------------------------------


def test_a_viewer_opens_every_dashboard_page(world):
    viewer = staff_client("vera", "viewer")
    for url in read_pages(world):
        assert viewer.get(url).status_code == 200, url


def test_a_viewer_is_refused_every_form_and_change(world):
    viewer = staff_client("vera", "viewer")
    before = state(world)
    for method, url, body in change_requests(world):
        assert send(viewer, method, url, body).status_code == 403, (method, url)
    assert state(world) == before


def test_a_viewer_cannot_archive_meters_from_the_list(world):
    viewer = staff_client("vera", "viewer")
    changelist = viewer.get(reverse("admin:meters_meter_changelist"))
    assert "archive_meters" not in changelist.content.decode()
    response = viewer.post(
        reverse("admin:meters_meter_changelist"),
        {"action": "archive_meters", "_selected_action": [world.meter.pk], "index": 0},
    )
    assert response.status_code == 403  # refused out loud, not the list shown again
    world.meter.refresh_from_db()
    assert world.meter.archived_at is None


def test_a_viewer_posting_any_admin_action_is_refused(world):
    viewer = staff_client("vera", "viewer")
    for url, action, pk in [
        (reverse("admin:meters_meter_changelist"), "unarchive_meters", world.meter.pk),
        (
            reverse("admin:products_customer_changelist"),
            "delete_selected",
            world.subscription.customer_id,
        ),
        (
            reverse("admin:credits_creditentitlement_changelist"),
            "delete_selected",
            world.entitlement.pk,
        ),
    ]:
        response = viewer.post(url, {"action": action, "_selected_action": [pk], "index": 0})
        assert response.status_code == 403, (url, action)
    assert Customer.objects.filter(pk=world.subscription.customer_id).exists()
    # A billing admin still runs them (the action form answers with the list or a confirmation).
    admin = staff_client("bill", "billing_admin")
    response = admin.post(
        reverse("admin:meters_meter_changelist"),
        {"action": "archive_meters", "_selected_action": [world.meter.pk], "index": 0},
    )
    assert response.status_code == 302
    world.meter.refresh_from_db()
    assert world.meter.archived_at is not None


def test_redelivering_a_webhook_is_refused_to_a_viewer_whatever_the_id(world):
    from tests.webhooks.factories import make_endpoint
    from webhooks.models import Delivery, WebhookEvent

    event = WebhookEvent.objects.create(event_type="invoice.created", body="{}")
    delivery = Delivery.objects.create(
        event=event, endpoint=make_endpoint("http://127.0.0.1:9/"), status="failed"
    )
    viewer = staff_client("vera", "viewer")
    for delivery_id in (delivery.pk, delivery.pk + 1000):  # existing or not: the same answer
        url = reverse("admin:webhooks_delivery_redeliver", args=[delivery_id])
        assert viewer.post(url).status_code == 403
    assert Delivery.objects.count() == 1


def test_the_redeliver_action_is_refused_without_the_change_permission(world):
    """Seeing deliveries (view_delivery) is not redelivering them: the action answers 403."""
    from django.contrib.auth.models import Permission

    from tests.webhooks.factories import make_endpoint
    from webhooks.models import Delivery, WebhookEvent

    event = WebhookEvent.objects.create(event_type="invoice.created", body="{}")
    delivery = Delivery.objects.create(
        event=event, endpoint=make_endpoint("http://127.0.0.1:9/"), status="failed"
    )
    client = staff_client("wendy")
    user = get_user_model().objects.get(username="wendy")
    user.user_permissions.add(Permission.objects.get(codename="view_delivery"))
    answer = client.post(
        reverse("admin:webhooks_delivery_changelist"),
        {"action": "redeliver_selected", "_selected_action": [delivery.pk]},
    )
    assert answer.status_code == 403
    assert Delivery.objects.count() == 1


def test_a_viewer_sees_no_add_change_or_adjust_buttons(world):
    viewer = staff_client("vera", "viewer")
    pages = {
        "meters": viewer.get(reverse("admin:meters_meter_changelist")),
        "analytics": viewer.get(
            reverse("admin:meters_meter_analytics", args=[quote(world.meter.pk)])
        ),
        "home": viewer.get(reverse("staff-dashboard")),
        "balances": viewer.get(reverse("admin:credits_creditbalance_changelist")),
        "balance": viewer.get(
            reverse("admin:credits_creditbalance_change", args=[quote(world.balance.pk)])
        ),
        "customers": viewer.get(reverse("admin:products_customer_changelist")),
        "product": viewer.get(
            reverse("admin:products_product_change", args=[quote(world.product.pk)])
        ),
    }
    adjust_url = reverse("admin:credits_creditbalance_adjust", args=[world.balance.pk])
    for name, page in pages.items():
        html = page.content.decode()
        assert reverse("admin:meters_meter_add") not in html, name
        assert reverse("admin:products_customer_add") not in html, name
        assert adjust_url not in html, name
        assert 'name="_save"' not in html, name
    assert "Edit meter" not in pages["analytics"].content.decode()


# --- Billing admin -----------------------------------------------------------------------------


def test_a_billing_admin_opens_every_dashboard_page(world):
    admin = staff_client("bill", "billing_admin")
    for url in read_pages(world):
        assert admin.get(url).status_code == 200, url


def test_a_billing_admin_creates_and_edits_meters(world):
    admin = staff_client("bill", "billing_admin")
    assert admin.get(reverse("admin:meters_meter_add")).status_code == 200
    assert admin.post(reverse("admin:meters_meter_add"), meter_form()).status_code == 302
    created = Meter.objects.get(name="Tokens")
    edit = reverse("admin:meters_meter_change", args=[quote(created.pk)])
    assert admin.post(edit, meter_form(name="Tokens v2")).status_code == 302
    created.refresh_from_db()
    assert created.name == "Tokens v2"
    preview = admin.post(
        reverse("admin:meters_meter_preview"), PREVIEW, content_type="application/json"
    )
    assert preview.status_code == 200


def test_a_billing_admin_adjusts_credits(world):
    admin = staff_client("bill", "billing_admin")
    url = reverse("admin:credits_creditbalance_adjust", args=[world.balance.pk])
    before = world.balance.balance
    assert admin.get(url).status_code == 200
    response = admin.post(url, {"entry_type": "credit", "amount": "5.5", "reason": "goodwill"})
    assert response.status_code == 302
    world.balance.refresh_from_db()
    assert world.balance.balance == before + Decimal("5.5")


def test_a_billing_admin_sees_the_adjust_buttons(world):
    admin = staff_client("bill", "billing_admin")
    adjust_url = reverse("admin:credits_creditbalance_adjust", args=[world.balance.pk])
    balance = reverse("admin:credits_creditbalance_change", args=[quote(world.balance.pk)])
    assert adjust_url in admin.get(balance).content.decode()
    assert (
        adjust_url in admin.get(reverse("admin:credits_creditbalance_changelist")).content.decode()
    )


def test_a_billing_admin_changes_customers_products_and_entitlements(world):
    admin = staff_client("bill", "billing_admin")
    customer = reverse(
        "admin:products_customer_change", args=[quote(world.subscription.customer_id)]
    )
    product = reverse("admin:products_product_change", args=[quote(world.product.pk)])
    entitlement = reverse(
        "admin:credits_creditentitlement_change", args=[quote(world.entitlement.pk)]
    )
    for url, changes in (
        (customer, {"name": "Ada Lovelace"}),
        (product, {"name": "Credits plan v2"}),
        (entitlement, {"name": "Tokens"}),
    ):
        response = admin.post(url, admin_form_data(admin, url, **changes))
        assert response.status_code == 302, (
            url,
            response.context and response.context.get("errors"),
        )
    assert Customer.objects.get().name == "Ada Lovelace"
    assert Product.objects.get().name == "Credits plan v2"
    assert CreditEntitlement.objects.get().name == "Tokens"


def test_a_billing_admin_does_not_manage_users_groups_or_api_keys(world):
    admin = staff_client("bill", "billing_admin")
    for name in ("auth_user", "auth_group", "billing_site_apikey"):
        assert admin.get(reverse(f"admin:{name}_changelist")).status_code == 403, name
        assert admin.get(reverse(f"admin:{name}_add")).status_code == 403, name


# --- Staff without a role, and superusers -------------------------------------------------------


def test_staff_without_a_role_see_nothing(world):
    nobody = staff_client("sam")
    before = state(world)
    for url in read_pages(world):
        response = nobody.get(url)
        assert response.status_code in (302, 403), url
        assert world.subscription.customer_id.encode() not in b"".join(
            response.streaming_content if response.streaming else [response.content]
        )
    for method, url, body in change_requests(world):
        assert send(nobody, method, url, body).status_code in (302, 403), (method, url)
    assert state(world) == before
    index = nobody.get(reverse("admin:index")).content.decode()
    assert reverse("admin:meters_meter_changelist") not in index
    assert reverse("staff-dashboard") not in index


def test_superusers_reach_everything(world):
    root = staff_client("root", superuser=True)
    for url in [
        *read_pages(world),
        reverse("admin:auth_user_changelist"),
        reverse("admin:billing_site_apikey_changelist"),
        reverse("admin:audit_auditentry_changelist"),
    ]:
        assert root.get(url).status_code == 200, url
    assert root.post(reverse("admin:meters_meter_add"), meter_form()).status_code == 302
    url = reverse("admin:credits_creditbalance_adjust", args=[world.balance.pk])
    assert root.post(url, {"entry_type": "debit", "amount": "1", "reason": "x"}).status_code == 302
