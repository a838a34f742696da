"""Moving the billing date (products/plan_changes.py `move_billing_date`) against concurrent
ingestion and a concurrent billing cycle: every event on exactly one invoice, one invoice per
period. A 31.00 monthly fee, API calls at 0.02 each beyond 100 free per period."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from products import plan_changes, services
from products.billing import run_billing_cycle
from products.models import Invoice, LineKind, Subscription
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_meter, make_product

START = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 11, tzinfo=UTC)
MOVED = datetime(2026, 1, 20, tzinfo=UTC)
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def subscription() -> Subscription:
    calls = make_meter("API calls", "api.call", now=START)
    product = make_product([(calls, "2", 100)], fixed_price=3100, now=START)
    return services.create_subscription(customer=make_customer(), product=product, now=START)


def test_events_racing_the_move_are_each_on_exactly_one_invoice(subscription):
    customer = subscription.customer_id
    accepted: list[int] = []
    sending = threading.Event()

    def ingest_in_batches():
        try:
            for n in range(200):
                batch = [
                    event(f"race-{n}-{name}", customer, "api.call", timestamp=at)
                    for name, at in (
                        ("before", MOVED - timedelta(microseconds=1)),
                        ("at", MOVED),
                        ("after", MOVED + timedelta(microseconds=1)),
                    )
                ]
                ingest_events(batch, now=MOVED + timedelta(seconds=1))
                accepted.append(n)
                if n == 3:
                    sending.set()  # move the date while batches keep coming
        finally:
            connection.close()

    sender = threading.Thread(target=ingest_in_batches)
    sender.start()
    sending.wait(timeout=30)
    plan_changes.move_billing_date(subscription.pk, to=MOVED, now=NOW)
    sender.join()
    assert len(accepted) == 200  # nothing is final: nothing is refused
    [moved] = run_billing_cycle(now=MOVED)
    assert (moved.period_start, moved.period_end) == (START, MOVED)
    assert moved.lines.get(kind=LineKind.USAGE).consumed_units == 200  # the "before" events
    assert moved.total_minor == 3100 + (200 - 100) * 2
    [following] = run_billing_cycle(now=datetime(2026, 2, 20, tzinfo=UTC))
    assert (following.period_start, following.period_end) == (
        MOVED,
        datetime(2026, 2, 20, tzinfo=UTC),
    )
    assert following.lines.get(kind=LineKind.USAGE).consumed_units == 400


def test_a_move_racing_the_close_of_the_old_period_bills_it_once(subscription):
    ingest_events(
        [
            event(
                f"jan-{i}",
                subscription.customer_id,
                "api.call",
                timestamp=datetime(2026, 1, 15, tzinfo=UTC),
            )
            for i in range(150)
        ],
        now=datetime(2026, 1, 20, tzinfo=UTC),
    )
    due = datetime(2026, 2, 1, 0, 0, 5, tzinfo=UTC)  # the old period ended 5 s ago
    errors: list[Exception] = []

    def bill():
        try:
            run_billing_cycle(now=due)
        except Exception as error:  # noqa: BLE001 - collected and checked below
            errors.append(error)
        finally:
            connection.close()

    biller = threading.Thread(target=bill)
    biller.start()
    plan_changes.move_billing_date(subscription.pk, to=datetime(2026, 2, 15, tzinfo=UTC), now=due)
    biller.join()
    assert errors == []
    # Whichever came first, the old period is closed once at its old end, and the move applies
    # to the period after it.
    [january] = Invoice.objects.all()
    assert (january.period_start, january.period_end) == (START, datetime(2026, 2, 1, tzinfo=UTC))
    assert january.total_minor == 3100 + (150 - 100) * 2
    subscription.refresh_from_db()
    assert (subscription.current_period_start, subscription.current_period_end) == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 2, 15, tzinfo=UTC),
    )
    [short] = run_billing_cycle(now=datetime(2026, 2, 15, tzinfo=UTC))
    assert (short.period_start, short.total_minor) == (datetime(2026, 2, 1, tzinfo=UTC), 3100)
