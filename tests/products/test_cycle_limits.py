"""A product's cycle minimum and maximum (extensions of Dodo's price, `price.minimum_amount` and
`price.maximum_amount`): the cycle's usage lines together held between them, by a `usage_limit`
line, the same at the period close, in the upcoming invoice, in a reissue and (prorated) in a
plan change. Every amount is a hand computation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from audit.models import AuditEntry
from products import invoices, plan_changes, services
from products.billing import run_billing_cycle
from products.models import Invoice, LineKind, Product
from products.pricing import MAXIMUM, MINIMUM, cycle_adjustment
from tests.products.factories import make_meter, send_usage, subscribe
from tests.products.test_products_api import create, price

START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
PERIOD_END = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)  # 31 days
CHANGE = START + timedelta(days=10, seconds=7)
FEE = 1000
pytestmark = pytest.mark.django_db


def test_the_adjustment_by_hand():
    # Usage lines of 3,000 and 4,300: 7,300 against a 5,000 cap takes off 2,300.
    assert cycle_adjustment(7300, minimum_amount=None, maximum_amount=5000) == (-2300, MAXIMUM)
    assert cycle_adjustment(4999, minimum_amount=None, maximum_amount=5000) == (0, None)
    assert cycle_adjustment(5000, minimum_amount=None, maximum_amount=5000) == (0, None)
    # A 2,500 minimum over 1,000 of usage adds 1,500; over no usage at all, the whole 2,500.
    assert cycle_adjustment(1000, minimum_amount=2500, maximum_amount=None) == (1500, MINIMUM)
    assert cycle_adjustment(0, minimum_amount=2500, maximum_amount=9000) == (2500, MINIMUM)
    assert cycle_adjustment(2500, minimum_amount=2500, maximum_amount=9000) == (0, None)


def limited_product(**limits) -> Product:
    """A fee of 1,000 and two meters at 1 and 0.5 minor units per unit, 100 free units each."""
    calls = make_meter("Calls", "api.call", "sum", "n", now=START)
    tokens = make_meter("Tokens", "llm.tokens", "sum", "n", now=START)
    return services.create_product(
        name="Capped",
        now=START,
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": FEE,
            "payment_frequency_interval": "Month",
            "meters": [
                {"meter_id": calls.id, "price_per_unit": "1", "free_threshold": 100},
                {"meter_id": tokens.id, "price_per_unit": "0.5", "free_threshold": 100},
            ],
            **limits,
        },
    )


def use(subscription, calls: int, tokens: int, *, at: datetime = START) -> None:
    send_usage(subscription, "api.call", [{"n": calls}], start=at, prefix=f"c{at:%d%H%M%S}")
    send_usage(subscription, "llm.tokens", [{"n": tokens}], start=at, prefix=f"t{at:%d%H%M%S}")


def closed(subscription) -> Invoice:
    [invoice] = run_billing_cycle(now=PERIOD_END + timedelta(seconds=1))
    assert invoice.subscription_id == subscription.pk
    return invoice


def kinds_and_amounts(lines) -> list[tuple[str, int]]:
    return [(line.kind, line.amount_minor) for line in lines]


def test_a_cycle_maximum_that_binds_takes_off_the_excess(admin_client):
    subscription = subscribe(limited_product(maximum_amount=5000), now=START)
    # Calls: 3,100 - 100 free = 3,000 x 1 = 3,000; tokens: 8,700 - 100 = 8,600 x 0.5 = 4,300.
    use(subscription, 3100, 8700)
    upcoming = invoices.upcoming(subscription.pk, now=PERIOD_END - timedelta(hours=1))[1]

    invoice = closed(subscription)
    lines = list(invoice.lines.all())
    assert kinds_and_amounts(lines) == [
        (LineKind.FIXED_FEE, FEE),
        (LineKind.USAGE, 3000),
        (LineKind.USAGE, 4300),
        (LineKind.USAGE_LIMIT, 5000 - 7300),
    ]
    limit = lines[-1]
    assert limit.limit_applied == "maximum_amount"
    assert limit.description == "Usage capped at the cycle maximum_amount 5000 (usage lines 7300)"
    assert invoice.total_minor == FEE + 5000  # the fee is outside the cap
    # The upcoming invoice an hour before the end showed the same lines.
    assert kinds_and_amounts(upcoming) == kinds_and_amounts(lines)
    # The printable invoice and the PDF show the line too.
    html = admin_client.get(f"/admin/products/invoice/{invoice.pk}/print/").content.decode()
    assert "Usage capped at the cycle maximum_amount 5000 (usage lines 7300)" in html
    assert "-23.00 USD" in html and "60.00 USD" in html
    pdf = admin_client.get(f"/admin/products/invoice/{invoice.pk}/pdf/")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf"


def test_a_cycle_maximum_that_does_not_bind_adds_no_line():
    subscription = subscribe(limited_product(maximum_amount=5000), now=START)
    use(subscription, 2100, 2100)  # 2,000 x 1 + 2,000 x 0.5 = 3,000, under 5,000
    invoice = closed(subscription)
    assert kinds_and_amounts(invoice.lines.all()) == [
        (LineKind.FIXED_FEE, FEE),
        (LineKind.USAGE, 2000),
        (LineKind.USAGE, 1000),
    ]
    assert invoice.total_minor == FEE + 3000


def test_a_cycle_minimum_raises_the_usage_to_it():
    subscription = subscribe(limited_product(minimum_amount=2500, maximum_amount=9000), now=START)
    use(subscription, 600, 1100)  # 500 x 1 + 1,000 x 0.5 = 1,000
    invoice = closed(subscription)
    lines = list(invoice.lines.all())
    assert kinds_and_amounts(lines)[-1] == (LineKind.USAGE_LIMIT, 1500)
    assert lines[-1].limit_applied == "minimum_amount"
    assert lines[-1].description == (
        "Usage raised to the cycle minimum_amount 2500 (usage lines 1000)"
    )
    assert invoice.total_minor == FEE + 2500


def test_a_reissue_recomputes_the_limit_at_the_prices_in_force():
    product = limited_product(maximum_amount=5000)
    subscription = subscribe(product, now=START)
    use(subscription, 3100, 8700)  # 7,300 of usage
    invoice = closed(subscription)
    assert invoice.total_minor == FEE + 5000
    invoices.void(invoice.invoice_id, reason="wrong cap", now=PERIOD_END + timedelta(hours=1))
    services.update_product(  # the same price, with a cap of 6,000 now
        product,
        now=PERIOD_END + timedelta(hours=1),
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": FEE,
            "payment_frequency_interval": "Month",
            "maximum_amount": 6000,
            "meters": [
                {
                    "meter_id": pm.meter_id,
                    "price_per_unit": str(pm.price_per_unit),
                    "free_threshold": pm.free_threshold,
                }  # fmt: skip
                for pm in product.product_meters.all()
            ],
        },
    )
    new = invoices.reissue(invoice.invoice_id, now=PERIOD_END + timedelta(hours=2))
    assert kinds_and_amounts(new.lines.all())[-1] == (LineKind.USAGE_LIMIT, 6000 - 7300)
    assert new.total_minor == FEE + 6000


def half_up(amount: Fraction) -> int:
    return int(amount + Fraction(1, 2))


def test_a_plan_change_holds_the_short_period_at_the_prorated_limits():
    old = limited_product(maximum_amount=5000)
    new = limited_product(minimum_amount=100)
    subscription = subscribe(old, now=START)
    use(subscription, 3100, 8700, at=START + timedelta(days=1))
    result = plan_changes.change_plan(
        subscription.pk, product_id=new.pk, quantity=1, mode="prorated_immediately", now=CHANGE
    )
    used = Fraction((CHANGE - START) // timedelta(seconds=1), 31 * 24 * 3600)
    assert used == Fraction(864007, 2678400)
    cap = half_up(5000 * used)  # 1612.91... -> 1613
    free = int(100 * used)  # 32 free units of each meter
    usage = (3100 - free) * 1 + half_up(Fraction(8700 - free, 2))  # 3,068 + 4,334
    lines = list(result.invoice.lines.all())
    assert kinds_and_amounts(lines)[1:] == [
        (LineKind.USAGE, 3100 - free),
        (LineKind.USAGE, half_up(Fraction(8700 - free, 2))),
        (LineKind.USAGE_LIMIT, cap - usage),
    ]
    assert cap == 1613 and usage == 7402
    assert "prorated 0.322583 of the period" in lines[-1].description
    assert result.invoice.total_minor == half_up(FEE * used) + cap


def test_the_api_stores_and_shows_the_limits_and_audits_them(api):
    response = create(api, minimum_amount=100, maximum_amount=5000)
    assert response.status_code == 200, response.content
    shown = response.json()["price"]
    assert (shown["minimum_amount"], shown["maximum_amount"]) == (100, 5000)
    product = Product.objects.get()
    assert (product.minimum_amount, product.maximum_amount) == (100, 5000)
    [entry] = AuditEntry.objects.filter(object_id=product.pk)
    assert (entry.after["minimum_amount"], entry.after["maximum_amount"]) == (100, 5000)
    listed = api.get("/api/products").json()["items"][0]["price_detail"]
    assert listed["maximum_amount"] == 5000


def test_a_dodo_only_price_shows_no_limit(api):
    response = create(api)
    assert response.status_code == 200, response.content
    assert "minimum_amount" not in response.json()["price"]
    assert "maximum_amount" not in response.json()["price"]
    [entry] = AuditEntry.objects.all()
    assert "minimum_amount" not in entry.after and "maximum_amount" not in entry.after


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"maximum_amount": -1}, "price.maximum_amount"),
        ({"minimum_amount": -5}, "price.minimum_amount"),
        ({"minimum_amount": 600, "maximum_amount": 500}, "price.minimum_amount"),
        ({"minimum_amount": 2.5}, "price.minimum_amount"),
        ({"maximum_amount": "5000"}, "price.maximum_amount"),
        ({"maximum_amount": True}, "price.maximum_amount"),
    ],
)
def test_invalid_limits_are_refused_naming_the_field_and_nothing_is_stored(api, limits, field):
    response = create(api, **limits)
    assert response.status_code == 422, response.content
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert not Product.objects.exists()


def test_an_update_with_invalid_limits_changes_nothing(api):
    product_id = create(api, maximum_amount=5000).json()["product_id"]
    response = api.patch(
        f"/api/products/{product_id}",
        {"price": {**price(), "maximum_amount": -3}},
        format="json",
    )
    assert response.status_code == 422, response.content
    assert [e["field"] for e in response.json()["errors"]] == ["price.maximum_amount"]
    assert Product.objects.get().maximum_amount == 5000


def test_the_lead_of_a_change_that_keeps_the_cycle_holds_its_share_of_the_minimum():
    old = limited_product()
    new = limited_product(minimum_amount=3000)
    subscription = subscribe(old, now=START)
    plan_changes.change_plan(
        subscription.pk,
        product_id=new.pk,
        quantity=1,
        mode="prorated_immediately_keep_cycle",
        now=CHANGE,
    )
    use(subscription, 1000, 0, at=CHANGE + timedelta(days=1))
    [lead] = run_billing_cycle(now=PERIOD_END)
    assert (lead.period_start, lead.period_end) == (CHANGE, PERIOD_END)
    left = 1 - Fraction((CHANGE - START) // timedelta(seconds=1), 31 * 24 * 3600)
    assert left == Fraction(1814393, 2678400)
    minimum = half_up(3000 * left)  # 2032.25... -> 2032
    usage = 1000 - int(100 * left)  # 67 free units: 933 x 1
    assert (minimum, usage) == (2032, 933)
    assert kinds_and_amounts(lead.lines.all())[1:] == [
        (LineKind.USAGE, usage),
        (LineKind.USAGE, 0),
        (LineKind.USAGE_LIMIT, minimum - usage),
    ]
    assert lead.total_minor == half_up(FEE * left) + minimum
