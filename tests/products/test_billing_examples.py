"""The worked examples: each invoice amount is checked against numbers computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_site.money import round_minor
from products.billing import run_billing_cycle, usage_charge
from products.models import Invoice, LineKind
from tests.products.factories import make_meter, make_product, send_usage, subscribe

START = datetime(2026, 1, 31, 9, 15, tzinfo=UTC)  # monthly periods: Jan 31, Feb 28, Mar 31
FIRST_END = datetime(2026, 2, 28, 9, 15, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def bill_first_period() -> list[Invoice]:
    return run_billing_cycle(now=FIRST_END + timedelta(seconds=1))


def usage_lines(invoice: Invoice) -> dict[str, tuple]:
    return {
        line.meter.name: (
            line.consumed_units,
            line.free_units,
            line.chargeable_units,
            line.unit_price,
            line.amount_minor,
        )
        for line in invoice.lines.select_related("meter")
        if line.kind == LineKind.USAGE
    }


def test_api_calls_at_a_tenth_of_a_cent_after_10000_free():
    calls = make_meter("API calls", "api.call", now=START)
    product = make_product([(calls, "0.1", 10_000)], now=START)  # $0.001 = 0.1 cent
    subscription = subscribe(product, now=START)
    send_usage(subscription, "api.call", [{}] * 25_000, start=START, prefix="call")

    [invoice] = bill_first_period()
    # 25,000 - 10,000 free = 15,000 chargeable x 0.1 cent = 1,500 cents = $15.00
    assert usage_lines(invoice)["API calls"] == (25_000, 10_000, 15_000, Decimal("0.1"), 1500)
    assert invoice.total_minor == 1500
    assert (invoice.period_start, invoice.period_end) == (START, FIRST_END)


def test_storage_at_5_dollars_per_gb_after_10_gb_free_summed_in_bytes():
    storage = make_meter("Storage", "object.stored", "sum", "bytes", now=START)
    # 500 cents per GB = 500 / 10**9 cents per byte; 10 GB free = 10**10 bytes.
    product = make_product([(storage, "0.0000005", 10 * 10**9)], now=START)
    subscription = subscribe(product, now=START)
    send_usage(
        subscription, "object.stored", [{"bytes": 100_000_000}] * 125, start=START, prefix="put"
    )

    [invoice] = bill_first_period()
    consumed, free, chargeable, _, amount = usage_lines(invoice)["Storage"]
    assert consumed == Decimal(12_500_000_000)  # 12.5 GB
    assert chargeable == Decimal(2_500_000_000)
    assert amount == 1250  # $12.50


def test_images_standard_and_hd_priced_by_two_filtered_meters():
    standard = make_meter(
        "Standard images",
        "image.generated",
        filter={
            "conjunction": "and",
            "clauses": [{"key": "quality", "operator": "equals", "value": "standard"}],
        },
        now=START,
    )
    hd = make_meter(
        "HD images",
        "image.generated",
        filter={
            "conjunction": "and",
            "clauses": [{"key": "quality", "operator": "equals", "value": "hd"}],
        },
        now=START,
    )
    product = make_product([(standard, "4", 0), (hd, "8", 0)], now=START, fixed_price=999)
    subscription = subscribe(product, now=START)
    images = [{"quality": "standard"}] * 120 + [{"quality": "hd"}] * 45 + [{"quality": "4k"}] * 7
    send_usage(subscription, "image.generated", images, start=START, prefix="img")

    [invoice] = bill_first_period()
    lines = usage_lines(invoice)
    assert lines["Standard images"][4] == 120 * 4  # $4.80
    assert lines["HD images"][4] == 45 * 8  # $3.60
    assert invoice.total_minor == 999 + 480 + 360


def test_sms_at_one_cent_each():
    sms = make_meter("SMS", "sms.sent", now=START)
    product = make_product([(sms, "1", 0)], now=START)
    subscription = subscribe(product, now=START)
    send_usage(subscription, "sms.sent", [{}] * 321, start=START, prefix="sms")
    [invoice] = bill_first_period()
    assert usage_lines(invoice)["SMS"] == (321, 0, 321, Decimal(1), 321)


def test_250_units_with_100_free_at_50_cents_is_75_dollars():
    units = make_meter("Units", "unit.used", "sum", "n", now=START)
    product = make_product([(units, "50", 100)], now=START)
    subscription = subscribe(product, now=START)
    send_usage(subscription, "unit.used", [{"n": 2.5}] * 100, start=START, prefix="u")
    [invoice] = bill_first_period()
    assert usage_lines(invoice)["Units"] == (250, 100, 150, Decimal(50), 7500)


def test_a_tenth_of_a_cent_times_five_rounds_half_up_once_per_line():
    tiny = make_meter("Tiny", "tiny", now=START)
    product = make_product([(tiny, "0.1", 0)], now=START)
    subscription = subscribe(product, now=START)
    send_usage(subscription, "tiny", [{}] * 5, start=START, prefix="t")
    [invoice] = bill_first_period()
    assert usage_lines(invoice)["Tiny"][4] == 1  # 0.5 cent -> 1, not 0 (banker's rounding)


def test_rounding_is_half_up_and_applied_once():
    assert round_minor(Decimal("100.5")) == 101
    assert round_minor(Decimal("100.49")) == 100
    assert round_minor(Decimal("2.5")) == 3
    # 3 units at 0.15 = 0.45 -> 0; rounding each unit first would give 3 x 0 = 0 or 3 x 1 = 3.
    assert usage_charge(Decimal(3), 0, Decimal("0.15"))[2] == 0
    assert usage_charge(Decimal(7), 0, Decimal("0.15"))[2] == 1  # 1.05 -> 1


def test_usage_outside_the_period_and_of_other_customers_is_not_billed():
    calls = make_meter("API calls", "api.call", now=START)
    product = make_product([(calls, "1", 0)], now=START)
    subscription = subscribe(product, now=START)
    other = subscribe(product, now=START)
    send_usage(subscription, "api.call", [{}] * 10, start=START - timedelta(hours=1), prefix="a")
    send_usage(other, "api.call", [{}] * 4, start=START, prefix="b")
    # exactly on the boundary: belongs to the next period
    send_usage(subscription, "api.call", [{}], start=FIRST_END, prefix="edge")

    invoices = {i.subscription_id: i for i in bill_first_period()}
    # 10 events one second apart from 08:15: none is inside [09:15, ...)
    assert usage_lines(invoices[subscription.pk])["API calls"][0] == 0
    assert usage_lines(invoices[other.pk])["API calls"][0] == 4
