"""A Celery worker SIGKILLed in the middle of a billing run: every invoice it committed is whole,
the one it was writing vanishes, and a new worker finishes so that each subscription has exactly
one invoice for the period, every line equal to an independent calculation from the raw events.

The `products.bill` task bills as of the real clock, so the subscriptions here started a day and
a few minutes ago on daily plans: their first period has just ended.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Count
from django.utils import timezone

from billing_site.jsonutil import exact_dumps
from products.billing import ingest_events as ingest
from products.models import Invoice, InvoiceLine, Subscription
from tests.factories import make_customer
from tests.faults.processes import Worker
from tests.products.factories import make_meter, make_product, subscribe

SUBSCRIPTIONS = 200
FIXED_FEE = 100
# (meter, price per unit in cents, free units per period)
CALLS_PRICE, CALLS_FREE = Decimal("2.5"), 3
TOKENS_PRICE, TOKENS_FREE = Decimal("0.15"), 10
DEADLINE_SECONDS = 60


def usage_of(n: int) -> tuple[int, list[Decimal]]:
    """Subscription n's calls and the tokens of each event: below, at and over the free units.
    An odd number of chargeable calls costs a whole and a half cent: half-up makes 2.5 -> 3 and
    12.5 -> 13, where banker's rounding would give 2 and 12."""
    calls = n % 9
    tokens = [Decimal(n % 7) + Decimal("0.5") * (n % 3), Decimal(n % 11)][: 1 + n % 2]
    return calls, tokens


def half_up(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_lines(n: int) -> list[tuple]:
    """(kind, consumed, free threshold, chargeable, unit price, amount) of each line, worked out
    by hand from the events sent: chargeable = max(consumed - free, 0), amount = chargeable x
    price rounded half-up to a whole cent, once."""
    calls, tokens = usage_of(n)
    lines = [("fixed_fee", None, None, None, None, FIXED_FEE)]
    for consumed, free, price in (
        (Decimal(calls), CALLS_FREE, CALLS_PRICE),
        (sum(tokens, Decimal(0)), TOKENS_FREE, TOKENS_PRICE),
    ):
        chargeable = max(consumed - free, Decimal(0))
        lines.append(("usage", consumed, free, chargeable, price, half_up(chargeable * price)))
    return lines


def send_usage(subscriptions: list[Subscription], now) -> None:
    """Each subscription's usage inside its first period (the first call exactly at its start),
    plus two events the invoice must leave out: one before the anchor, one exactly at the end."""
    events = []
    for n, subscription in enumerate(subscriptions):
        start, end = subscription.current_period_start, subscription.current_period_end
        calls, tokens = usage_of(n)
        own = [
            (f"call-{i}", "api.call", start + (end - start) * i / (calls + 1), {})
            for i in range(calls)
        ]
        own += [
            (f"tokens-{i}", "llm.tokens", end - timedelta(microseconds=1 + i), {"tokens": t})
            for i, t in enumerate(tokens)
        ]
        for name in ("api.call", "llm.tokens"):
            own += [
                (f"{name}-before", name, start - timedelta(seconds=1), {"tokens": 99}),
                (f"{name}-at-end", name, end, {"tokens": 99}),
            ]
        events += [
            {
                "event_id": f"bill-{n}-{label}",
                "customer_id": subscription.customer_id,
                "event_name": name,
                "timestamp": moment.isoformat(),
                "metadata": metadata,
            }
            for label, name, moment, metadata in own
        ]
    for offset in range(0, len(events), 1000):
        body = exact_dumps({"events": events[offset : offset + 1000]}).encode()
        ingest(body, now=now)


def assert_whole_invoices() -> None:
    """Every invoice has all its lines and its total; its subscription moved past the period."""
    counts = Invoice.objects.annotate(lines_count=Count("lines")).values_list(
        "lines_count", flat=True
    )
    assert set(counts) <= {3}
    for invoice in Invoice.objects.prefetch_related("lines"):
        assert invoice.total_minor == sum(line.amount_minor for line in invoice.lines.all())
    invoiced = set(Invoice.objects.values_list("subscription_id", flat=True))
    advanced = set(Subscription.objects.filter(period_index=1).values_list("pk", flat=True))
    assert invoiced == advanced


def wait_until_part_is_billed(worker: Worker) -> int:
    """Poll until about a quarter of the invoices (at least) are committed, not all of them."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        issued = Invoice.objects.count()
        if SUBSCRIPTIONS // 4 <= issued < SUBSCRIPTIONS:
            return issued
        assert issued < SUBSCRIPTIONS, "billing finished before it was interrupted: make it bigger"
        worker.assert_alive()
        assert time.monotonic() < deadline, "the worker never started billing"
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_billing_leaves_whole_invoices_and_another_finishes_exactly(workers):
    first, second = workers
    now = timezone.now()
    anchor = now - timedelta(days=1, minutes=10)  # the first daily period ended 10 minutes ago
    calls = make_meter("Calls", "api.call", now=anchor - timedelta(days=1))
    tokens = make_meter("Tokens", "llm.tokens", "sum", "tokens", now=anchor - timedelta(days=1))
    product = make_product(
        [(calls, str(CALLS_PRICE), CALLS_FREE), (tokens, str(TOKENS_PRICE), TOKENS_FREE)],
        now=anchor - timedelta(days=1),
        fixed_price=FIXED_FEE,
        interval="Day",
    )
    subscriptions = [
        subscribe(product, now=anchor, customer=make_customer(email=f"c{n}@example.com"))
        for n in range(SUBSCRIPTIONS)
    ]
    send_usage(subscriptions, now)
    call_command("rollup", stdout=StringIO())  # the run's own catch-up would only delay it

    first.send("products.bill")
    issued = wait_until_part_is_billed(first)
    first.kill()

    # Whatever the killed worker committed is whole; what it was writing is gone.
    assert first.sessions_ended(), "the killed worker's database session outlived it"
    assert_whole_invoices()
    assert issued <= Invoice.objects.count() < SUBSCRIPTIONS

    second.run_until(
        "products.bill", lambda: not Subscription.objects.filter(period_index=0).exists()
    )
    call_command("bill", stdout=StringIO())  # once more: nothing is billed twice

    assert_whole_invoices()
    assert InvoiceLine.objects.count() == 3 * SUBSCRIPTIONS
    for n, subscription in enumerate(subscriptions):
        [invoice] = Invoice.objects.filter(subscription=subscription)
        assert (invoice.period_index, invoice.period_start, invoice.period_end) == (
            0,
            subscription.current_period_start,
            subscription.current_period_end,
        )
        lines = [
            (
                line.kind,
                line.consumed_units,
                line.free_threshold,
                line.chargeable_units,
                line.unit_price,
                line.amount_minor,
            )
            for line in invoice.lines.order_by("position")
        ]
        assert lines == expected_lines(n), n
        assert invoice.total_minor == sum(line[-1] for line in expected_lines(n))
