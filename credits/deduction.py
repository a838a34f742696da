"""Metered usage billed in credits: convert usage after the free threshold into credits and
deduct them, and the credit side of each billing cycle (final deduction, expiry and rollover,
overage settlement, the next cycle's grants).

Deduction works from a checkpoint per subscription, meter and period (`UsageDeduction`): each run
computes what the period's usage so far is worth in credits, rounded once to the entitlement's
precision, and deducts only the difference from what was already taken, under the checkpoint's
row lock. Runs can repeat or overlap on several workers; usage is deducted exactly once. A run
never counts usage over a shorter window than an earlier run did (the checkpoint's `updated_at`
is the end of the window counted so far), so a worker with an older clock never hands credits
back. Usage is counted up to each grant's expiry before the grant expires, so credits are only
ever taken for usage that happened while they were valid.

Lock order, so that workers never deadlock: checkpoints before balances; a deduction or expiry
transaction holds one checkpoint and one balance at most, and closing a period (which holds
several) takes all its checkpoints first, then its balances in entitlement-id order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction

from billing_site.periods import Period
from credits import ledger
from credits.ledger import ZERO, CreditRules
from credits.models import (
    CreditEntitlement,
    CreditGrant,
    GrantSource,
    ProductCreditEntitlement,
    TransactionType,
    UsageDeduction,
)
from meters.usage import meter_usage
from products.models import ProductMeter, Subscription, SubscriptionStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreditLine:
    """What one credit-billed meter used in a period, for its invoice line."""

    product_meter: ProductMeter
    consumed_units: Decimal
    free_units: Decimal
    chargeable_units: Decimal
    credits_applied: Decimal
    credits_blocked: Decimal
    free_threshold: int | None = None  # the one applied, when not the product's (a short period)


def credit_rules(product_meter: ProductMeter) -> CreditRules:
    """A credit-billed meter's rules: its entitlement with the product's overrides."""
    link = ProductCreditEntitlement.objects.filter(
        product_id=product_meter.product_id,
        credit_entitlement_id=product_meter.credit_entitlement_id,
    ).first()
    assert product_meter.credit_entitlement is not None  # a credit-billed meter
    return CreditRules.of(product_meter.credit_entitlement, link)


def _checkpoint(subscription: Subscription, product_meter: ProductMeter, period: Period):
    try:
        with transaction.atomic():
            UsageDeduction.objects.get_or_create(
                subscription=subscription,
                meter_id=product_meter.meter_id,
                period_index=period.index,
                defaults={
                    "credit_entitlement_id": meter_entitlement_id(product_meter),
                    "updated_at": period.start,  # nothing counted yet
                },
            )
    except IntegrityError:
        pass  # a concurrent run created it
    return UsageDeduction.objects.select_for_update().get(
        subscription=subscription, meter_id=product_meter.meter_id, period_index=period.index
    )


def deduct_meter_usage(
    subscription: Subscription,
    product_meter: ProductMeter,
    period: Period,
    *,
    until: datetime,
    now: datetime,
    free_threshold: int | None = None,
    open_only: bool = False,
) -> CreditLine | None:
    """Bring one meter's deduction for the period up to date with usage in [start, until).

    `free_threshold` overrides the product's (a period that ends early at a plan change).
    With `open_only` (the periodic deduction, which read the period before taking the lock)
    nothing happens (None) once the period is no longer the subscription's open one: a change
    that ended it early closed it at its moment, and counting up to the old end would deduct
    usage of the next plan."""
    rules = credit_rules(product_meter)
    checkpoint = _checkpoint(subscription, product_meter, period)
    if (
        open_only
        and not Subscription.objects.filter(
            pk=subscription.pk, period_index=period.index, status=SubscriptionStatus.ACTIVE
        ).exists()
    ):
        return None
    # An earlier run (or the period's close) already counted usage up to its clock: never count
    # less, or a worker that read the clock (or the open period) before it would give back
    # credits for usage that did happen.
    counted_until = max(until, checkpoint.updated_at)
    usage = meter_usage(
        product_meter.meter, subscription.customer_id, period.start, min(counted_until, period.end)
    )
    free = Decimal(product_meter.free_threshold if free_threshold is None else free_threshold)
    chargeable = max(usage.quantity - free, ZERO)
    units_per_credit = product_meter.meter_units_per_credit
    assert units_per_credit is not None  # set on every credit-billed meter
    credits_due = rules.quantize(chargeable / units_per_credit)
    delta = credits_due - checkpoint.credits_deducted - checkpoint.credits_blocked
    if delta != 0:
        balance = ledger.locked_balance(
            meter_entitlement_id(product_meter), subscription.customer_id, now=now
        )
        reference = ("subscription", subscription.subscription_id)
        if delta > 0:
            result = ledger.deduct(
                balance,
                delta,
                rules=rules,
                now=now,
                description=f"{product_meter.meter.name}: usage converted to credits",
                reference=reference,
            )
            checkpoint.credits_deducted += result.from_balance + result.to_overage
            checkpoint.credits_blocked += result.blocked
        else:
            _give_back(balance, -delta, checkpoint, rules=rules, now=now, reference=reference)
    checkpoint.consumed_units = usage.quantity
    checkpoint.credits_due = credits_due
    checkpoint.updated_at = counted_until
    checkpoint.save()
    return CreditLine(
        product_meter=product_meter,
        consumed_units=usage.quantity,
        free_units=min(max(usage.quantity, ZERO), free),
        chargeable_units=chargeable,
        credits_applied=checkpoint.credits_deducted,
        credits_blocked=checkpoint.credits_blocked,
        free_threshold=free_threshold,
    )


def _give_back(balance, amount: Decimal, checkpoint, *, rules, now, reference) -> None:
    """Usage went down (a negative value, a `last` or `max` meter): return what was taken,
    first from the blocked part, then as a refund grant."""
    from_blocked = min(amount, checkpoint.credits_blocked)
    checkpoint.credits_blocked -= from_blocked
    refund = amount - from_blocked
    if refund > 0:
        ledger.grant(
            balance,
            refund,
            rules=rules,
            now=now,
            source_type=GrantSource.API,
            transaction_type=TransactionType.REFUND,
            description="Usage decreased; credits returned.",
            reference=reference,
        )
        checkpoint.credits_deducted -= refund


def meter_entitlement_id(product_meter: ProductMeter) -> str:
    """The entitlement a credit-billed meter deducts from (credit_meters() keeps only those)."""
    assert product_meter.credit_entitlement_id is not None
    return product_meter.credit_entitlement_id


def credit_meters(subscription: Subscription) -> list[ProductMeter]:
    return [
        pm
        for pm in subscription.product.product_meters.select_related("meter", "credit_entitlement")
        if pm.credit_entitlement_id is not None
    ]


def deduct_subscription(subscription_id: str, *, now: datetime) -> int:
    """One subscription's open-period deduction, each meter in its own transaction."""
    subscription = Subscription.objects.select_related("product").filter(pk=subscription_id).first()
    if subscription is None or subscription.status != SubscriptionStatus.ACTIVE:
        return 0
    if subscription.awaits_finalization:
        # The period before is a draft: its credit close, then this period's grant, come at
        # its finalization; deducting now would draw on a balance still being settled.
        return 0
    if subscription.is_trial(subscription.period_index):
        return 0  # usage in a free trial costs no credits
    period = subscription.period(subscription.period_index)
    meters = credit_meters(subscription)
    links = _links(subscription)
    # Usage is counted up to each expiry before the grant expires, so usage after it never
    # draws on credits that were gone by then, however long since the last run.
    for moment in [*_expiry_moments(subscription, links, before=now), now]:
        for product_meter in meters:
            with transaction.atomic():
                deduct_meter_usage(
                    subscription, product_meter, period, until=moment, now=now, open_only=True
                )
        expire_due_grants(subscription, as_of=moment, now=now)
    return len(meters)


def _expiry_moments(
    subscription: Subscription, links: list[ProductCreditEntitlement], *, before: datetime
) -> list[datetime]:
    """When the customer's live grants of these entitlements expire, up to `before`, in order."""
    moments = CreditGrant.objects.filter(
        balance__customer_id=subscription.customer_id,
        balance__credit_entitlement_id__in=[link.credit_entitlement_id for link in links],
        is_expired=False,
        expires_at__lt=before,  # never null, then
    ).values_list("expires_at", flat=True)
    return sorted({moment for moment in moments if moment is not None})


def run_deductions(*, now: datetime) -> int:
    """Every active subscription with a credit-billed meter, then every grant still past its
    expiry; returns meters brought up to date."""
    subscription_ids = (
        Subscription.objects.filter(
            status=SubscriptionStatus.ACTIVE,
            product__product_meters__credit_entitlement__isnull=False,
        )
        .distinct()
        .values_list("subscription_id", flat=True)
    )
    done = sum(deduct_subscription(sid, now=now) for sid in subscription_ids)
    expire_remaining_grants(now=now)
    return done


def expire_remaining_grants(*, now: datetime) -> int:
    """Expire grants past their time on balances no subscription's deduction looked after:
    credits granted through the API, products that grant credits without billing a meter in
    them, cancelled subscriptions. Each balance in its own transaction; returns the balances.

    Rules (rollover) come from the product of an active subscription of the customer that grants
    this entitlement, else from the entitlement itself.
    """
    due = (
        CreditGrant.objects.filter(is_expired=False, expires_at__lte=now)
        .values_list("balance__credit_entitlement_id", "balance__customer_id")
        .distinct()
    )
    for entitlement_id, customer_id in due:
        link = (
            ProductCreditEntitlement.objects.filter(
                credit_entitlement_id=entitlement_id,
                product__subscriptions__customer_id=customer_id,
                product__subscriptions__status=SubscriptionStatus.ACTIVE,
            )
            .select_related("credit_entitlement")
            .first()
        )
        entitlement = (
            link.credit_entitlement if link else CreditEntitlement.objects.get(pk=entitlement_id)
        )
        with transaction.atomic():
            balance = ledger.locked_balance(entitlement_id, customer_id, now=now)
            ledger.expire_grants(balance, rules=CreditRules.of(entitlement, link), as_of=now)
    return len(due)


def _links(subscription: Subscription) -> list[ProductCreditEntitlement]:
    """The product's entitlements in entitlement-id order, the order their balances are locked."""
    return list(
        ProductCreditEntitlement.objects.filter(product_id=subscription.product_id)
        .select_related("credit_entitlement")
        .order_by("credit_entitlement_id")
    )


def expire_due_grants(subscription: Subscription, *, as_of: datetime, now: datetime) -> None:
    """Expire due grants, each balance in its own transaction (one balance lock at a time)."""
    for link in _links(subscription):
        with transaction.atomic():
            _expire_link(subscription, link, as_of=as_of, now=now)


def _expire_link(
    subscription: Subscription, link: ProductCreditEntitlement, *, as_of: datetime, now: datetime
) -> None:
    """Expire the grants of one of the product's entitlements due by `as_of`, in the caller's
    transaction, under the customer's balance lock."""
    balance = ledger.locked_balance(link.credit_entitlement_id, subscription.customer_id, now=now)
    ledger.expire_grants(balance, rules=CreditRules.of(link.credit_entitlement, link), as_of=as_of)


def grant_period_credits(subscription: Subscription, period: Period, *, now: datetime) -> None:
    """The credits of the product's entitlements for a new period (at its start)."""
    for link in _links(subscription):
        rules = CreditRules.of(link.credit_entitlement, link)
        balance = ledger.locked_balance(
            link.credit_entitlement_id, subscription.customer_id, now=now
        )
        expires_at = (
            period.start + timedelta(days=rules.expires_after_days)
            if rules.expires_after_days is not None
            else None
        )
        ledger.grant(
            balance,
            rules.quantize(link.credits_amount),
            rules=rules,
            now=period.start,
            source_type=GrantSource.SUBSCRIPTION,
            source_id=subscription.subscription_id,
            expires_at=expires_at,
            description=f"Credits for the period starting {period.start.isoformat()}",
        )


@dataclass(frozen=True)
class OverageCharge:
    link: ProductCreditEntitlement
    credits: Decimal
    price_per_unit: Decimal


def close_credit_period(
    subscription: Subscription,
    period: Period,
    *,
    now: datetime,
    threshold_fraction: Decimal | None = None,
) -> tuple[list[CreditLine], list[OverageCharge]]:
    """The credit side of closing a period, inside the billing transaction. A period that
    ends early (a plan change, a pause, a cancellation now) passes the share of the full
    period it covers: each credit meter's free threshold is scaled by it, rounded down to
    whole units, as for meters priced in money; expiries up to its end run, and the overage
    is settled at its end."""
    meters = credit_meters(subscription)
    links = _links(subscription)
    # Every checkpoint first, then every balance in entitlement-id order (see the lock order).
    for product_meter in meters:
        _checkpoint(subscription, product_meter, period)
    for entitlement_id in sorted(
        {link.credit_entitlement_id for link in links} | {meter_entitlement_id(pm) for pm in meters}
    ):
        ledger.locked_balance(entitlement_id, subscription.customer_id, now=now)
    lines: list[CreditLine] = []
    for moment in [*_expiry_moments(subscription, links, before=period.end), period.end]:
        deducted = [
            deduct_meter_usage(
                subscription,
                pm,
                period,
                until=moment,
                now=now,
                free_threshold=(
                    None
                    if threshold_fraction is None
                    else int(pm.free_threshold * threshold_fraction)
                ),
            )
            for pm in meters
        ]
        lines = [line for line in deducted if line is not None]  # never None here
        for link in links:
            _expire_link(subscription, link, as_of=moment, now=now)
    charges = []
    for link in links:
        rules = CreditRules.of(link.credit_entitlement, link)
        balance = ledger.locked_balance(
            link.credit_entitlement_id, subscription.customer_id, now=now
        )
        charged = ledger.settle_overage(
            balance,
            rules=rules,
            now=period.end,
            reference=("subscription", subscription.subscription_id),
        )
        if charged > 0:
            charges.append(OverageCharge(link, charged, rules.price_per_unit or ZERO))
    return lines, charges
