"""The credit.* webhook events: one per ledger entry, and credit.balance_low on a crossing.

credits/ledger.py calls these inside the transaction that changed the balance; the payloads are
the credits API's own representations (credits/wire.py), handed to the generic outbox.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db.models import Prefetch

from billing_site.wire import decimal_text
from credits.models import CreditBalance, LedgerEntry, ProductCreditEntitlement, TransactionType
from credits.wire import entry_data
from products.models import Subscription, SubscriptionStatus
from webhooks.emit import emit, subscribed_endpoint_ids
from webhooks.models import EventType

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


def ledger_entry_recorded(entry: LedgerEntry) -> None:
    """credit.<type> for a new ledger entry, its data the entry as the credits API shows it."""
    event_type = LEDGER_EVENT_TYPES.get(TransactionType(entry.transaction_type))
    if event_type is None:
        return
    endpoint_ids = subscribed_endpoint_ids(event_type)
    if endpoint_ids:
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
        percent = link.low_balance_threshold_percent
        assert percent is not None  # the query keeps only links with a threshold
        threshold = link.credits_amount * percent / 100
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
                    "available_balance": decimal_text(balance_after),
                    "subscription_credits_amount": decimal_text(link.credits_amount),
                    "threshold_amount": decimal_text(threshold),
                    "threshold_percent": link.low_balance_threshold_percent,
                }
            )
    emit(EventType.CREDIT_BALANCE_LOW, payloads, endpoint_ids=endpoint_ids)
