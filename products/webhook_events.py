"""The billing cycle's webhook events: invoice.created and the subscription events.

products/billing.py calls these inside the transaction that closed the periods; the payloads are
the API's own representations (products/wire.py), handed to the generic outbox.
"""

from __future__ import annotations

from django.db.models import prefetch_related_objects

from products.models import Invoice, Subscription
from products.wire import (
    SUBSCRIPTION_PREFETCH,
    SUBSCRIPTION_RELATED,
    invoice_data,
    subscription_data,
)
from webhooks.emit import emit, subscribed_endpoint_ids
from webhooks.models import EventType


def invoices_created(invoices: list[Invoice]) -> None:
    """invoice.created for each invoice, its data the invoice as GET /api/invoices/{id} shows it.

    Call it inside the transaction that wrote the invoices. A constant number of queries however
    many invoices: one when nobody listens, four otherwise.
    """
    if not invoices:
        return
    endpoint_ids = subscribed_endpoint_ids(EventType.INVOICE_CREATED)
    if not endpoint_ids:
        return
    prefetch_related_objects(invoices, "lines")
    emit(
        EventType.INVOICE_CREATED,
        [invoice_data(invoice) for invoice in invoices],
        endpoint_ids=endpoint_ids,
    )


def invoices_finalized(invoices: list[Invoice]) -> None:
    """invoice.finalized (an extension type) for invoices whose numbers are now frozen."""
    invoice_changed(EventType.INVOICE_FINALIZED, invoices)


def invoice_changed(event_type: str, invoices: list[Invoice]) -> None:
    """An invoice lifecycle event (invoice.finalized, .paid, .voided), data as the API shows it."""
    if not invoices:
        return
    endpoint_ids = subscribed_endpoint_ids(event_type)
    if not endpoint_ids:
        return
    prefetch_related_objects(invoices, "lines")
    emit(event_type, [invoice_data(invoice) for invoice in invoices], endpoint_ids=endpoint_ids)


def subscriptions_renewed(subscriptions: list[Subscription]) -> None:
    """subscription.renewed for each subscription that moved to its next period; see
    `subscriptions_changed`."""
    subscriptions_changed(EventType.SUBSCRIPTION_RENEWED, subscriptions)


def subscriptions_changed(event_type: str, subscriptions: list[Subscription]) -> None:
    """A subscription event (renewed, plan_changed, cancelled) for each subscription; data is
    the subscription as GET /api/subscriptions/{id} shows it (read back, so in its new state),
    plus Dodo's webhook-only `past_due_ends_at` and `payment_id` (null: no payments here).

    Call it inside the transaction that changed them. A constant number of queries however many
    subscriptions: one when nobody listens, at most nine otherwise.
    """
    if not subscriptions:
        return
    endpoint_ids = subscribed_endpoint_ids(event_type)
    if not endpoint_ids:
        return
    ids = [subscription.pk for subscription in subscriptions]
    # The relations subscription_data reads, fetched in a fixed number of queries.
    fresh = Subscription.objects.select_related(*SUBSCRIPTION_RELATED).prefetch_related(
        *SUBSCRIPTION_PREFETCH
    )
    by_id = fresh.in_bulk(ids)
    emit(
        event_type,
        [
            {**subscription_data(by_id[pk]), "past_due_ends_at": None, "payment_id": None}
            for pk in ids
        ],
        endpoint_ids=endpoint_ids,
    )
