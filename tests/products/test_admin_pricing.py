"""The admin's prices page for a product: tiers, packages and limits of each money meter and the
cycle's limits, saved through the API's rules (audited, refusals naming the field, nothing
stored), and the live example it asks for as the user types, priced by the invoice's rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote

from audit.models import AuditEntry
from products import services
from products.models import Product, ProductMeter
from tests.credits.factories import credit_product, make_entitlement
from tests.products.factories import make_meter
from tests.roles.helpers import staff_client

NOW = datetime(2026, 4, 1, tzinfo=UTC)
EXAMPLE_URL = "/admin/products/product/pricing-example/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def product() -> Product:
    calls = make_meter("Calls", "api.call", now=NOW)
    return services.create_product(
        name="Calls plan",
        now=NOW,
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 900,
            "payment_frequency_interval": "Month",
            "meters": [{"meter_id": calls.id, "price_per_unit": "0.5", "free_threshold": 100}],
        },
    )


def pricing_url(product: Product) -> str:
    return f"/admin/products/product/{quote(product.pk)}/pricing/"


def post_prices(client, product, **fields):
    data = {
        "meter0-price_per_unit": "0.5",
        "meter0-tier_mode": "",
        "meter0-tiers": "",
        "meter0-package_size": "",
        "meter0-package_rounding": "",
        "meter0-minimum_amount": "",
        "meter0-maximum_amount": "",
        "cycle-minimum_amount": "",
        "cycle-maximum_amount": "",
        **fields,
    }
    return client.post(pricing_url(product), data)


def test_the_page_edits_tiers_and_the_cycle_cap_through_the_services(product):
    client = staff_client("ada", "billing_admin")
    change = client.get(f"/admin/products/product/{quote(product.pk)}/change/")
    assert (
        f'href="{pricing_url(product)}">Edit tiers, packages and limits' in change.content.decode()
    )
    page = client.get(pricing_url(product))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'src="/static/dashboard/pricing_form.js"' in html
    assert "<script>" not in html  # the CSP allows no inline script
    assert 'name="meter0-tiers"' in html and 'name="cycle-maximum_amount"' in html

    response = post_prices(
        client,
        product,
        **{
            "meter0-price_per_unit": "0",
            "meter0-tier_mode": "graduated",
            "meter0-tiers": "10000 0.1 0\n* 0.05",
            "meter0-maximum_amount": "1500",
            "cycle-maximum_amount": "5000",
        },
    )
    assert response.status_code == 302, response.content.decode()
    product.refresh_from_db()
    assert product.maximum_amount == 5000 and product.minimum_amount is None
    pm = ProductMeter.objects.get(product=product)
    assert (pm.tier_mode, pm.maximum_amount, pm.free_threshold) == ("graduated", 1500, 100)
    assert pm.tiers == [
        {"up_to": "10000", "unit_price": "0.1", "flat_fee": 0},
        {"up_to": None, "unit_price": "0.05", "flat_fee": 0},
    ]
    entry = AuditEntry.objects.filter(object_id=product.pk).latest("id")
    assert entry.after["maximum_amount"] == 5000
    assert entry.after["meters"][0]["tier_mode"] == "graduated"

    # Shown back as saved; then a package replaces the tiers.
    html = client.get(pricing_url(product)).content.decode()
    assert "10000 0.1 0\n* 0.05 0" in html
    response = post_prices(
        client,
        product,
        **{
            "meter0-price_per_unit": "200",
            "meter0-package_size": "1000",
            "meter0-package_rounding": "down",
        },  # fmt: skip
    )
    assert response.status_code == 302
    pm = ProductMeter.objects.get(product=product)
    assert (pm.tiers, pm.package_size, pm.package_rounding) == (None, 1000, "down")
    assert Product.objects.get().maximum_amount is None  # the field was emptied


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {
                "meter0-price_per_unit": "0",
                "meter0-tier_mode": "volume",
                "meter0-tiers": "10000 0.1\n5000 0.05\n* 0.01",
            },  # fmt: skip
            "tiers[1].up_to: Must be greater than the tier before (10000).",
        ),
        ({"meter0-maximum_amount": "-1"}, "Must be a whole amount in minor units"),
        (
            {"cycle-minimum_amount": "600", "cycle-maximum_amount": "500"},
            "Must not be greater than maximum_amount.",
        ),
    ],
)
def test_a_refused_price_shows_the_error_and_changes_nothing(product, fields, message):
    client = staff_client("ada", "billing_admin")
    before = list(AuditEntry.objects.values_list("id", flat=True))
    response = post_prices(client, product, **fields)
    assert response.status_code == 200
    assert message in response.content.decode()
    pm = ProductMeter.objects.get(product=product)
    assert (pm.price_per_unit, pm.tiers, pm.maximum_amount) == (Decimal("0.5"), None, None)
    assert Product.objects.get().minimum_amount is None
    assert list(AuditEntry.objects.values_list("id", flat=True)) == before


def test_a_viewer_may_not_edit_prices_or_ask_for_examples(product):
    viewer = staff_client("vic", "viewer")
    assert viewer.get(pricing_url(product)).status_code == 403
    assert post_prices(viewer, product, **{"cycle-maximum_amount": "1"}).status_code == 403
    assert viewer.post(EXAMPLE_URL, "{}", content_type="application/json").status_code == 403
    assert Product.objects.get().maximum_amount is None


def example(client, pricing: dict, **body) -> tuple[int, dict]:
    payload = {"pricing": pricing, "free_threshold": 0, "consumed": "12500", **body}
    response = client.post(EXAMPLE_URL, json.dumps(payload), content_type="application/json")
    return response.status_code, response.json()


def test_the_live_example_by_hand():
    client = staff_client("ada", "billing_admin")
    graduated = {"price_per_unit": "0", "tier_mode": "graduated", "tiers": "10000 0.1\n* 0.05"}
    # 12,500 - 100 free = 12,400: 10,000 x 0.1 + 2,400 x 0.05 = 1,000 + 120 = 1,120.
    status, shown = example(client, graduated, free_threshold=100, currency="USD")
    assert status == 200, shown
    assert shown["text"] == "12,500 units (12,400 after 100 free) cost 11.20 USD"
    assert [t["amount"] for t in shown["tiers"]] == ["1000.0", "120.00"]
    # Volume: all 12,500 at 0.05 = 625; capped at 600.
    volume = {**graduated, "tier_mode": "volume", "maximum_amount": "600"}
    status, shown = example(client, volume)
    assert shown["amount_minor"] == 600 and shown["limit_applied"] == "maximum_amount"
    assert shown["text"] == (
        "12,500 units (12,500 after 0 free) cost 6.00 USD (maximum_amount applied; 6.25 USD)"
    )
    # $2 per started 1,000: 13 packages = 2,600; per completed one: 12 = 2,400.
    package = {"price_per_unit": "200", "package_size": "1000"}
    assert example(client, package)[1]["amount_minor"] == 2600
    assert example(client, {**package, "package_rounding": "down"})[1]["amount_minor"] == 2400


def test_the_live_example_names_what_is_wrong():
    client = staff_client("ada", "billing_admin")
    status, shown = example(
        client, {"price_per_unit": "0", "tier_mode": "graduated", "tiers": "10000 0.1\n9000 0.05"}
    )
    assert status == 422
    assert [e["field"] for e in shown["errors"]] == ["tiers[1].up_to"]
    status, shown = example(client, {"price_per_unit": "abc"})
    assert (status, shown["errors"][0]["field"]) == (422, "price_per_unit")
    status, shown = example(client, {"price_per_unit": "1"}, consumed="lots")
    assert (status, shown["errors"][0]["field"]) == (422, "consumed")


def test_a_meter_billed_in_credits_is_shown_not_edited():
    entitlement = make_entitlement(now=NOW)
    meter = make_meter("Tokens", "llm.tokens", now=NOW)
    product = credit_product(entitlement, meter, credits_amount=100, now=NOW)
    client = staff_client("ada", "billing_admin")
    html = client.get(pricing_url(product)).content.decode()
    assert "Billed in credits: tiers, packages and limits do not apply." in html
    response = client.post(
        pricing_url(product), {"cycle-minimum_amount": "100", "cycle-maximum_amount": ""}
    )
    assert response.status_code == 302, response.content.decode()
    assert Product.objects.get().minimum_amount == 100
    assert ProductMeter.objects.get().credit_entitlement_id == entitlement.pk
