"""Emitting webhook events: called by the code that makes a change, inside its transaction.

Each call asks once which enabled endpoints want the event type; with none it writes nothing.
Otherwise it writes the events and one delivery per endpoint in the caller's transaction, and
queues the sending for when that transaction commits: a change that rolls back sends nothing.

The serializers are imported inside the functions: credits.api and products.api import the
modules (credits/ledger.py, products/billing.py) that call this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch, Q, prefetch_related_objects
from django.utils import timezone
from rest_framework import serializers

from billing_site.jsonutil import exact_dumps
from credits.models import CreditBalance, LedgerEntry, ProductCreditEntitlement, TransactionType
from products.models import Invoice, Subscription, SubscriptionStatus
from webhooks.delivery import queue_after_commit
from webhooks.models import Delivery, EventType, WebhookEndpoint, WebhookEvent

# Every ledger entry sends one credit.* event. Dodo has no event type for refunds and automatic
# top-ups; both add credits, so they go out as credit.added (data.transaction_type tells which).
LEDGER_EVENT_TYPES = {
    TransactionType.CREDIT_ADDED: EventType.CREDIT_ADDED,
    TransactionType.CREDIT_DEDUCTED: EventType.CREDIT_DEDUCTED,
    TransactionType.CREDIT_EXPIRED: EventType.CREDIT_EXPIRED,
    TransactionType.CREDIT_ROLLED_OVER: EventType.CREDIT_ROLLED_OVER,
    TransactionType.ROLLOVER_FORFEITED: EventType.CREDIT_ROLLOVER_FORFEITED,
    TransactionType.OVERAGE_CHARGED: EventType.CREDIT_OVERAGE_CHARGED,
    TransactionType.OVERAGE_RESET: EventType.CREDIT_OVERAGE_RESET,
    TransactionType.MANUAL_ADJUSTMENT: EventType.CREDIT_MANUAL_ADJUSTMENT,
    TransactionType.REFUND: EventType.CREDIT_ADDED,
    TransactionType.AUTO_TOP_UP: EventType.CREDIT_ADDED,
}


def _timestamp(moment: datetime) -> str:
    return serializers.DateTimeField().to_representation(moment)


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


def subscribed_endpoint_ids(event_type: str) -> list[int]:
    """The enabled endpoints that want `event_type`: one small query, the cost of an emission
    when nobody listens."""
    return list(
        WebhookEndpoint.objects.filter(enabled=True)
        .filter(Q(event_types=[]) | Q(event_types__contains=[event_type]))
        .values_list("id", flat=True)
    )


def emit(
    event_type: str, payloads: Iterable[dict], *, endpoint_ids: list[int] | None = None
) -> int:
    """Write one event per payload and a delivery per subscribed endpoint, and send them after
    the transaction commits. Returns the number of events written (0 when nobody listens)."""
    if endpoint_ids is None:
        endpoint_ids = subscribed_endpoint_ids(event_type)
    payloads = list(payloads)
    if not endpoint_ids or not payloads:
        return 0
    now = timezone.now()
    envelope = {
        "business_id": settings.BUSINESS_ID,
        "type": event_type,
        "timestamp": _timestamp(now),
    }
    # The caller's transaction (without a savepoint: no extra queries), or its own outside one.
    with transaction.atomic(savepoint=False):
        events = WebhookEvent.objects.bulk_create(
            WebhookEvent(
                event_type=event_type, body=exact_dumps({**envelope, "data": data}), created_at=now
            )
            for data in payloads
        )
        deliveries = Delivery.objects.bulk_create(
            Delivery(event=event, endpoint_id=endpoint_id, next_attempt_at=now, created_at=now)
            for event in events
            for endpoint_id in endpoint_ids
        )
        queue_after_commit([delivery.pk for delivery in deliveries])
    return len(events)


# --- credits -----------------------------------------------------------------------------------


def ledger_entry_recorded(entry: LedgerEntry) -> None:
    """credit.<type> for a new ledger entry, its data the entry as the credits API shows it."""
    event_type = LEDGER_EVENT_TYPES.get(entry.transaction_type)
    if event_type is None:
        return
    endpoint_ids = subscribed_endpoint_ids(event_type)
    if endpoint_ids:
        from credits.api import entry_data

        emit(event_type, [entry_data(entry)], endpoint_ids=endpoint_ids)


def balance_deducted(balance: CreditBalance, *, balance_before: Decimal) -> None:
    """credit.balance_low when a deduction took the balance from at or above a subscription's
    threshold (low_balance_threshold_percent of the credits_amount its product grants) to below
    it. Only the crossing fires, so a balance already below stays quiet until it is topped up."""
    balance_after = balance.balance
    if balance_after >= balance_before:
        return
    endpoint_ids = subscribed_endpoint_ids(EventType.CREDIT_BALANCE_LOW)
    if not endpoint_ids:
        return
    subscriptions = Subscription.objects.filter(
        customer_id=balance.customer_id, status=SubscriptionStatus.ACTIVE
    )
    links = (
        ProductCreditEntitlement.objects.filter(
            credit_entitlement_id=balance.credit_entitlement_id,
            low_balance_threshold_percent__isnull=False,
            product__subscriptions__in=subscriptions,
        )
        .select_related("credit_entitlement", "product")
        .prefetch_related(Prefetch("product__subscriptions", queryset=subscriptions))
        .distinct()
    )
    payloads = []
    for link in links:
        threshold = link.credits_amount * link.low_balance_threshold_percent / 100
        if not balance_after < threshold <= balance_before:
            continue
        for subscription in link.product.subscriptions.all():
            payloads.append(
                {
                    "customer_id": balance.customer_id,
                    "credit_entitlement_id": balance.credit_entitlement_id,
                    "credit_entitlement_name": link.credit_entitlement.name,
                    "subscription_id": subscription.subscription_id,
                    "brand_id": settings.BUSINESS_ID,
                    "available_balance": _decimal_text(balance_after),
                    "subscription_credits_amount": _decimal_text(link.credits_amount),
                    "threshold_amount": _decimal_text(threshold),
                    "threshold_percent": link.low_balance_threshold_percent,
                }
            )
    emit(EventType.CREDIT_BALANCE_LOW, payloads, endpoint_ids=endpoint_ids)


# --- billing -----------------------------------------------------------------------------------


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
    from products.api import invoice_data

    prefetch_related_objects(invoices, "lines")
    emit(
        EventType.INVOICE_CREATED,
        [invoice_data(invoice) for invoice in invoices],
        endpoint_ids=endpoint_ids,
    )


def subscriptions_renewed(subscriptions: list[Subscription]) -> None:
    """subscription.renewed for each subscription that moved to its next period; data is the
    subscription as GET /api/subscriptions/{id} shows it (read back, so in its new period), plus
    Dodo's webhook-only `past_due_ends_at` and `payment_id` (null: no payments here).

    Call it inside the transaction that advanced them. A constant number of queries however many
    subscriptions: one when nobody listens, at most eight otherwise.
    """
    if not subscriptions:
        return
    endpoint_ids = subscribed_endpoint_ids(EventType.SUBSCRIPTION_RENEWED)
    if not endpoint_ids:
        return
    from products.api import subscription_data

    ids = [subscription.pk for subscription in subscriptions]
    # The relations subscription_data reads, fetched in a fixed number of queries.
    fresh = Subscription.objects.select_related("customer", "product").prefetch_related(
        "product__product_meters__meter", "product__credit_entitlements__credit_entitlement"
    )
    by_id = fresh.in_bulk(ids)
    emit(
        EventType.SUBSCRIPTION_RENEWED,
        [
            {**subscription_data(by_id[pk]), "past_due_ends_at": None, "payment_id": None}
            for pk in ids
        ],
        endpoint_ids=endpoint_ids,
    )
