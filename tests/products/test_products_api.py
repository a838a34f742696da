"""Products API: usage-based prices with meters, validation naming the field, archive."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meters.services import archive_meter
from products.models import Product, ProductMeter
from tests.products.factories import make_meter

NOW = datetime(2026, 5, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def price(**overrides) -> dict:
    body = {
        "type": "usage_based_price",
        "currency": "USD",
        "fixed_price": 500,
        "payment_frequency_count": 1,
        "payment_frequency_interval": "Month",
        "subscription_period_count": 1,
        "subscription_period_interval": "Year",
        "meters": [],
    }
    body.update(overrides)
    return body


def create(api, **price_overrides):
    return api.post(
        "/api/products",
        {"name": "Plan", "tax_category": "saas", "price": price(**price_overrides)},
        format="json",
    )


@pytest.fixture
def meter():
    return make_meter("Calls", "api.call", now=NOW)


def test_create_fills_meter_name_and_unit_and_keeps_decimal_prices(api, meter):
    response = create(
        api, meters=[{"meter_id": meter.id, "price_per_unit": "0.000123", "free_threshold": 10}]
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["product_id"].startswith("pdt_")
    [line] = body["price"]["meters"]
    assert line == {
        "meter_id": meter.id,
        "name": "Calls",
        "description": None,
        "measurement_unit": "units",
        "price_per_unit": "0.000123",
        "free_threshold": 10,
        "credit_entitlement_id": None,
        "meter_units_per_credit": None,
    }
    assert api.get(f"/api/products/{body['product_id']}").json()["price"] == body["price"]


INVALID = {
    "recurring price": ({"type": "recurring_price"}, "price.type", None),
    "unknown currency": ({"currency": "XYZ"}, "price.currency", None),
    "negative fixed price": ({"fixed_price": -1}, "price.fixed_price", None),
    "float fixed price": ({"fixed_price": 1.5}, "price.fixed_price", None),
    "bad interval": (
        {"payment_frequency_interval": "month"},
        "price.payment_frequency_interval",
        None,
    ),
    "zero interval count": ({"payment_frequency_count": 0}, "price.payment_frequency_count", None),
    "price not a number": (
        {"meters": [{"meter_id": "M", "price_per_unit": "abc"}]},
        "price.meters[0].price_per_unit",
        None,
    ),
    "zero price": (
        {"meters": [{"meter_id": "M", "price_per_unit": "0"}]},
        "price.meters[0].price_per_unit",
        None,
    ),
    "13 decimals": (
        {"meters": [{"meter_id": "M", "price_per_unit": "0.0000000000001"}]},
        "price.meters[0].price_per_unit",
        None,
    ),
    "negative free threshold": (
        {"meters": [{"meter_id": "M", "price_per_unit": "1", "free_threshold": -5}]},
        "price.meters[0].free_threshold",
        None,
    ),
    "duplicate meters": (
        {"meters": [{"meter_id": "M", "price_per_unit": "1"}] * 2},
        "price.meters[1].meter_id",
        "DUPLICATE_METER_IDS_IN_REQUEST",
    ),
    "unknown meter": (
        {"meters": [{"meter_id": "mtr_nope", "price_per_unit": "1"}]},
        "price.meters[0].meter_id",
        "MISSING_METER_IDS",
    ),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_invalid_prices_are_refused_naming_the_field(api, meter, case):
    overrides, field, code = INVALID[case]
    for entry in overrides.get("meters", []):
        if entry["meter_id"] == "M":
            entry["meter_id"] = meter.id
    response = create(api, **overrides)
    assert response.status_code == 422, response.content
    body = response.json()
    assert [e["field"] for e in body["errors"]] == [field]
    if code:
        assert body["code"] == code
    assert Product.objects.count() == 0


def test_an_archived_meter_cannot_be_attached(api, meter):
    archive_meter(meter, now=NOW)
    response = create(api, meters=[{"meter_id": meter.id, "price_per_unit": "1"}])
    assert response.status_code == 422
    assert response.json()["code"] == "METER_IS_DELETED"
    assert "archived" in response.json()["message"]


def test_at_most_ten_meters(api):
    meters = [make_meter(f"m{i}", f"e{i}", now=NOW) for i in range(11)]
    entries = [{"meter_id": m.id, "price_per_unit": "1"} for m in meters]
    assert create(api, meters=entries).status_code == 422
    assert create(api, meters=entries[:10]).status_code == 200


def test_patch_replaces_the_price_and_delete_archives(api, meter):
    product_id = create(api, meters=[{"meter_id": meter.id, "price_per_unit": "1"}]).json()[
        "product_id"
    ]
    other = make_meter("Tokens", "tokens", "sum", "n", now=NOW)
    response = api.patch(
        f"/api/products/{product_id}",
        {"name": "Plan B", "price": price(meters=[{"meter_id": other.id, "price_per_unit": "2"}])},
        format="json",
    )
    assert response.status_code == 200
    assert list(ProductMeter.objects.values_list("meter_id", flat=True)) == [other.id]
    assert Product.objects.get().name == "Plan B"

    assert api.delete(f"/api/products/{product_id}").status_code == 200  # Dodo: 200, no body
    gone = api.delete(f"/api/products/{product_id}")
    assert (gone.status_code, gone.json()["code"]) == (410, "GONE")  # Dodo: "Product is deleted"
    assert api.get("/api/products").json()["items"] == []
    listed = api.get("/api/products?archived=true").json()["items"]
    assert [p["product_id"] for p in listed] == [product_id]
    assert listed[0]["price_detail"]["meters"][0]["meter_id"] == other.id
    assert api.post(f"/api/products/{product_id}/unarchive").status_code == 200
    assert len(api.get("/api/products").json()["items"]) == 1


def test_a_bad_patch_changes_nothing(api, meter):
    product_id = create(api, meters=[{"meter_id": meter.id, "price_per_unit": "1"}]).json()[
        "product_id"
    ]
    response = api.patch(
        f"/api/products/{product_id}",
        {"name": "Renamed", "price": price(currency="???")},
        format="json",
    )
    assert response.status_code == 422
    product = Product.objects.get()
    assert (product.name, product.currency) == ("Plan", "USD")
    assert ProductMeter.objects.count() == 1
