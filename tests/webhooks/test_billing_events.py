"""invoice.created and subscription.renewed, as the billing cycle will call them: whole batches,
the data as the API shows it, in a fixed number of queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from dodopayments import DodoPayments
from dodopayments.types import SubscriptionRenewedWebhookEvent

from billing_site.jsonutil import exact_loads
from products.models import Invoice, InvoiceLine, LineKind, Subscription
from products.webhook_events import invoices_created, subscriptions_renewed
from tests.products.factories import make_meter, make_product, subscribe
from tests.webhooks.factories import make_endpoint
from webhooks.models import Delivery, WebhookEvent

START = datetime(2026, 3, 2, tzinfo=UTC)
NOBODY = "http://127.0.0.1:9/hooks"  # an endpoint whose deliveries these tests never send
pytestmark = pytest.mark.django_db


@pytest.fixture
def subscription():
    calls = make_meter("API calls", "api.call", now=START)
    product = make_product([(calls, "0.5", 10)], now=START, fixed_price=1999, interval="Week")
    return subscribe(product, now=START)


def _invoices(subscription: Subscription, count: int, first_period: int = 0) -> list[Invoice]:
    """Invoices as billing writes them: one insert for the invoices, one for their lines."""
    invoices = Invoice.objects.bulk_create(
        Invoice(
            subscription=subscription,
            customer_id=subscription.customer_id,
            period_index=index,
            period_start=START + timedelta(weeks=index),
            period_end=START + timedelta(weeks=index + 1),
            currency="USD",
            total_minor=1999 + index,
        )
        for index in range(first_period, first_period + count)
    )
    InvoiceLine.objects.bulk_create(
        line
        for invoice in invoices
        for line in (
            InvoiceLine(
                invoice=invoice,
                position=0,
                kind=LineKind.FIXED_FEE,
                description="fee",
                amount_minor=1999,
            ),
            InvoiceLine(
                invoice=invoice,
                position=1,
                kind=LineKind.USAGE,
                description="calls",
                consumed_units="12.5",
                free_threshold=10,
                free_units=10,
                chargeable_units="2.5",
                unit_price="0.4",
                amount_minor=invoice.total_minor - 1999,
            ),
        )
    )
    return invoices


def test_invoice_created_carries_the_invoice_as_the_api_shows_it(
    subscription, receiver, api, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(receiver.url, "invoice.created")
    invoices = _invoices(subscription, 3)
    with django_capture_on_commit_callbacks(execute=True):
        invoices_created(invoices)

    bodies = receiver.bodies(endpoint.secret)
    assert [body["type"] for body in bodies] == ["invoice.created"] * 3
    for invoice, body in zip(invoices, bodies, strict=True):
        shown = exact_loads(api.get(f"/api/invoices/{invoice.invoice_id}").content)
        assert body["data"] == shown
    assert bodies[1]["data"]["lines"][1]["chargeable_units"] == "2.5"


def test_subscription_renewed_carries_the_subscription_as_the_api_shows_it(
    subscription, receiver, api, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(receiver.url, "subscription.renewed")
    with django_capture_on_commit_callbacks(execute=True):
        subscriptions_renewed([subscription])

    [request] = receiver.requests
    body = request.verified(endpoint.secret)
    shown = exact_loads(api.get(f"/api/subscriptions/{subscription.subscription_id}").content)
    assert body["data"] == {**shown, "past_due_ends_at": None, "payment_id": None}
    client = DodoPayments(bearer_token="unused", base_url="http://127.0.0.1:1")
    event = client.webhooks.unwrap(request.body, headers=request.headers, key=endpoint.secret)
    assert isinstance(event, SubscriptionRenewedWebhookEvent)
    assert event.data.subscription_id == subscription.subscription_id


def _queries(function, items) -> int:
    with CaptureQueriesContext(connection) as queries:
        function(items)
    return len(queries.captured_queries)


def test_500_invoices_cost_as_many_queries_as_5(subscription, django_capture_on_commit_callbacks):
    make_endpoint(NOBODY, "invoice.created")
    make_endpoint(NOBODY)
    few, many = _invoices(subscription, 5), _invoices(subscription, 500, first_period=5)
    with django_capture_on_commit_callbacks() as callbacks:
        assert _queries(invoices_created, few) == _queries(invoices_created, many) == 4
    assert WebhookEvent.objects.count() == 505
    assert Delivery.objects.count() == 2 * 505
    assert len(callbacks) == 2  # one per call, queueing every delivery of the batch


def test_renewals_cost_the_same_queries_for_2_or_20_subscriptions(subscription):
    make_endpoint(NOBODY, "subscription.renewed")
    product = subscription.product
    few = [subscribe(product, now=START) for _ in range(2)]
    many = [subscribe(product, now=START) for _ in range(20)]
    queries = _queries(subscriptions_renewed, few)
    assert queries == _queries(subscriptions_renewed, many) <= 8
    assert Delivery.objects.count() == 22


def test_with_no_endpoint_a_batch_costs_one_query_and_writes_nothing(subscription):
    make_endpoint(NOBODY, "credit.added")  # wants neither
    make_endpoint(NOBODY, enabled=False)
    assert _queries(invoices_created, _invoices(subscription, 50)) == 1
    assert _queries(subscriptions_renewed, [subscription]) == 1
    assert (WebhookEvent.objects.count(), Delivery.objects.count()) == (0, 0)
    assert _queries(invoices_created, []) == 0


@pytest.mark.django_db(transaction=True)
def test_a_billing_run_announces_each_invoice_and_each_renewal(receiver, monkeypatch):
    """Through run_billing_cycle in batches: one invoice.created per invoice, one
    subscription.renewed per subscription that goes on, none for a batch that rolled back."""
    from products import billing
    from products.services import update_subscription

    endpoint = make_endpoint(
        receiver.url, "invoice.created", "subscription.renewed", "subscription.cancelled"
    )
    calls = make_meter("API calls", "api.call", now=START)
    product = make_product([(calls, "0.5", 10)], now=START, fixed_price=1999, interval="Week")
    subscriptions = [subscribe(product, now=START) for _ in range(5)]
    update_subscription(subscriptions[0], cancel_at_next_billing_date=True)

    real_write = billing._write_invoices

    def crash_in_second_batch(drafts, **arguments):
        invoices = real_write(drafts, **arguments)
        if len(Invoice.objects.all()) > 2:
            raise RuntimeError("worker died")
        return invoices

    monkeypatch.setattr(billing, "_write_invoices", crash_in_second_batch)
    with pytest.raises(RuntimeError):
        billing.run_billing_cycle(now=START + timedelta(weeks=1), batch_size=2)
    first_batch = set(Invoice.objects.values_list("subscription_id", flat=True))
    renewing = first_batch - {subscriptions[0].subscription_id}  # the cancelled one ends
    ending = len(first_batch) - len(renewing)
    assert len(first_batch) == 2
    # Nothing from the rolled-back batch.
    assert len(receiver.requests) == 2 + len(renewing) + ending
    monkeypatch.setattr(billing, "_write_invoices", real_write)
    billing.run_billing_cycle(now=START + timedelta(weeks=1), batch_size=2)

    invoices = receiver.of_type(endpoint.secret, "invoice.created")
    renewed = receiver.of_type(endpoint.secret, "subscription.renewed")
    assert sorted(body["data"]["invoice_id"] for body in invoices) == sorted(
        Invoice.objects.values_list("invoice_id", flat=True)
    )
    assert len(invoices) == 5
    assert first_batch <= {body["data"]["subscription_id"] for body in invoices}
    assert sorted(body["data"]["subscription_id"] for body in renewed) == sorted(
        s.subscription_id for s in subscriptions[1:]
    )
    [cancelled] = receiver.of_type(endpoint.secret, "subscription.cancelled")
    assert cancelled["data"]["subscription_id"] == subscriptions[0].subscription_id
    assert cancelled["data"]["status"] == "cancelled"
    for body in renewed:  # read back after the advance: the new period
        assert body["data"]["previous_billing_date"].startswith(
            (START + timedelta(weeks=1)).date().isoformat()
        )
