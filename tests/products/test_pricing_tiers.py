"""Tiers, packages, minimums and maximums (extensions of Dodo's meter price, products/pricing.py):
worked examples against hand computations, and a property test against an independent rule."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from django.contrib.admin.utils import quote
from hypothesis import given, settings
from hypothesis import strategies as st

from meters.analytics import customer_usage
from products import services
from products.billing import run_billing_cycle, usage_charge
from products.models import LineKind
from products.pricing import MeterPricing, Tier, charge
from products.wire import line_data
from tests.products.factories import make_meter, send_usage, subscribe

D = Decimal
START = datetime(2026, 1, 31, 9, 15, tzinfo=UTC)
FIRST_END = datetime(2026, 2, 28, 9, 15, tzinfo=UTC)
TEN_K = (Tier(D(10_000), D("0.1")), Tier(None, D("0.05")))
ONE_K = (Tier(D(1_000), D("0.1")), Tier(None, D("0.05")))


def tiered(mode: str, tiers=TEN_K, **limits) -> MeterPricing:
    return MeterPricing(tiers=tiers, tier_mode=mode, **limits)


# --- worked examples, by hand -------------------------------------------------------------------


def test_graduated_25000_units_over_10k_at_0_1_then_0_05():
    result = charge(tiered("graduated"), D(25_000))
    # 10,000 x 0.1 = 1,000; 15,000 x 0.05 = 750; together 1,750 minor units.
    assert result.amount_minor == 1750
    assert [(t.units, t.amount) for t in result.tiers] == [
        (D(10_000), D(1000)),
        (D(15_000), D("750")),
    ]
    assert result.limit_applied is None


def test_volume_25000_units_all_at_the_tier_reached():
    result = charge(tiered("volume"), D(25_000))
    # The total reaches the second tier: 25,000 x 0.05 = 1,250.
    assert result.amount_minor == 1250
    assert [(t.up_to, t.units, t.unit_price) for t in result.tiers] == [
        (None, D(25_000), D("0.05"))
    ]


def test_the_issue_example_2500_units_175_graduated_125_volume():
    assert charge(tiered("graduated", ONE_K), D(2500)).amount_minor == 175  # 100 + 75
    assert charge(tiered("volume", ONE_K), D(2500)).amount_minor == 125  # 2,500 x 0.05


def test_volume_at_a_tier_bound_stays_in_that_tier():
    assert charge(tiered("volume"), D(10_000)).amount_minor == 1000  # up_to is inclusive
    assert charge(tiered("volume"), D("10000.5")).amount_minor == 500  # 10,000.5 x 0.05 = 500.025


def test_flat_fees_are_added_for_each_tier_reached():
    tiers = (Tier(D(10_000), D("0.1"), flat_fee=200), Tier(None, D("0.05"), flat_fee=300))
    assert charge(tiered("graduated", tiers), D(5000)).amount_minor == 500 + 200
    assert charge(tiered("graduated", tiers), D(25_000)).amount_minor == 1750 + 200 + 300
    assert charge(tiered("volume", tiers), D(25_000)).amount_minor == 1250 + 300
    assert charge(tiered("graduated", tiers), D(0)).amount_minor == 0  # no tier reached


def test_one_rounding_per_line_not_per_tier():
    tiers = (Tier(D(1), D("0.5")), Tier(None, D("0.5")))
    # 0.5 + 0.5 = 1.0 -> 1; rounding each tier first would give 1 + 1 = 2.
    assert charge(tiered("graduated", tiers), D(2)).amount_minor == 1
    tiers = (Tier(D(3), D("0.15")), Tier(None, D("0.2")))
    # 3 x 0.15 + 4 x 0.2 = 0.45 + 0.8 = 1.25 -> 1 (half-up on the exact sum).
    assert charge(tiered("graduated", tiers), D(7)).amount_minor == 1


def test_package_of_1000_with_2500_units_in_both_roundings():
    up = MeterPricing(price_per_unit=D(200), package_size=D(1000))
    down = MeterPricing(price_per_unit=D(200), package_size=D(1000), package_rounding="down")
    assert (charge(up, D(2500)).packages, charge(up, D(2500)).amount_minor) == (3, 600)
    assert (charge(down, D(2500)).packages, charge(down, D(2500)).amount_minor) == (2, 400)
    assert charge(up, D(2000)).amount_minor == charge(down, D(2000)).amount_minor == 400
    assert charge(up, D(0)).amount_minor == 0


def test_a_maximum_that_binds_and_one_that_does_not():
    capped = charge(tiered("graduated", maximum_amount=1500), D(25_000))
    assert (capped.amount_minor, capped.limit_applied, capped.rounded) == (
        1500,
        "maximum_amount",
        1750,
    )
    loose = charge(tiered("graduated", maximum_amount=2000), D(25_000))
    assert (loose.amount_minor, loose.limit_applied) == (1750, None)


def test_a_minimum_that_binds_and_one_that_does_not():
    plain = MeterPricing(price_per_unit=D("0.1"), minimum_amount=500)
    assert (charge(plain, D(0)).amount_minor, charge(plain, D(0)).limit_applied) == (
        500,
        "minimum_amount",
    )
    assert (charge(plain, D(6000)).amount_minor, charge(plain, D(6000)).limit_applied) == (
        600,
        None,
    )


def test_free_threshold_then_tiers_on_the_chargeable_units():
    # 25,000 consumed, 5,000 free: the tiers price the 20,000 chargeable units.
    free, chargeable, graduated = usage_charge(D(25_000), 5000, D(0), tiered("graduated"))
    assert (free, chargeable, graduated) == (5000, 20_000, 1000 + 500)
    assert usage_charge(D(25_000), 5000, D(0), tiered("volume"))[2] == 20_000 * D("0.05")


def test_a_plain_price_is_charged_as_before():
    plain = MeterPricing(price_per_unit=D("0.15"))
    for units in (0, 3, 7, 10_001):
        assert usage_charge(D(units), 0, D("0.15"), plain) == usage_charge(D(units), 0, D("0.15"))


# --- property: an independent implementation ----------------------------------------------------


def half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def independent_amount(
    units: int, tiers: list[tuple[int | None, Fraction, int]], mode: str | None, limits: tuple
) -> int:
    """Unit by unit: unit k (1..units) lies in the tier whose bounds hold lower < k <= up_to."""

    def tier_of(k: int) -> int:
        return next(i for i, (up_to, _, _) in enumerate(tiers) if up_to is None or k <= up_to)

    if units == 0:
        exact = Fraction(0)
    elif mode == "graduated":
        exact = sum((tiers[tier_of(k)][1] for k in range(1, units + 1)), Fraction(0))
        exact += sum(tiers[i][2] for i in set(map(tier_of, range(1, units + 1))))
    else:
        _, price, fee = tiers[tier_of(units)]
        exact = units * price + fee
    amount = half_up(exact)
    minimum, maximum = limits
    if maximum is not None:
        amount = min(amount, maximum)
    if minimum is not None:
        amount = max(amount, minimum)
    return amount


prices = st.decimals(min_value=0, max_value=5, places=3, allow_nan=False, allow_infinity=False)


@st.composite
def tier_lists(draw):
    bounds = sorted(draw(st.sets(st.integers(1, 400), max_size=4)))
    return [
        (bound, draw(prices), draw(st.integers(0, 50)))
        for bound in [*bounds, None]  # the last tier has no bound
    ]


@settings(max_examples=300, deadline=None)
@given(
    tiers=tier_lists(),
    mode=st.sampled_from(["graduated", "volume"]),
    consumed=st.integers(0, 600),
    free=st.integers(0, 100),
    minimum=st.none() | st.integers(0, 500),
    maximum=st.none() | st.integers(500, 2000),
)
def test_tiers_match_an_independent_unit_by_unit_rule(
    tiers, mode, consumed, free, minimum, maximum
):
    pricing = MeterPricing(
        tiers=tuple(Tier(None if b is None else D(b), p, f) for b, p, f in tiers),
        tier_mode=mode,
        minimum_amount=minimum,
        maximum_amount=maximum,
    )
    chargeable = max(consumed - free, 0)
    expected = independent_amount(
        chargeable,
        [(b, Fraction(p), f) for b, p, f in tiers],
        mode,
        (minimum, maximum),
    )
    assert usage_charge(D(consumed), free, D(0), pricing)[2] == expected


@settings(max_examples=200, deadline=None)
@given(
    units=st.integers(0, 10_000),
    size=st.integers(1, 3000),
    price=prices,
    down=st.booleans(),
)
def test_packages_match_an_independent_rule(units, size, price, down):
    pricing = MeterPricing(
        price_per_unit=price, package_size=D(size), package_rounding="down" if down else "up"
    )
    packages = units // size if down else -(-units // size)
    assert charge(pricing, D(units)).amount_minor == half_up(packages * Fraction(price))


# --- through the billing cycle: the invoice line shows how it was priced -----------------------


@pytest.mark.django_db
def test_invoice_lines_store_and_show_tiers_packages_and_limits(admin_client):
    calls = make_meter("Calls", "api.call", "sum", "n", now=START)
    pages = make_meter("Pages", "page.view", "sum", "n", now=START)
    plain = make_meter("Plain", "plain.use", "sum", "n", now=START)
    product = services.create_product(
        name="Tiered",
        now=START,
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 0,
            "payment_frequency_interval": "Month",
            "meters": [
                {
                    "meter_id": calls.id,
                    "free_threshold": 5000,
                    "tier_mode": "graduated",
                    "tiers": [
                        {"up_to": "10000", "unit_price": "0.1", "flat_fee": 0},
                        {"up_to": None, "unit_price": "0.05"},
                    ],
                    "maximum_amount": 1200,
                },
                {"meter_id": pages.id, "price_per_unit": "200", "package_size": "1000"},
                {"meter_id": plain.id, "price_per_unit": "0.1"},
            ],
        },
    )
    subscription = subscribe(product, now=START)
    for event, prefix in (("api.call", "c"), ("page.view", "p"), ("plain.use", "u")):
        send_usage(subscription, event, [{"n": 25_000 if prefix == "c" else 2500}], start=START,
                   prefix=prefix)  # fmt: skip
    [invoice] = run_billing_cycle(now=FIRST_END + timedelta(seconds=1))
    lines = {line.meter_id: line for line in invoice.lines.all() if line.kind == LineKind.USAGE}

    tiered_line = lines[calls.id]
    # 20,000 chargeable: 10,000 x 0.1 + 10,000 x 0.05 = 1,500, capped at 1,200.
    assert tiered_line.amount_minor == 1200
    assert tiered_line.limit_applied == "maximum_amount"
    first, second = tiered_line.tiers
    assert first == {
        "up_to": "10000",
        "units": "10000",
        "unit_price": "0.1",
        "flat_fee": 0,
        "amount": "1000.0",
    }
    assert second == {
        "up_to": None,
        "units": "10000",
        "unit_price": "0.05",
        "flat_fee": 0,
        "amount": "500.00",
    }
    assert "graduated tiers" in tiered_line.description
    assert "capped at maximum_amount 1200 (was 1500)" in tiered_line.description
    shown = line_data(tiered_line)
    assert shown["unit_price"] is None and shown["limit_applied"] == "maximum_amount"
    assert shown["tiers"][1]["units"] == "10000"

    package_line = lines[pages.id]
    assert (package_line.amount_minor, package_line.packages) == (600, 3)
    assert "3 packages of 1000" in package_line.description
    assert line_data(package_line)["packages"] == "3"

    plain_line = lines[plain.id]
    assert plain_line.amount_minor == 250
    assert plain_line.description == "Plain (units)"
    assert set(line_data(plain_line)) == {
        "kind",
        "meter_id",
        "description",
        "consumed_units",
        "free_threshold",
        "free_units",
        "chargeable_units",
        "unit_price",
        "credits_applied",
        "amount",
    }  # exactly today's line
    assert invoice.total_minor == 1200 + 600 + 250

    # The printable invoice shows each tier; the product's admin page the price and an example.
    html = admin_client.get(f"/admin/products/invoice/{invoice.pk}/print/").content.decode()
    assert "Tier up to 10000: 1000.0 exact" in html and "Tier above: 500.00 exact" in html
    page = admin_client.get(f"/admin/products/product/{quote(product.product_id)}/change/")
    html = page.content.decode()
    # 12,500 chargeable: 10,000 x 0.1 + 2,500 x 0.05 = 1,125, under the 1,200 maximum.
    assert "graduated: up to 10000 at 0.1; above at 0.05, maximum 12.00 USD" in html
    assert "Example: 17,500 units (12,500 after the free ones) cost 11.25 USD" in html
    assert "200 per started package of 1000" in html
    pdf = admin_client.get(f"/admin/products/invoice/{invoice.pk}/pdf/")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"

    # The meter's analytics price usage with the same rule as the invoice.
    for meter, amount in ((calls, 1200), (pages, 600), (plain, 250)):
        [row] = customer_usage(meter, START, FIRST_END)
        assert [c.amount_minor for c in row.charges] == [amount]
