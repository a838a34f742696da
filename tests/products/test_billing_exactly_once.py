"""Exactly one invoice per subscription and period: re-runs, concurrent runs, crashes, and
events racing a period close."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from events.ingest import InvalidEvents
from events.models import Event
from products import billing
from products.models import Invoice, InvoiceLine, Subscription
from tests.factories import event, ingest_events
from tests.products.factories import make_meter, make_product, send_usage, subscribe
from tests.utils import manage_py

START = datetime(2026, 3, 1, tzinfo=UTC)
WEEK = timedelta(days=7)


def weekly_setup(count: int):
    calls = make_meter("Calls", "api.call", now=START)
    product = make_product([(calls, "2", 3)], now=START, fixed_price=100, interval="Week")
    subscriptions = [subscribe(product, now=START) for _ in range(count)]
    for n, subscription in enumerate(subscriptions):
        send_usage(subscription, "api.call", [{}] * (n + 5), start=START, prefix=f"s{n}")
    return subscriptions


def expected_total(n: int) -> int:
    return 100 + (n + 5 - 3) * 2


@pytest.mark.django_db
def test_running_bill_twice_issues_one_invoice_per_period():
    subscriptions = weekly_setup(3)
    as_of = (START + 2 * WEEK + timedelta(minutes=1)).isoformat()
    first, second = io.StringIO(), io.StringIO()
    call_command("bill", as_of=as_of, stdout=first)
    call_command("bill", as_of=as_of, stdout=second)
    assert "Issued 6 invoices" in first.getvalue()
    assert "Issued 0 invoices" in second.getvalue()
    assert Invoice.objects.count() == 3 * 2  # two weekly periods each, once
    for n, subscription in enumerate(subscriptions):
        first, second = subscription.invoices.order_by("period_index")
        assert first.total_minor == expected_total(n)
        assert second.total_minor == 100  # fixed fee only: no usage in week two
        subscription.refresh_from_db()
        assert subscription.current_period_start == START + 2 * WEEK


@pytest.mark.django_db(transaction=True)
def test_two_processes_billing_at_once_issue_each_invoice_once():
    subscriptions = weekly_setup(12)
    as_of = (START + 3 * WEEK).isoformat()
    runs = [manage_py("bill", "--as-of", as_of) for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    issued = sum(int(out.split("Issued ")[1].split()[0]) for out in outputs)
    assert issued == 12 * 3
    assert Invoice.objects.count() == 12 * 3
    for n, subscription in enumerate(subscriptions):
        totals = list(
            subscription.invoices.order_by("period_index").values_list("total_minor", flat=True)
        )
        assert totals == [expected_total(n), 100, 100]


@pytest.mark.django_db(transaction=True)
def test_a_crash_mid_run_leaves_no_partial_invoice_and_a_rerun_completes(monkeypatch):
    subscriptions = weekly_setup(6)
    real_write = billing._write_invoices
    calls = {"n": 0}

    def crash_in_second_batch(drafts, **arguments):
        calls["n"] += 1
        invoices = real_write(drafts, **arguments)
        if calls["n"] == 2:  # after the batch's invoices and lines are written, before commit
            raise RuntimeError("worker died")
        return invoices

    monkeypatch.setattr(billing, "_write_invoices", crash_in_second_batch)
    with pytest.raises(RuntimeError):
        billing.run_billing_cycle(now=START + WEEK, batch_size=2)
    assert Invoice.objects.count() == 2  # the first batch committed, the second rolled back
    assert InvoiceLine.objects.filter(invoice__in=Invoice.objects.all()).count() == 2 * 2
    assert InvoiceLine.objects.count() == 2 * 2  # nothing orphaned from the failed batch
    assert Subscription.objects.filter(period_index=1).count() == 2  # nor any advanced

    monkeypatch.setattr(billing, "_write_invoices", real_write)
    billing.run_billing_cycle(now=START + WEEK, batch_size=2)
    assert Invoice.objects.count() == 6
    for n, subscription in enumerate(subscriptions):
        [invoice] = subscription.invoices.all()
        assert invoice.total_minor == expected_total(n)
        assert invoice.lines.count() == 2


@pytest.mark.django_db
def test_a_late_event_for_an_invoiced_period_is_refused_and_nothing_is_stored():
    [subscription] = weekly_setup(1)
    billing.run_billing_cycle(now=START + WEEK)
    customer = subscription.customer_id
    late = event("late-1", customer, "api.call", timestamp=START + timedelta(days=2))
    fresh = event("fresh-1", customer, "api.call", timestamp=START + WEEK + timedelta(hours=1))
    before = Event.objects.count()
    with pytest.raises(InvalidEvents) as refused:
        ingest_events([fresh, late], now=START + WEEK + timedelta(hours=2))
    assert [e["code"] for e in refused.value.errors] == ["PERIOD_ALREADY_INVOICED"]
    assert refused.value.errors[0]["field"] == "events[1].timestamp"
    assert Event.objects.count() == before
    # The same event for the open period is fine; so is another customer's late event.
    assert ingest_events([fresh], now=START + WEEK + timedelta(hours=2)) == 1
    other = event("late-2", "cus_someone_else", "api.call", timestamp=START + timedelta(days=2))
    assert ingest_events([other], now=START + WEEK + timedelta(hours=2)) == 1


@pytest.mark.django_db(transaction=True)
def test_events_racing_a_period_close_are_either_billed_or_refused():
    [subscription] = weekly_setup(1)
    customer = subscription.customer_id
    close_at = START + WEEK + timedelta(seconds=1)
    accepted: list[str] = []
    sending = threading.Event()

    def ingest_in_batches():
        try:
            for n in range(40):
                batch = [
                    event(
                        f"race-{n}-{i}", customer, "api.call", timestamp=START + timedelta(days=6)
                    )
                    for i in range(10)
                ]
                try:
                    ingest_events(batch, now=close_at)
                    accepted.extend(e["event_id"] for e in batch)
                except InvalidEvents:
                    pass
                if n == 3:
                    sending.set()  # close the period while batches keep coming
        finally:
            connection.close()

    sender = threading.Thread(target=ingest_in_batches)
    sender.start()
    sending.wait(timeout=30)
    billing.run_billing_cycle(now=close_at)
    sender.join()
    [invoice] = subscription.invoices.all()
    usage_line = invoice.lines.get(kind="usage")
    # 5 events from the setup plus every racing event that was acknowledged: none lost.
    assert usage_line.consumed_units == 5 + len(accepted)
