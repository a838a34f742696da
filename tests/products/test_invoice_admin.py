"""The invoice lifecycle in the admin: actions for billing admins only, the chain of
corrections and the upcoming invoice on the customer and subscription pages, the PDF."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone

from products import billing, invoices
from products.models import Invoice, InvoiceStatus
from tests.products.factories import make_meter, make_product, send_usage, subscribe
from tests.roles.helpers import staff_client

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/products/invoice/"


def issued(calls: int = 5) -> Invoice:
    start = (timezone.now() - timedelta(days=10)).replace(microsecond=0)
    meter = make_meter("Calls", "api.call", now=start)
    product = make_product([(meter, "2", 3)], now=start, fixed_price=100, interval="Week")
    subscription = subscribe(product, now=start)
    send_usage(subscription, "api.call", [{}] * calls, start=start, prefix="adm")
    [invoice] = billing.run_billing_cycle(now=start + timedelta(days=7))
    return invoice


def act(client, action: str, invoice: Invoice):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [invoice.pk]})


def test_a_billing_admin_voids_and_reissues_from_the_changelist():
    invoice = issued()
    client = staff_client("ada", "billing_admin")
    act(client, "void_invoices", invoice)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOID
    assert invoice.void_reason == "Voided in the admin by ada"
    act(client, "reissue_invoices", invoice)
    replacement = Invoice.objects.get(replaces=invoice)
    assert replacement.status == InvoiceStatus.ISSUED
    assert replacement.total_minor == 100 + (5 - 3) * 2
    act(client, "mark_invoices_paid", replacement)
    replacement.refresh_from_db()
    assert replacement.status == InvoiceStatus.PAID
    # The customer page shows the chain: the reissue names the invoice it replaces.
    page = client.get(reverse("admin:products_customer_change", args=[quote(invoice.customer_id)]))
    assert page.status_code == 200
    assert replacement.number in page.content.decode()
    assert invoice.number in page.content.decode()


def test_a_refused_transition_is_reported_and_changes_nothing():
    invoice = issued()
    invoices.mark_paid(invoice.pk, now=timezone.now())
    client = staff_client("ada", "billing_admin")
    answer = act(client, "void_invoices", invoice)
    assert answer.status_code == 302
    messages = [str(m) for m in client.get(CHANGELIST).context["messages"]]
    assert any("credit note" in m for m in messages)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_viewers_have_no_lifecycle_actions():
    invoice = issued()
    viewer = staff_client("vic", "viewer")
    page = viewer.get(CHANGELIST)
    assert page.status_code == 200
    assert "void_invoices" not in page.content.decode()
    act(viewer, "void_invoices", invoice)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.ISSUED


def test_the_pages_show_the_upcoming_invoice():
    invoice = issued(calls=5)
    subscription = invoice.subscription
    client = staff_client("ada", "billing_admin")
    send_usage(
        subscription, "api.call", [{}] * 4, start=subscription.current_period_start, prefix="next"
    )
    # 100 fee + (4 - 3) * 2 cents: 1.02 USD, computed by hand.
    for url in (
        reverse("admin:products_customer_change", args=[quote(subscription.customer_id)]),
        reverse("admin:products_subscription_change", args=[quote(subscription.pk)]),
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        assert "1.02 USD" in page.content.decode(), url


def test_the_invoice_downloads_as_a_pdf():
    invoice = issued()
    client = staff_client("vic", "viewer")
    answer = client.get(reverse("admin:products_invoice_pdf", args=[invoice.pk]))
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/pdf"
    assert answer.content.startswith(b"%PDF-")
    assert invoice.number.encode() in answer.content  # the title, in the document's metadata
    assert f'filename="{invoice.number}.pdf"' in answer["Content-Disposition"]
    assert staff_client("nobody").get(
        reverse("admin:products_invoice_pdf", args=[invoice.pk])
    ).status_code in (302, 403)
