"""The grace period: a closed period's invoice stays a draft that late events still enter, and
is final (numbered, events refused) only when the grace period is over."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from events.ingest import InvalidEvents
from products import billing
from products.models import Invoice, InvoiceStatus
from tests.factories import event, ingest_events
from tests.products.factories import make_meter, make_product, send_usage, subscribe

START = datetime(2026, 3, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
PRICE_CENTS, FREE, FEE = 2, 3, 100


def expected_total(calls: int) -> int:
    """Independent of the code: the fee plus 2 cents per call beyond the 3 free ones."""
    return FEE + max(calls - FREE, 0) * PRICE_CENTS


@pytest.fixture
def grace(settings):
    settings.BILLING_GRACE_PERIOD_MINUTES = 60
    return timedelta(minutes=60)


def weekly(calls: int = 5):
    meter = make_meter("Calls", "api.call", now=START)
    product = make_product(
        [(meter, str(PRICE_CENTS), FREE)], now=START, fixed_price=FEE, interval="Week"
    )
    subscription = subscribe(product, now=START)
    send_usage(subscription, "api.call", [{}] * calls, start=START, prefix="base")
    return subscription


def late(subscription, name: str, *, sent_at: datetime, stamped: datetime) -> int:
    return ingest_events(
        [event(name, subscription.customer_id, "api.call", timestamp=stamped)], now=sent_at
    )


@pytest.mark.django_db
def test_an_event_30_minutes_after_the_period_end_is_on_that_periods_invoice(grace):
    subscription = weekly(calls=5)
    billing.run_billing_cycle(now=START + WEEK)
    [draft] = subscription.invoices.all()
    assert draft.status == InvoiceStatus.DRAFT and draft.number is None
    assert draft.finalize_at == START + WEEK + grace
    assert draft.total_minor == expected_total(5)

    stamped_in_p = START + WEEK - timedelta(minutes=10)
    assert (
        late(
            subscription,
            "late-30",
            sent_at=START + WEEK + timedelta(minutes=30),
            stamped=stamped_in_p,
        )
        == 1
    )
    # Not final yet at 59 minutes; final at 60.
    billing.run_billing_cycle(now=START + WEEK + timedelta(minutes=59))
    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.DRAFT
    billing.run_billing_cycle(now=START + WEEK + grace)
    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.ISSUED
    assert draft.total_minor == expected_total(6)
    assert draft.lines.get(kind="usage").consumed_units == 6
    assert draft.number == f"INV-{(START + WEEK).year}-000001"
    assert draft.issued_at == START + WEEK + grace

    with pytest.raises(InvalidEvents) as refused:
        late(
            subscription,
            "late-61",
            sent_at=START + WEEK + timedelta(minutes=61),
            stamped=stamped_in_p,
        )
    assert refused.value.errors[0]["code"] == "PERIOD_ALREADY_INVOICED"
    # Only ever one invoice for the period.
    assert subscription.invoices.count() == 1


@pytest.mark.django_db
def test_the_next_period_starts_at_the_period_end_during_the_grace_period(grace):
    subscription = weekly(calls=0)
    billing.run_billing_cycle(now=START + WEEK + timedelta(minutes=1))
    subscription.refresh_from_db()
    assert subscription.current_period_start == START + WEEK
    # An event of the new period is billed in the new period, not in the draft.
    late(
        subscription,
        "next-1",
        sent_at=START + WEEK + timedelta(minutes=2),
        stamped=START + WEEK + timedelta(minutes=1),
    )
    billing.run_billing_cycle(now=START + 2 * WEEK + grace)
    first, second = subscription.invoices.order_by("period_index")
    assert (first.total_minor, second.total_minor) == (expected_total(0), expected_total(1))
    assert first.status == second.status == InvoiceStatus.ISSUED
    assert [first.number, second.number] == ["INV-2026-000001", "INV-2026-000002"]


@pytest.mark.django_db
def test_a_product_can_override_the_grace_period(grace):
    subscription = weekly(calls=1)
    subscription.product.grace_period_minutes = 0
    subscription.product.save(update_fields=["grace_period_minutes"])
    billing.run_billing_cycle(now=START + WEEK)
    [invoice] = subscription.invoices.all()
    assert invoice.status == InvoiceStatus.ISSUED


@pytest.mark.django_db(transaction=True)
def test_events_racing_the_finalization_are_on_the_final_invoice_or_refused(grace):
    subscription = weekly(calls=5)
    billing.run_billing_cycle(now=START + WEEK)
    finalize_at = START + WEEK + grace
    accepted: list[str] = []
    refused: list[str] = []
    sending = threading.Event()

    def ingest_in_batches():
        # Batches keep coming until one is refused: the finalization happens while they come.
        try:
            for n in range(2000):
                batch = [
                    event(
                        f"race-{n}-{i}",
                        subscription.customer_id,
                        "api.call",
                        timestamp=START + WEEK - timedelta(hours=1),
                    )
                    for i in range(10)
                ]
                try:
                    ingest_events(batch, now=finalize_at)
                    accepted.extend(e["event_id"] for e in batch)
                except InvalidEvents:
                    refused.extend(e["event_id"] for e in batch)
                    break
                if n == 3:
                    sending.set()
        finally:
            sending.set()
            connection.close()

    sender = threading.Thread(target=ingest_in_batches)
    sender.start()
    sending.wait(timeout=30)
    # The finalization alone: the cycle's roll-up first would drain the batches as they come.
    billing.finalize_due_drafts(now=finalize_at, batch_size=100)
    sender.join()
    [invoice] = Invoice.objects.filter(subscription=subscription)
    assert invoice.status == InvoiceStatus.ISSUED
    consumed = invoice.lines.get(kind="usage").consumed_units
    # Every acknowledged event is on the final invoice, once; every other one was refused.
    assert consumed == 5 + len(accepted)
    assert len(accepted) >= 40 and len(refused) == 10


@pytest.mark.django_db(transaction=True)
def test_concurrent_finalizations_number_invoices_without_gaps(grace):
    meter = make_meter("Calls", "api.call", now=START)
    product = make_product([(meter, "1", 0)], now=START, fixed_price=FEE, interval="Week")
    subscriptions = [subscribe(product, now=START) for _ in range(12)]
    billing.run_billing_cycle(now=START + WEEK)
    errors = []

    def finalize():
        try:
            billing.finalize_due_drafts(now=START + WEEK + grace, batch_size=1)
        except Exception as exc:  # pragma: no cover - the assertion shows it
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=finalize) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    numbers = sorted(
        Invoice.objects.filter(subscription__in=subscriptions).values_list("number", flat=True)
    )
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 13)]
