"""The products API with tiers, packages and limits (extensions of Dodo's meter price): shown
back exactly, invalid ones refused naming the field with nothing stored, and a Dodo-only price
answering exactly as before."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import AuditEntry
from products.models import Product, ProductMeter
from tests.credits.factories import make_entitlement
from tests.products.factories import make_meter
from tests.products.test_products_api import create

NOW = datetime(2026, 5, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db
TIERS = [
    {"up_to": "10000", "unit_price": "0.1", "flat_fee": 0},
    {"up_to": None, "unit_price": "0.05"},
]


@pytest.fixture
def meter():
    return make_meter("Calls", "api.call", now=NOW)


def tiered(meter, **fields) -> dict:
    return {"meter_id": meter.id, "tier_mode": "graduated", "tiers": copy.deepcopy(TIERS), **fields}


def test_tiers_and_limits_are_stored_and_shown_back(api, meter):
    response = create(api, meters=[tiered(meter, maximum_amount=5000, minimum_amount=100)])
    assert response.status_code == 200, response.content
    [shown] = response.json()["price"]["meters"]
    assert shown["price_per_unit"] == "0"
    assert shown["tier_mode"] == "graduated"
    assert shown["tiers"] == [
        {"up_to": "10000", "unit_price": "0.1", "flat_fee": 0},
        {"up_to": None, "unit_price": "0.05", "flat_fee": 0},
    ]
    assert (shown["minimum_amount"], shown["maximum_amount"]) == (100, 5000)
    assert "package_size" not in shown
    product_id = response.json()["product_id"]
    assert api.get(f"/api/products/{product_id}").json()["price"] == response.json()["price"]
    stored = ProductMeter.objects.get()
    assert (stored.tier_mode, stored.maximum_amount) == ("graduated", 5000)
    [entry] = AuditEntry.objects.filter(object_id=product_id)
    assert entry.after["meters"][0]["tiers"] == shown["tiers"]


def test_a_package_price_is_shown_with_its_rounding(api, meter):
    entry = {"meter_id": meter.id, "price_per_unit": "200", "package_size": "1000"}
    response = create(api, meters=[entry])
    assert response.status_code == 200, response.content
    [shown] = response.json()["price"]["meters"]
    assert (shown["price_per_unit"], shown["package_size"], shown["package_rounding"]) == (
        "200",
        "1000",
        "up",
    )
    response = create(api, meters=[{**entry, "package_rounding": "down"}])
    assert response.json()["price"]["meters"][0]["package_rounding"] == "down"


def test_tiers_take_a_zero_price_per_unit(api, meter):
    response = create(api, meters=[tiered(meter, price_per_unit="0")])
    assert response.status_code == 200, response.content


def test_a_dodo_only_price_answers_without_any_extension(api, meter):
    response = create(api, meters=[{"meter_id": meter.id, "price_per_unit": "0.1"}])
    [shown] = response.json()["price"]["meters"]
    assert set(shown) == {
        "meter_id",
        "name",
        "description",
        "measurement_unit",
        "price_per_unit",
        "free_threshold",
        "credit_entitlement_id",
        "meter_units_per_credit",
    }
    [entry] = AuditEntry.objects.filter(object_id=response.json()["product_id"])
    assert set(entry.after["meters"][0]) == {
        "meter_id",
        "price_per_unit",
        "free_threshold",
        "credit_entitlement_id",
        "meter_units_per_credit",
    }


def _tiers(*changes) -> list[dict]:
    tiers = copy.deepcopy(TIERS)
    for index, name, value in changes:
        tiers[index][name] = value
    return tiers


INVALID = {
    "not increasing": (
        {
            "tiers": [
                {"up_to": "10", "unit_price": "1"},
                {"up_to": "10", "unit_price": "1"},
                {"up_to": None, "unit_price": "1"},
            ]
        },
        "price.meters[0].tiers[1].up_to",
    ),  # fmt: skip
    "decreasing": (
        {
            "tiers": [
                {"up_to": "10", "unit_price": "1"},
                {"up_to": "5", "unit_price": "1"},
                {"up_to": None, "unit_price": "1"},
            ]
        },
        "price.meters[0].tiers[1].up_to",
    ),  # fmt: skip
    "last not null": ({"tiers": _tiers((1, "up_to", "20000"))}, "price.meters[0].tiers[1].up_to"),
    "null before the last": (
        {"tiers": _tiers((0, "up_to", None))},
        "price.meters[0].tiers[0].up_to",
    ),
    "zero up_to": ({"tiers": _tiers((0, "up_to", "0"))}, "price.meters[0].tiers[0].up_to"),
    "negative unit price": (
        {"tiers": _tiers((1, "unit_price", "-0.05"))},
        "price.meters[0].tiers[1].unit_price",
    ),
    "missing unit price": (
        {"tiers": [{"up_to": "1"}, {"up_to": None, "unit_price": "1"}]},
        "price.meters[0].tiers[0].unit_price",
    ),
    "negative flat fee": (
        {"tiers": _tiers((0, "flat_fee", -1))},
        "price.meters[0].tiers[0].flat_fee",
    ),
    "fractional flat fee": (
        {"tiers": _tiers((0, "flat_fee", 1.5))},
        "price.meters[0].tiers[0].flat_fee",
    ),
    "unknown tier field": (
        {"tiers": _tiers((0, "price", "1"))},
        "price.meters[0].tiers[0].price",
    ),
    "empty tier list": ({"tiers": 5}, "price.meters[0].tiers"),
    "no mode": ({"tier_mode": None}, "price.meters[0].tier_mode"),
    "bad mode": ({"tier_mode": "stairstep"}, "price.meters[0].tier_mode"),
    "price with tiers": ({"price_per_unit": "0.1"}, "price.meters[0].price_per_unit"),
    "package with tiers": ({"package_size": "100"}, "price.meters[0].package_size"),
    "negative maximum": ({"maximum_amount": -1}, "price.meters[0].maximum_amount"),
    "minimum above maximum": (
        {"minimum_amount": 600, "maximum_amount": 500},
        "price.meters[0].minimum_amount",
    ),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_invalid_tiers_are_refused_naming_the_field(api, meter, case):
    fields, field = INVALID[case]
    response = create(api, meters=[tiered(meter, **copy.deepcopy(fields))])
    assert response.status_code == 422, response.content
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert Product.objects.count() == ProductMeter.objects.count() == 0


PLAIN_INVALID = {
    "mode without tiers": ({"tier_mode": "volume"}, "price.meters[0].tier_mode"),
    "zero package": ({"package_size": "0"}, "price.meters[0].package_size"),
    "negative package": ({"package_size": "-10"}, "price.meters[0].package_size"),
    "rounding without package": ({"package_rounding": "down"}, "price.meters[0].package_rounding"),
    "bad rounding": (
        {"package_size": "10", "package_rounding": "nearest"},
        "price.meters[0].package_rounding",
    ),
    "float minimum": ({"minimum_amount": 2.5}, "price.meters[0].minimum_amount"),
}


@pytest.mark.parametrize("case", PLAIN_INVALID, ids=list(PLAIN_INVALID))
def test_invalid_packages_and_limits_are_refused_naming_the_field(api, meter, case):
    fields, field = PLAIN_INVALID[case]
    response = create(api, meters=[{"meter_id": meter.id, "price_per_unit": "1", **fields}])
    assert response.status_code == 422, response.content
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert Product.objects.count() == 0


@pytest.mark.parametrize("name", ["tiers", "package_size", "maximum_amount"])
def test_extensions_are_refused_on_a_meter_billed_in_credits(api, meter, name):
    entitlement = make_entitlement(now=NOW)
    value = {"tiers": TIERS, "package_size": "10", "maximum_amount": 5}[name]
    response = api.post(
        "/api/products",
        {
            "name": "Credits",
            "tax_category": "saas",
            "credit_entitlements": [
                {"credit_entitlement_id": entitlement.id, "credits_amount": "100"}
            ],
            "price": {
                "type": "usage_based_price",
                "currency": "USD",
                "payment_frequency_interval": "Month",
                "meters": [
                    {
                        "meter_id": meter.id,
                        "credit_entitlement_id": entitlement.id,
                        "meter_units_per_credit": "1",
                        name: value,
                    }
                ],
            },
        },
        format="json",
    )
    assert response.status_code == 422, response.content
    assert [e["field"] for e in response.json()["errors"]] == [f"price.meters[0].{name}"]
    assert Product.objects.count() == 0


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.sampled_from(["0", "1", "-1", "1e999999999", "NaN", "Infinity", "0.1", "10000", "", "x"])
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
tier_like = st.fixed_dictionaries(
    {},
    optional={"up_to": json_values, "unit_price": json_values, "flat_fee": json_values},
)
extension_values = st.fixed_dictionaries(
    {},
    optional={
        "price_per_unit": json_values,
        "tiers": st.lists(tier_like, max_size=4) | json_values,
        "tier_mode": st.sampled_from(["graduated", "volume"]) | json_values,
        "package_size": json_values,
        "package_rounding": st.sampled_from(["up", "down"]) | json_values,
        "minimum_amount": json_values,
        "maximum_amount": json_values,
    },
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fields=extension_values)
def test_any_extension_input_is_taken_or_refused_by_name_never_a_500(api, meter, fields):
    response = create(api, meters=[{"meter_id": meter.id, **fields}])
    assert response.status_code in (200, 422), response.content
    if response.status_code == 422:
        assert all(e["field"].startswith("price.meters[0]") for e in response.json()["errors"])
