"""Where a customer stands in the current period, per subscription and meter: usage so far, free
units left, what it costs so far, credits left, and the alert thresholds set on it.

Read for `GET /customers/{id}/usage` (an application gating work) and by the alert check, so it
must stay cheap: one usage query per meter (rollups plus the raw tail, meters/usage.py) and the
invoice's own charge rule for the amount; nothing is locked or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing_site.periods import Period
from credits.models import CreditBalance
from meters.models import Meter
from meters.usage import Usage, meter_usage, usage_by_customer
from portal.models import UsageAlert
from products.billing import LineDraft, trial_usage_line, usage_line
from products.models import ProductMeter, Subscription, SubscriptionStatus


@dataclass(frozen=True)
class MeterStanding:
    subscription: Subscription
    product_meter: ProductMeter
    period: Period
    usage: Usage
    line: LineDraft  # as the meter's invoice line would read if the period closed now
    credits_left: Decimal | None  # the balance of the entitlement the meter is billed in
    alerts: list[UsageAlert]

    @property
    def free_units_left(self) -> Decimal:
        threshold = Decimal(self.product_meter.free_threshold)
        return max(threshold - max(self.usage.quantity, Decimal(0)), Decimal(0))


def current_period(subscription: Subscription) -> Period:
    return subscription.period(subscription.period_index)


def _usage(
    meter: Meter, start: datetime, end: datetime, customer_ids: set[str]
) -> dict[str, Usage]:
    if len(customer_ids) == 1:  # the gating endpoint: one customer, no grouping to pay for
        [only] = customer_ids
        return {only: meter_usage(meter, only, start, end)}
    return usage_by_customer(meter, start, end, customer_ids)


def meter_standings(
    subscriptions: list[Subscription], *, meter_id: str | None = None
) -> list[MeterStanding]:
    """Every (active subscription, attached meter) of `subscriptions`, or only `meter_id`'s."""
    active = [s for s in subscriptions if s.status == SubscriptionStatus.ACTIVE]
    product_meters = ProductMeter.objects.filter(
        product_id__in={s.product_id for s in active}
    ).select_related("meter")
    if meter_id is not None:
        product_meters = product_meters.filter(meter_id=meter_id)
    by_product: dict[str, list[ProductMeter]] = {}
    for product_meter in product_meters.order_by("product_id", "position"):
        by_product.setdefault(product_meter.product_id, []).append(product_meter)
    alerts: dict[tuple[str, str], list[UsageAlert]] = {}
    for alert in UsageAlert.objects.filter(subscription__in=active).order_by(
        "threshold_kind", "threshold"
    ):
        alerts.setdefault((alert.subscription_id, alert.meter_id), []).append(alert)
    balances = {}
    if any(pm.credit_entitlement_id for pms in by_product.values() for pm in pms):
        balances = {
            (b.credit_entitlement_id, b.customer_id): b.balance
            for b in CreditBalance.objects.filter(customer_id__in={s.customer_id for s in active})
        }
    # One usage query per meter and period window, however many subscriptions share it (the
    # alert check reads every subscription with a pending alert every few seconds).
    windows: dict[tuple[str, datetime, datetime], set[str]] = {}
    meters = {}
    for subscription in active:
        period = current_period(subscription)
        for product_meter in by_product.get(subscription.product_id, []):
            meters[product_meter.meter_id] = product_meter.meter
            key = (product_meter.meter_id, period.start, period.end)
            windows.setdefault(key, set()).add(subscription.customer_id)
    usage = {
        key: _usage(meters[key[0]], *key[1:], customer_ids) for key, customer_ids in windows.items()
    }
    standings = []
    for subscription in active:
        period = current_period(subscription)
        for product_meter in by_product.get(subscription.product_id, []):
            found = usage[product_meter.meter_id, period.start, period.end]
            used = found.get(subscription.customer_id, Usage.zero())
            if subscription.is_trial(period.index):
                line = trial_usage_line(product_meter, used)
            else:
                line = usage_line(product_meter, used)
            credits_left = None
            if product_meter.credit_entitlement_id is not None:
                line = LineDraft(**{**line.__dict__, "amount_minor": 0, "unit_price": None})
                credits_left = balances.get(
                    (product_meter.credit_entitlement_id, subscription.customer_id), Decimal(0)
                )
            standings.append(
                MeterStanding(
                    subscription=subscription,
                    product_meter=product_meter,
                    period=period,
                    usage=used,
                    line=line,
                    credits_left=credits_left,
                    alerts=alerts.get((subscription.pk, product_meter.meter_id), []),
                )
            )
    return standings
