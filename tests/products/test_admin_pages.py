"""Staff pages for customers, products, subscriptions and invoices, and who may see them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import User

from products.billing import run_billing_cycle
from tests.products.factories import make_meter, make_product, send_usage, subscribe

START = datetime(2026, 2, 2, tzinfo=UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice():
    calls = make_meter("API calls", "api.call", now=START)
    product = make_product([(calls, "0.5", 2)], now=START, fixed_price=1999, interval="Week")
    subscription = subscribe(product, now=START)
    send_usage(subscription, "api.call", [{}] * 9, start=START, prefix="x")
    [issued] = run_billing_cycle(now=START + timedelta(weeks=1))
    return issued


def test_the_printable_invoice_shows_every_line_and_the_total(admin_client, invoice):
    page = admin_client.get(f"/admin/products/invoice/{invoice.pk}/print/")
    assert page.status_code == 200
    html = page.content.decode()
    # 19.99 fixed + (9 - 2) x 0.5 cent = 3.5 -> 4 cents
    assert invoice.total_minor == 1999 + 4
    assert '<td id="invoice-total">20.03 USD</td>' in html
    assert "API calls (units)" in html
    assert invoice.customer.email in html


def test_staff_pages_render_for_every_billing_model(admin_client, invoice):
    for url in (
        "/admin/products/customer/",
        f"/admin/products/customer/{quote(invoice.customer_id)}/change/",
        "/admin/products/product/",
        f"/admin/products/product/{quote(invoice.subscription.product_id)}/change/",
        "/admin/products/subscription/",
        f"/admin/products/subscription/{quote(invoice.subscription_id)}/change/",
        "/admin/products/invoice/",
        f"/admin/products/invoice/{quote(invoice.pk)}/change/",
        "/admin/events/event/",
        "/admin/credits/creditbalance/",
        "/admin/credits/ledgerentry/",
    ):
        assert admin_client.get(url).status_code == 200, url


def test_issued_invoices_cannot_be_changed_or_deleted_in_the_admin(admin_client, invoice):
    response = admin_client.post(
        f"/admin/products/invoice/{quote(invoice.pk)}/change/", {"total_minor": 1}
    )
    assert response.status_code == 403
    assert admin_client.post(f"/admin/products/invoice/{invoice.pk}/delete/").status_code == 403
    invoice.refresh_from_db()
    assert invoice.total_minor == 1999 + 4


def test_visitors_and_non_staff_users_do_not_see_invoices(client, invoice):
    url = f"/admin/products/invoice/{invoice.pk}/print/"
    assert client.get(url).status_code == 302  # to the login page
    User.objects.create_user("someone", password="pw-123456")
    client.login(username="someone", password="pw-123456")
    response = client.get(url)
    assert response.status_code == 302
    assert invoice.invoice_id not in response.content.decode()


def test_the_customer_page_charts_daily_usage_per_meter(admin_client):
    now = datetime.now(UTC)
    calls = make_meter("API calls", "api.call", now=now - timedelta(days=40))
    product = make_product([(calls, "1", 0)], now=now - timedelta(days=40), interval="Year")
    subscription = subscribe(product, now=now - timedelta(days=40))
    day = (now - timedelta(days=3)).replace(hour=12, minute=0, second=0, microsecond=0)
    send_usage(subscription, "api.call", [{}] * 7, start=day, prefix="d")
    send_usage(subscription, "api.call", [{}] * 2, start=day + timedelta(days=1), prefix="e")

    page = admin_client.get(f"/admin/products/customer/{quote(subscription.customer_id)}/change/")
    charts = page.context["usage_charts"]
    [chart] = charts
    by_day = dict(zip(chart["x"], chart["y"], strict=True))
    assert by_day[day.replace(hour=0).isoformat()] == "7"
    assert by_day[(day + timedelta(days=1)).replace(hour=0).isoformat()] == "2"
    assert sum(int(value) for value in chart["y"]) == 9
    assert 'id="customer-usage-1"' in page.content.decode()
