"""What each portal page shows, always of one customer: every query here starts from the session's
customer, so no page can show another's data whatever its URL holds.

The numbers are the API's own: the upcoming invoice (products/invoices.upcoming), the usage
history (products/history), the balances as stored, the events a meter matched (meters/analytics).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet

from billing_site.periods import Period
from credits.models import CreditBalance, LedgerEntry
from meters.analytics import plotly_series, usage_series
from meters.models import Meter
from portal.alerts import crossings_in_current_period
from portal.models import UsageAlert, UsageAlertCrossing
from products import invoices
from products.billing import LineDraft
from products.history import UsagePeriod, usage_history
from products.models import (
    Customer,
    Invoice,
    InvoiceStatus,
    LineKind,
    ProductMeter,
    Subscription,
    SubscriptionStatus,
)

HISTORY_PERIODS = 24
LEDGER_PAGE_SIZE = 50


def subscriptions_of(customer: Customer) -> list[Subscription]:
    return list(
        Subscription.objects.filter(customer=customer)
        .select_related("product", "scheduled_change__product")
        .order_by("-created_at", "subscription_id")
    )


def next_billing_date(subscription: Subscription) -> datetime | None:
    if subscription.status != SubscriptionStatus.ACTIVE:
        return None
    return subscription.current_period_end


@dataclass(frozen=True)
class MeterLine:
    meter: Meter
    line: LineDraft
    credits_left: Decimal | None
    credit_unit: str | None


@dataclass(frozen=True)
class ThisPeriod:
    subscription: Subscription
    period: Period
    lines: list[LineDraft]  # the upcoming invoice's lines, fixed fee first
    meters: list[MeterLine]
    total_minor: int
    charts: list[dict]
    alerts: list[tuple[UsageAlert, UsageAlertCrossing | None]]


def this_period(subscription: Subscription, *, now: datetime) -> ThisPeriod:
    """The open period so far: the upcoming invoice's lines, credits left, a daily chart."""
    _, lines = invoices.upcoming(subscription.pk, now=now)
    period = subscription.period(subscription.period_index)
    product_meters = {
        pm.meter_id: pm
        for pm in ProductMeter.objects.filter(product=subscription.product).select_related(
            "meter", "credit_entitlement"
        )
    }
    balances = {
        b.credit_entitlement_id: b.balance
        for b in CreditBalance.objects.filter(customer_id=subscription.customer_id)
    }
    meters = []
    charts = []
    for line in lines:
        if line.kind != LineKind.USAGE or line.meter_id not in product_meters:
            continue
        pm = product_meters[line.meter_id]
        entitlement = pm.credit_entitlement
        credits_left = None if entitlement is None else balances.get(entitlement.id, Decimal(0))
        meters.append(
            MeterLine(
                meter=pm.meter,
                line=line,
                credits_left=credits_left,
                credit_unit=None if entitlement is None else entitlement.unit,
            )
        )
        end = min(max(now, period.start), period.end)
        points = usage_series(
            pm.meter, period.start, end, "day", customer_id=subscription.customer_id
        )
        charts.append({"name": pm.meter.name} | plotly_series(pm.meter, points))
    found = list(subscription.usage_alerts.select_related("meter"))
    fired = crossings_in_current_period(found)
    return ThisPeriod(
        subscription=subscription,
        period=period,
        lines=lines,
        meters=meters,
        total_minor=sum(line.amount_minor for line in lines),
        charts=charts,
        alerts=[(alert, fired.get(alert.pk)) for alert in found],
    )


def history_of(subscription: Subscription) -> list[UsagePeriod]:
    """Past and open periods as `GET /subscriptions/{id}/usage-history` answers them."""
    return usage_history(subscription, limit=HISTORY_PERIODS)


def invoices_of(customer: Customer) -> QuerySet[Invoice]:
    """Issued, paid and void invoices and credit notes; drafts still change, so they wait."""
    return (
        Invoice.objects.filter(customer=customer)
        .exclude(status=InvoiceStatus.DRAFT)
        .select_related("subscription__product")
        .order_by("-period_start", "-created_at", "invoice_id")
    )


def balances_of(customer: Customer) -> list[CreditBalance]:
    return list(
        CreditBalance.objects.filter(customer=customer)
        .select_related("credit_entitlement")
        .order_by("credit_entitlement__name", "pk")
    )


def ledger_of(balance: CreditBalance, *, page: int) -> tuple[list[LedgerEntry], bool]:
    """One page of the balance's ledger, newest change first (as the credits API orders it)."""
    start = page * LEDGER_PAGE_SIZE
    rows = list(balance.entries.order_by("-id")[start : start + LEDGER_PAGE_SIZE + 1])
    return rows[:LEDGER_PAGE_SIZE], len(rows) > LEDGER_PAGE_SIZE


def meters_of(customer: Customer) -> list[Meter]:
    """The meters of the customer's products: the ones whose events the portal may list."""
    return list(
        Meter.objects.filter(
            id__in=ProductMeter.objects.filter(product__subscriptions__customer=customer).values(
                "meter_id"
            )
        ).order_by("name", "id")
    )
