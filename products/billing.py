"""The billing cycle: close each due period of each subscription into exactly one invoice.

Periods are closed in batches, one transaction per batch: lock up to `BILLING_BATCH_SIZE` due
subscriptions (SKIP LOCKED, so concurrent runs split the work), stop new events for their
customers from entering the period, read exact usage for all of them with one query per meter,
write the invoices with all their lines, advance the periods. A second run, a second worker or a
crash can therefore never bill twice or leave half an invoice; the unique (subscription, period)
constraint is the last line of defence. Products with credits are closed one subscription per
transaction, the unit the credit ledger's lock order is written for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q

from audit import log as audit_log
from audit.models import Action
from billing_site.locks import lock_customer_slots
from billing_site.money import round_minor
from billing_site.periods import Period
from credits.deduction import (
    CreditLine,
    OverageCharge,
    close_credit_period,
    grant_period_credits,
)
from credits.models import ProductCreditEntitlement
from events.ingest import EventRow, InvalidEvents, ingest
from meters.rollups import roll_up_all_pending
from meters.usage import Usage, usage_by_customer
from products import payment_outbox, proofs, webhook_events
from products.models import (
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    InvoiceStatus,
    LineKind,
    Product,
    ProductMeter,
    ScheduledPlanChange,
    Subscription,
    SubscriptionStatus,
)
from products.pricing import MAXIMUM, MINIMUM, Charge, MeterPricing, cycle_adjustment
from products.pricing import charge as pricing_charge
from webhooks.models import EventType

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineDraft:
    kind: str
    description: str
    amount_minor: int
    meter_id: str | None = None
    consumed_units: Decimal | None = None
    free_threshold: int | None = None
    free_units: Decimal | None = None
    chargeable_units: Decimal | None = None
    unit_price: Decimal | None = None
    credits_applied: Decimal | None = None
    # Extensions (products/pricing.py): None on a line priced by Dodo's price_per_unit alone.
    tiers: list[dict] | None = None
    packages: Decimal | None = None
    limit_applied: str | None = None


def usage_charge(
    consumed: Decimal,
    free_threshold: int,
    price_per_unit: Decimal,
    pricing: MeterPricing | None = None,
) -> tuple[Decimal, Decimal, int]:
    """(free units used, chargeable units, amount in minor units) for one meter in one cycle.

    chargeable = max(consumed - free, 0); amount = chargeable x price, rounded half-up once;
    with `pricing` (tiers, packages, limits) products.pricing.charge prices the chargeable units.
    """
    free_used = min(max(consumed, Decimal(0)), Decimal(free_threshold))
    chargeable = max(consumed - free_threshold, Decimal(0))
    if pricing is not None and not pricing.is_plain:
        return free_used, chargeable, pricing_charge(pricing, chargeable).amount_minor
    return free_used, chargeable, round_minor(chargeable * price_per_unit)


def _pricing_note(pricing: MeterPricing, charge: Charge) -> str:
    """What the description adds for an extended price (nothing for Dodo's own)."""
    notes = []
    if pricing.tiers:
        notes.append(f"{pricing.tier_mode} tiers")
    if charge.packages is not None:
        notes.append(f"{charge.packages} packages of {pricing.package_size}")
    if charge.limit_applied == MAXIMUM:
        notes.append(f"capped at maximum_amount {charge.amount_minor} (was {charge.rounded})")
    elif charge.limit_applied == MINIMUM:
        notes.append(f"raised to minimum_amount {charge.amount_minor} (was {charge.rounded})")
    return "".join(f"; {note}" for note in notes)


def usage_line(
    product_meter: ProductMeter, usage: Usage, *, free_threshold: int | None = None
) -> LineDraft:
    """One priced meter's line; `free_threshold` overrides the product's (a short period's)."""
    meter = product_meter.meter
    price: Decimal | None = product_meter.price_per_unit or Decimal(0)
    pricing = MeterPricing.of(product_meter)
    if free_threshold is None:
        free_threshold = product_meter.free_threshold
    free_used, chargeable, amount = usage_charge(
        usage.quantity, free_threshold, price or Decimal(0)
    )
    description = f"{meter.name} ({meter.measurement_unit})"
    extensions: dict = {}
    if not pricing.is_plain:
        charge = pricing_charge(pricing, chargeable)
        amount = charge.amount_minor
        description += _pricing_note(pricing, charge)
        extensions = {
            "tiers": [t.wire() for t in charge.tiers] if pricing.tiers else None,
            "packages": charge.packages,
            "limit_applied": charge.limit_applied,
        }
        if pricing.tiers:
            price = None  # each tier has its own; the line's tiers show them
    return LineDraft(
        kind=LineKind.USAGE,
        description=description,
        amount_minor=amount,
        meter_id=meter.id,
        consumed_units=usage.quantity,
        free_threshold=free_threshold,
        free_units=free_used,
        chargeable_units=chargeable,
        unit_price=price,
        credits_applied=Decimal(0),
        **extensions,
    )


def trial_usage_line(product_meter: ProductMeter, usage: Usage) -> LineDraft:
    """A meter in the free trial: what it consumed, all of it free, whatever its price."""
    meter = product_meter.meter
    consumed = usage.quantity
    return LineDraft(
        kind=LineKind.USAGE,
        description=f"{meter.name} ({meter.measurement_unit}), free trial",
        amount_minor=0,
        meter_id=meter.id,
        consumed_units=consumed,
        free_threshold=product_meter.free_threshold,
        free_units=max(consumed, Decimal(0)),
        chargeable_units=Decimal(0),
        unit_price=product_meter.price_per_unit,
        credits_applied=Decimal(0),
    )


def trial_lines(
    product: Product, product_meters: Iterable[ProductMeter], usage: dict[str, Usage]
) -> list[LineDraft]:
    """The invoice of a free trial: no fee, every meter's usage free, nothing in credits."""
    return [
        LineDraft(
            kind=LineKind.FIXED_FEE, description=f"{product.name}: free trial", amount_minor=0
        ),
        *(trial_usage_line(pm, usage.get(pm.meter_id, Usage.zero())) for pm in product_meters),
    ]


def credit_line(line: CreditLine) -> LineDraft:
    """A meter billed in credits: what it consumed and the credits it took; no money."""
    meter = line.product_meter.meter
    description = f"{meter.name} ({meter.measurement_unit}), billed in credits"
    if line.credits_blocked:
        description += f"; {line.credits_blocked} credits beyond the overage limit not deducted"
    return LineDraft(
        kind=LineKind.USAGE,
        description=description,
        amount_minor=0,
        meter_id=meter.id,
        consumed_units=line.consumed_units,
        free_threshold=(
            line.product_meter.free_threshold
            if line.free_threshold is None
            else line.free_threshold
        ),
        free_units=line.free_units,
        chargeable_units=line.chargeable_units,
        credits_applied=line.credits_applied,
    )


def overage_line(charge: OverageCharge) -> LineDraft:
    entitlement = charge.link.credit_entitlement
    return LineDraft(
        kind=LineKind.CREDIT_OVERAGE,
        description=f"{entitlement.name}: overage of {charge.credits} {entitlement.unit}",
        amount_minor=round_minor(charge.credits * charge.price_per_unit),
        chargeable_units=charge.credits,
        unit_price=charge.price_per_unit,
    )


def cycle_limit_line(
    product: Product, lines: Iterable[LineDraft], *, fraction: Decimal = Decimal(1)
) -> LineDraft | None:
    """The line that holds the cycle's usage lines (money meters; credit lines bill 0) between
    the product's `minimum_amount` and `maximum_amount`, or None when neither changes their
    total. The fixed fee and credit overage are outside both limits. A period ending early (a
    plan change) holds them at `fraction` of each limit, rounded half-up, as its fee and free
    thresholds are prorated."""
    if product.minimum_amount is None and product.maximum_amount is None:
        return None
    minimum, maximum = (
        None if limit is None else round_minor(limit * fraction)
        for limit in (product.minimum_amount, product.maximum_amount)
    )
    usage_total = sum(line.amount_minor for line in lines if line.kind == LineKind.USAGE)
    adjustment, applied = cycle_adjustment(
        usage_total, minimum_amount=minimum, maximum_amount=maximum
    )
    if applied is None:
        return None
    share = "" if fraction == 1 else f", prorated {fraction:.6f} of the period"
    if applied == MAXIMUM:
        description = f"Usage capped at the cycle maximum_amount {maximum}{share}"
    else:
        description = f"Usage raised to the cycle minimum_amount {minimum}{share}"
    return LineDraft(
        kind=LineKind.USAGE_LIMIT,
        description=f"{description} (usage lines {usage_total})",
        amount_minor=adjustment,
        limit_applied=applied,
    )


def _with_cycle_limit(
    product: Product, lines: list[LineDraft], *, fraction: Decimal = Decimal(1)
) -> list[LineDraft]:
    """`lines` with the cycle limit's line after the usage lines (before any credit overage)."""
    limit_line = cycle_limit_line(product, lines, fraction=fraction)
    if limit_line is None:
        return lines
    last_usage = max(i for i, line in enumerate(lines) if line.kind in _BEFORE_LIMIT)
    return [*lines[: last_usage + 1], limit_line, *lines[last_usage + 1 :]]


_BEFORE_LIMIT = (LineKind.FIXED_FEE, LineKind.USAGE)


def draft_lines(
    product: Product,
    product_meters: Iterable[ProductMeter],
    usage: dict[str, Usage],
    credit_lines: Iterable[CreditLine] = (),
    overage_charges: Iterable[OverageCharge] = (),
    *,
    quantity: int = 1,
) -> list[LineDraft]:
    """The invoice for one period: the fixed fee (times the seats), one line per attached meter
    (priced, or billed in credits), then any credit overage charged at billing."""
    lines = [
        LineDraft(
            kind=LineKind.FIXED_FEE,
            description=f"{product.name}: fixed fee" + (f" x {quantity}" if quantity != 1 else ""),
            amount_minor=product.fixed_price_minor * quantity,
        )
    ]
    in_credits = {line.product_meter.meter_id: line for line in credit_lines}
    for product_meter in product_meters:
        if product_meter.meter_id in in_credits:
            lines.append(credit_line(in_credits[product_meter.meter_id]))
        else:
            usage_of_meter = usage.get(product_meter.meter_id, Usage.zero())
            lines.append(usage_line(product_meter, usage_of_meter))
    lines.extend(overage_line(charge) for charge in overage_charges)
    return _with_cycle_limit(product, lines)


# --- keeping late events out of invoiced periods -------------------------------------------------


def hold_customers_for_ingest(customer_ids: Iterable[str]) -> dict[str, list[tuple]]:
    """Take shared locks for these customers and return their finalized windows (periods whose
    invoice is a draft still take events).

    Called by ingestion inside its transaction: a period close for one of these customers waits
    until the batch commits, and a batch started after a close sees the new window. Returns
    {customer_id: [(first invoiced moment, end of finalized history)]}.
    """
    customers = sorted(set(customer_ids))
    lock_customer_slots(customers, shared=True)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT customer_id, anchor, finalized_until FROM products_subscription
            WHERE customer_id = ANY(%s) AND finalized_until > anchor
            """,
            [customers],
        )
        windows: dict[str, list[tuple]] = {}
        for customer_id, anchor, invoiced_until in cursor.fetchall():
            windows.setdefault(customer_id, []).append((anchor, invoiced_until))
    return windows


def refuse_invoiced_periods(rows: list[EventRow]) -> None:
    """Ingestion's admission rule: refuse events that fall into a period already invoiced for
    their customer.

    Runs inside the ingest write transaction, holding the customers against a concurrent period
    close, so an event is either refused here or counted by the invoice of its period, never lost.
    """
    windows = hold_customers_for_ingest(row.customer_id for row in rows)
    if not windows:
        return
    errors = [
        {
            "index": index,
            "field": f"events[{index}].timestamp",
            "code": "PERIOD_ALREADY_INVOICED",
            "message": f"The billing period containing {row.timestamp.isoformat()} is already "
            f"invoiced for customer {row.customer_id!r}.",
        }
        for index, row in enumerate(rows)
        if any(start <= row.timestamp < end for start, end in windows.get(row.customer_id, ()))
    ]
    if errors:
        raise InvalidEvents(
            f"{len(errors)} events fall into already invoiced periods; nothing was stored.",
            errors=errors,
        )


def ingest_events(body: bytes, *, now: datetime) -> int:
    """Ingest a request body under billing's admission rule: what the API and the demo call."""
    return ingest(body, now=now, admit=refuse_invoiced_periods)


# --- the cycle ------------------------------------------------------------------------------------


def _grants_credits(product_ref: str) -> Exists:
    """The product named by the outer `product_ref` grants credits each cycle."""
    return Exists(ProductCreditEntitlement.objects.filter(product_id=OuterRef(product_ref)))


def _uses_credits(product_ref: str) -> Q:
    """The rule of "a product with credits", once: it bills a meter in credits or grants
    credits each cycle. Such products are closed one subscription per transaction."""
    return Q(
        Exists(
            ProductMeter.objects.filter(
                product_id=OuterRef(product_ref), credit_entitlement__isnull=False
            )
        )
    ) | Q(_grants_credits(product_ref))


def _billed_in_credits() -> Q:
    """Subscriptions whose product uses credits."""
    return _uses_credits("product_id")


def _claim(now: datetime, limit: int, condition: Q) -> list[Subscription]:
    """Lock up to `limit` subscriptions matching `condition` whose current period has ended.

    SKIP LOCKED lets concurrent runs split the work. NO KEY: a concurrent credit deduction
    inserting this period's first checkpoint holds KEY SHARE on the subscription through its
    foreign key; FOR UPDATE would deadlock with it.
    """
    return list(
        Subscription.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
        .select_related("product")
        .filter(condition, status=SubscriptionStatus.ACTIVE, current_period_end__lte=now)
        .order_by("current_period_end", "subscription_id")[:limit]
    )


def _usage_for(
    items: list[tuple[Subscription, Period]], product_meters: dict[str, list[ProductMeter]]
) -> dict[tuple[str, str], Usage]:
    """{(subscription id, meter id): usage in the given period} for meters priced in money
    (and, in a free trial, for every meter: credits are not deducted there).

    One query per meter and period window, whatever the number of subscriptions: subscriptions
    closing the same window are read together with `usage_by_customer`.
    """
    windows: dict[tuple[str, datetime, datetime], list[Subscription]] = {}
    meters = {}
    for subscription, period in items:
        in_trial = subscription.is_trial(period.index)
        for product_meter in product_meters[subscription.product_id]:
            if product_meter.credit_entitlement_id is None or in_trial:
                meters[product_meter.meter_id] = product_meter.meter
                key = (product_meter.meter_id, period.start, period.end)
                windows.setdefault(key, []).append(subscription)
    usage = {}
    for (meter_id, start, end), closing in windows.items():
        by_customer = usage_by_customer(
            meters[meter_id], start, end, {s.customer_id for s in closing}
        )
        for subscription in closing:
            usage[subscription.subscription_id, meter_id] = by_customer.get(
                subscription.customer_id, Usage.zero()
            )
    return usage


@dataclass(frozen=True)
class _Catalogue:
    """What the lines of a batch need from its products, read once per batch."""

    product_meters: dict[str, list[ProductMeter]]
    granting: set[str]  # products that grant credits each period
    with_credits: set[str]  # products that use credits (`_uses_credits`)

    @classmethod
    def of(cls, subscriptions: Iterable[Subscription]) -> _Catalogue:
        product_ids = {s.product_id for s in subscriptions}
        product_meters: dict[str, list[ProductMeter]] = {pid: [] for pid in product_ids}
        for product_meter in (
            ProductMeter.objects.filter(product_id__in=product_ids)
            .select_related("meter")
            .order_by("product_id", "position")
        ):
            product_meters[product_meter.product_id].append(product_meter)
        granting, with_credits = set(), set()
        for product_id, grants, uses in (
            Product.objects.filter(pk__in=product_ids)
            .annotate(grants=_grants_credits("pk"), uses=_uses_credits("pk"))
            .values_list("pk", "grants", "uses")
        ):
            if grants:
                granting.add(product_id)
            if uses:
                with_credits.add(product_id)
        return cls(product_meters, granting, with_credits)

    def uses_credits(self, subscription: Subscription) -> bool:
        return subscription.product_id in self.with_credits


def period_lines(
    items: list[tuple[Subscription, Period]], catalogue: _Catalogue, *, now: datetime
) -> list[list[LineDraft]]:
    """The invoice lines of each (subscription, period), at the prices in force now.

    For a product with credits this closes the credit side of the period (final deduction,
    expiry, overage settlement): call it in the transaction that keeps the result, or inside
    `_dry_run` to only look.
    """
    usage = _usage_for(items, catalogue.product_meters)
    all_lines = []
    for subscription, period in items:
        meters = catalogue.product_meters[subscription.product_id]
        if subscription.is_trial(period.index):
            measured = {
                pm.meter_id: usage[subscription.subscription_id, pm.meter_id] for pm in meters
            }
            all_lines.append(trial_lines(subscription.product, meters, measured))
            continue
        lead = subscription.lead_terms(period)
        if lead is not None:  # the short period a kept-cycle plan change left (no credits)
            share, bills_fee = lead
            measured = {
                pm.meter_id: usage.get((subscription.subscription_id, pm.meter_id), Usage.zero())
                for pm in meters
            }
            all_lines.append(lead_lines(subscription, meters, measured, share, bills_fee))
            continue
        credit_lines: list[CreditLine] = []
        overage_charges: list[OverageCharge] = []
        if catalogue.uses_credits(subscription):
            credit_lines, overage_charges = close_credit_period(subscription, period, now=now)
        priced = {
            pm.meter_id: usage[subscription.subscription_id, pm.meter_id]
            for pm in meters
            if pm.credit_entitlement_id is None
        }
        all_lines.append(
            draft_lines(
                subscription.product,
                meters,
                priced,
                credit_lines,
                overage_charges,
                quantity=subscription.quantity,
            )
        )
    return all_lines


class _DryRun(Exception):
    """Rolls back the savepoint of a computation that must not be kept."""


def _dry_run(items: list[tuple[Subscription, Period]], catalogue: _Catalogue, *, now: datetime):
    """`period_lines` with nothing kept: the credit close runs in a savepoint that is rolled
    back, with its ledger entries, audit rows and webhooks. Money-only batches write nothing
    and need no savepoint."""
    if not any(catalogue.uses_credits(s) for s, _ in items):
        return period_lines(items, catalogue, now=now)
    result: list[list[LineDraft]] = []
    try:
        with transaction.atomic():
            result = period_lines(items, catalogue, now=now)
            raise _DryRun
    except _DryRun:
        pass
    return result


def preview_lines(subscription: Subscription, period: Period, *, now: datetime) -> list[LineDraft]:
    """The lines `period` would be invoiced with if it closed now, nothing written: the upcoming
    invoice, a draft as it stands, the base of a reissue."""
    return _dry_run([(subscription, period)], _Catalogue.of([subscription]), now=now)[0]


def early_close_lines(
    subscription: Subscription,
    period: Period,
    *,
    fixed_fee: LineDraft,
    threshold_fraction: Decimal,
    now: datetime,
) -> list[LineDraft]:
    """The lines of a period that ends early (a plan change, a pause or a cancellation now):
    `fixed_fee` as the caller priced it, then each meter's usage in `period` at the current
    product's prices, its free threshold scaled by `threshold_fraction` and rounded down to
    whole units, and the product's cycle minimum and maximum scaled by it too
    (`cycle_limit_line`). A free trial stays free. For a product with credits this closes the
    credit side of `period` at its end (deduction with the scaled thresholds, expiries,
    overage): call it in the transaction that keeps the result."""
    catalogue = _Catalogue.of([subscription])
    usage = _usage_for([(subscription, period)], catalogue.product_meters)
    meters = catalogue.product_meters[subscription.product_id]
    if subscription.is_trial(period.index):
        measured = {pm.meter_id: usage[subscription.subscription_id, pm.meter_id] for pm in meters}
        return trial_lines(subscription.product, meters, measured)
    credit_lines: list[CreditLine] = []
    overage_charges: list[OverageCharge] = []
    if catalogue.uses_credits(subscription):
        credit_lines, overage_charges = close_credit_period(
            subscription, period, now=now, threshold_fraction=threshold_fraction
        )
    in_credits = {line.product_meter.meter_id: line for line in credit_lines}
    lines = [
        fixed_fee,
        *(
            credit_line(in_credits[pm.meter_id])
            if pm.meter_id in in_credits
            else usage_line(
                pm,
                usage[subscription.subscription_id, pm.meter_id],
                free_threshold=int(pm.free_threshold * threshold_fraction),
            )
            for pm in meters
        ),
        *(overage_line(charge) for charge in overage_charges),
    ]
    return _with_cycle_limit(subscription.product, lines, fraction=threshold_fraction)


def grant_new_period(subscription: Subscription, *, now: datetime) -> None:
    """The credits of the subscription's current period, if its product grants any: a period
    that a plan change or a resume started (the billing cycle grants those it starts)."""
    catalogue = _Catalogue.of([subscription])
    _grant_next_period(subscription, subscription.period_index, catalogue, now=now)


def lead_lines(
    subscription: Subscription,
    product_meters: Iterable[ProductMeter],
    usage: dict[str, Usage],
    share: Decimal,
    bills_fee: bool,
) -> list[LineDraft]:
    """The invoice of a lead (the rest of a period after a plan change that kept the cycle):
    the fee x seats x `share` of a full period (rounded half-up once), or nothing when the
    change billed it already (`difference_immediately`); free thresholds x `share`, rounded
    down to whole units, as on the change invoice, and so the cycle's minimum and maximum."""
    product = subscription.product
    fee = product.fixed_price_minor * subscription.quantity
    seats = f" x {subscription.quantity}" if subscription.quantity != 1 else ""
    if bills_fee:
        fixed = LineDraft(
            LineKind.FIXED_FEE,
            f"{product.name}: fixed fee{seats}, prorated {share:.6f} of the period",
            round_minor(fee * share),
        )
    else:
        fixed = LineDraft(
            LineKind.FIXED_FEE, f"{product.name}: fixed fee, billed at the plan change", 0
        )
    lines = [
        fixed,
        *(
            usage_line(
                pm,
                usage.get(pm.meter_id, Usage.zero()),
                free_threshold=int(pm.free_threshold * share),
            )
            for pm in product_meters
        ),
    ]
    return _with_cycle_limit(product, lines, fraction=share)


def uses_credits(subscription: Subscription) -> bool:
    """Whether the subscription's product uses credits (the rule the billing cycle claims by)."""
    return Product.objects.filter(pk=subscription.product_id).filter(_uses_credits("pk")).exists()


def oldest_drafts(subscription: Subscription) -> list[Invoice]:
    """The subscription's oldest draft, locked (the subscription must be locked already)."""
    return _oldest_drafts([subscription], Q())


def grace_period(product: Product) -> timedelta:
    """How long a closed period's invoice stays a draft: the product's own, or the setting."""
    minutes = product.grace_period_minutes
    if minutes is None:
        minutes = settings.BILLING_GRACE_PERIOD_MINUTES
    return timedelta(minutes=minutes)


def _close(subscriptions: list[Subscription], *, now: datetime) -> list[Invoice]:
    """Close the current period of these locked subscriptions and advance them, in the
    caller's transaction.

    Each period gets its invoice now: final at once when its grace period is already over
    (always with a grace period of 0), else a draft with the usage so far, finalized later by
    `finalize_due_drafts`. Several subscriptions at once only for products without credits (see
    `run_billing_cycle`): closing a credit period takes checkpoint and balance locks in an
    order that holds for one subscription per transaction.
    """
    lock_customer_slots((s.customer_id for s in subscriptions), shared=False)
    catalogue = _Catalogue.of(subscriptions)
    items = [(s, s.period(s.period_index)) for s in subscriptions]
    # A period closing with a scheduled plan change is final at once: a draft is recomputed
    # at its finalization from the subscription's product, which is the new one by then.
    changing = set(
        ScheduledPlanChange.objects.filter(
            subscription_id__in=[s.subscription_id for s in subscriptions]
        ).values_list("subscription_id", flat=True)
    )
    draft_ids = {
        s.subscription_id
        for s, p in items
        if _stays_draft(s, p, now=now) and s.subscription_id not in changing
    }
    final = [(s, p) for s, p in items if s.subscription_id not in draft_ids]
    drafts = [(s, p) for s, p in items if s.subscription_id in draft_ids]
    computed = {
        s.subscription_id: lines
        for (s, _), lines in [
            *zip(final, period_lines(final, catalogue, now=now), strict=True),
            *zip(drafts, _dry_run(drafts, catalogue, now=now), strict=True),
        ]
    }
    invoices = _write_invoices(
        [(s, p, computed[s.subscription_id]) for s, p in items], now=now, draft_ids=draft_ids
    )
    proofs.prove_lines([i for i in invoices if i.status == InvoiceStatus.ISSUED])
    finalized = {s.subscription_id for s, _ in final}
    _advance(subscriptions, finalized=finalized)
    changed = apply_scheduled_changes(subscriptions)
    # Outbox rows in this transaction: the webhooks go out only if the batch commits.
    webhook_events.invoices_created(invoices)
    webhook_events.invoices_finalized([i for i in invoices if i.status == InvoiceStatus.ISSUED])
    # Their payments too: charged after this transaction commits, never inside it.
    payment_outbox.schedule_first_payments(invoices, now=now)
    webhook_events.subscriptions_renewed(
        [s for s in subscriptions if s.status == SubscriptionStatus.ACTIVE]
    )
    webhook_events.subscriptions_changed(
        EventType.SUBSCRIPTION_CANCELLED,
        [s for s in subscriptions if s.status == SubscriptionStatus.CANCELLED],
    )
    webhook_events.subscriptions_changed(EventType.SUBSCRIPTION_PLAN_CHANGED, changed)
    for subscription in subscriptions:
        if subscription.subscription_id in finalized:
            _grant_next_period(subscription, subscription.period_index, catalogue, now=now)
    return invoices


def apply_scheduled_changes(subscriptions: list[Subscription]) -> list[Subscription]:
    """Put the subscriptions that just moved to a new period on their scheduled plan: the new
    period starts a new cycle of the new product there (its interval, its prices; the period
    just closed was invoiced at the old ones). One query when none has a schedule; a cancelled
    subscription's schedule is dropped. Returns the changed subscriptions."""
    by_id = {s.subscription_id: s for s in subscriptions}
    schedules = list(
        ScheduledPlanChange.objects.filter(subscription_id__in=by_id).select_related("product")
    )
    changed = []
    for schedule in schedules:
        subscription = by_id[schedule.subscription_id]
        if subscription.status != SubscriptionStatus.ACTIVE:
            continue
        before = {"product_id": subscription.product_id, "quantity": subscription.quantity}
        subscription.product = schedule.product
        subscription.quantity = schedule.quantity
        subscription.interval_unit = schedule.product.interval_unit
        subscription.interval_count = schedule.product.interval_count
        subscription.cycle_anchor = subscription.current_period_start
        subscription.cycle_offset = subscription.period_index
        subscription.current_period_end = subscription.period(subscription.period_index).end
        subscription.save(
            update_fields=[
                "product",
                "quantity",
                "interval_unit",
                "interval_count",
                "cycle_anchor",
                "cycle_offset",
                "current_period_end",
            ]
        )
        audit_log.record(
            object_type="products.subscription",
            object_id=subscription.subscription_id,
            action=Action.PLAN_CHANGED,
            before=before,
            after={"product_id": subscription.product_id, "quantity": subscription.quantity},
            details={"at": subscription.current_period_start.isoformat(), "scheduled": True},
        )
        changed.append(subscription)
    if schedules:
        ScheduledPlanChange.objects.filter(pk__in=[s.pk for s in schedules]).delete()
    return changed


def _grant_next_period(
    subscription: Subscription, period_index: int, catalogue: _Catalogue, *, now: datetime
) -> None:
    """The credits of period `period_index`, once the period before it is final (so its
    overage is settled first: auto-repay takes from this grant)."""
    if subscription.status == SubscriptionStatus.ACTIVE and subscription.product_id in (
        catalogue.granting
    ):
        grant_period_credits(subscription, subscription.period(period_index), now=now)


def close_period(subscription_id: str, *, now: datetime) -> Invoice | None:
    """Invoice the subscription's current period if it has ended by `now`; None otherwise."""
    with transaction.atomic():
        claimed = _claim(now, 1, Q(subscription_id=subscription_id))
        return _close(claimed, now=now)[0] if claimed else None


def close_due_batch(*, now: datetime, limit: int, credits: bool) -> list[Invoice]:
    """One transaction: claim up to `limit` due subscriptions of products with (or without)
    credits and close one period of each. An empty list when nothing is left to claim."""
    in_credits = _billed_in_credits()
    condition = in_credits & _no_open_draft() if credits else ~in_credits
    with transaction.atomic():
        claimed = _claim(now, limit, condition)
        return _close(claimed, now=now) if claimed else []


def _no_open_draft() -> Q:
    """A credit period closes only after the one before it is final: its credit close (and the
    grant it is followed by) must come first."""
    return Q(period_index=0) | Q(finalized_until__gte=F("current_period_start"))


# --- finalizing drafts ----------------------------------------------------------------------------


def _claim_drafts(now: datetime, limit: int, condition: Q) -> list[Invoice]:
    """Lock up to `limit` subscriptions with a draft whose grace period is over, and return the
    oldest such draft of each (subscription first, as a period close locks it)."""
    due = Invoice.objects.filter(
        subscription_id=OuterRef("pk"), status=InvoiceStatus.DRAFT, finalize_at__lte=now
    )
    subscriptions = list(
        Subscription.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
        .select_related("product", "customer")
        .filter(condition, Exists(due))
        .order_by("subscription_id")[:limit]
    )
    return _oldest_drafts(subscriptions, Q(finalize_at__lte=now))


def _oldest_drafts(subscriptions: list[Subscription], condition: Q) -> list[Invoice]:
    by_id = {s.subscription_id: s for s in subscriptions}
    drafts: dict[str, Invoice] = {}
    for invoice in (
        Invoice.objects.select_for_update(of=("self",))
        .filter(condition, subscription_id__in=by_id, status=InvoiceStatus.DRAFT)
        .order_by("subscription_id", "period_index")
    ):
        drafts.setdefault(invoice.subscription_id, invoice)
    for invoice in drafts.values():
        invoice.subscription = by_id[invoice.subscription_id]
    return list(drafts.values())


def finalize_drafts(drafts: list[Invoice], *, now: datetime) -> list[Invoice]:
    """Freeze these locked drafts: recompute their lines from every event of their period
    (late ones included), number them and issue them; their subscriptions then refuse events
    of these periods. In the caller's transaction."""
    if not drafts:
        return []
    subscriptions = [invoice.subscription for invoice in drafts]
    lock_customer_slots((s.customer_id for s in subscriptions), shared=False)
    catalogue = _Catalogue.of(subscriptions)
    items = [(invoice.subscription, invoice.period) for invoice in drafts]
    for invoice, lines in zip(drafts, period_lines(items, catalogue, now=now), strict=True):
        InvoiceLine.objects.filter(invoice=invoice).delete()
        write_lines([(invoice, lines)])
        invoice.total_minor = sum(line.amount_minor for line in lines)
    proofs.prove_lines(drafts)
    _issue(drafts, now=now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Subscription._meta.db_table} s
            SET finalized_until = greatest(s.finalized_until, v.period_end)
            FROM unnest(%s::text[], %s::timestamptz[]) AS v(subscription_id, period_end)
            WHERE s.subscription_id = v.subscription_id
            """,
            [[i.subscription_id for i in drafts], [i.period_end for i in drafts]],
        )
    webhook_events.invoices_finalized(drafts)
    payment_outbox.schedule_first_payments(drafts, now=now)
    for invoice in drafts:
        _grant_next_period(invoice.subscription, invoice.period_index + 1, catalogue, now=now)
    return drafts


def _issue(invoices: list[Invoice], *, now: datetime) -> None:
    """Status issued, the issue time and the next numbers of the year, in one statement each."""
    numbers = take_invoice_numbers(len(invoices), year=now.year)
    for invoice, number in zip(invoices, numbers, strict=True):
        invoice.status = InvoiceStatus.ISSUED
        invoice.issued_at = now
        invoice.number = number
    Invoice.objects.bulk_update(invoices, ["status", "issued_at", "number", "total_minor"])


def take_invoice_numbers(count: int, *, year: int) -> list[str]:
    """`count` consecutive numbers of `year`. The sequence row stays locked until the caller's
    transaction ends, so concurrent finalizations queue here and a rollback returns the numbers:
    sequential and gap-free."""
    if count == 0:
        return []
    table = InvoiceSequence._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} AS seq (year, last_number) VALUES (%s, %s)
            ON CONFLICT (year) DO UPDATE SET last_number = seq.last_number + EXCLUDED.last_number
            RETURNING last_number
            """,
            [year, count],
        )
        last = cursor.fetchone()[0]
    prefix = settings.INVOICE_NUMBER_PREFIX
    return [f"{prefix}-{year}-{n:06d}" for n in range(last - count + 1, last + 1)]


def finalize_due_drafts(*, now: datetime, batch_size: int) -> list[Invoice]:
    """Finalize every draft whose grace period is over: batches for products without credits,
    one subscription per transaction for those with credits."""
    finalized = []
    in_credits = _billed_in_credits()
    for condition, limit in ((~in_credits, batch_size), (in_credits, 1)):
        while True:
            with transaction.atomic():
                batch = finalize_drafts(_claim_drafts(now, limit, condition), now=now)
            if not batch:
                break
            finalized.extend(batch)
    return finalized


def _stays_draft(subscription: Subscription, period: Period, *, now: datetime) -> bool:
    """Whether the invoice of this closing period is a draft: its grace period is not over."""
    return period.end + grace_period(subscription.product) > now


def _write_invoices(
    drafts: list[tuple[Subscription, Period, list[LineDraft]]],
    *,
    now: datetime,
    draft_ids: set[str],
) -> list[Invoice]:
    """Every invoice of the batch in one insert, then every line in another: issued and
    numbered, or drafts (the subscriptions in `draft_ids`) that finalize when their grace
    period ends."""
    final_count = sum(s.subscription_id not in draft_ids for s, _, _ in drafts)
    numbers = iter(take_invoice_numbers(final_count, year=now.year))
    invoices = Invoice.objects.bulk_create(
        Invoice(
            subscription=subscription,
            customer_id=subscription.customer_id,
            period_index=period.index,
            period_start=period.start,
            period_end=period.end,
            currency=subscription.product.currency,
            total_minor=sum(line.amount_minor for line in lines),
            created_at=now,
            **(
                {
                    "status": InvoiceStatus.DRAFT,
                    "finalize_at": period.end + grace_period(subscription.product),
                }
                if subscription.subscription_id in draft_ids
                else {"status": InvoiceStatus.ISSUED, "issued_at": now, "number": next(numbers)}
            ),
        )
        for subscription, period, lines in drafts
    )
    write_lines([(invoice, lines) for invoice, (_, _, lines) in zip(invoices, drafts, strict=True)])
    return invoices


def write_lines(invoice_lines: list[tuple[Invoice, list[LineDraft]]]) -> None:
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=position,
            kind=line.kind,
            meter_id=line.meter_id,
            description=line.description,
            consumed_units=line.consumed_units,
            free_threshold=line.free_threshold,
            free_units=line.free_units,
            chargeable_units=line.chargeable_units,
            unit_price=line.unit_price,
            credits_applied=line.credits_applied,
            amount_minor=line.amount_minor,
            tiers=line.tiers,
            packages=line.packages,
            limit_applied=line.limit_applied,
        )
        for invoice, lines in invoice_lines
        for position, line in enumerate(lines)
    )


def _advance(subscriptions: list[Subscription], *, finalized: set[str]) -> None:
    """Move each subscription to its next period (or cancel it), in one statement; those in
    `finalized` (their invoice is final) refuse events before the new period from now on.

    One UPDATE … FROM unnest(arrays): `bulk_update` builds a CASE per row and column, which
    cost half of a batch's time in Python.
    """
    for subscription in subscriptions:
        following = subscription.period(subscription.period_index + 1)
        if subscription.cancel_at_next_billing_date:
            subscription.status = SubscriptionStatus.CANCELLED
            subscription.cancelled_at = following.start
        subscription.period_index = following.index
        subscription.current_period_start = following.start
        subscription.current_period_end = following.end
        if subscription.subscription_id in finalized:
            subscription.finalized_until = following.start
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {Subscription._meta.db_table} s
            SET period_index = v.period_index, current_period_start = v.period_start,
                current_period_end = v.period_end, status = v.status,
                cancelled_at = v.cancelled_at, finalized_until = v.finalized_until
            FROM unnest(%s::text[], %s::integer[], %s::timestamptz[], %s::timestamptz[],
                        %s::text[], %s::timestamptz[], %s::timestamptz[])
                 AS v(subscription_id, period_index, period_start, period_end, status,
                      cancelled_at, finalized_until)
            WHERE s.subscription_id = v.subscription_id
            """,
            [
                [s.subscription_id for s in subscriptions],
                [s.period_index for s in subscriptions],
                [s.current_period_start for s in subscriptions],
                [s.current_period_end for s in subscriptions],
                [s.status for s in subscriptions],
                [s.cancelled_at for s in subscriptions],
                [s.finalized_until for s in subscriptions],
            ],
        )


def run_billing_cycle(*, now: datetime, batch_size: int | None = None) -> list[Invoice]:
    """Close every period that has ended by `now`, catching up several periods if needed.

    Subscriptions of products without credits are closed `batch_size` per transaction; those with
    credits one per transaction. A subscription several periods behind is claimed again by a
    later batch for each period. Pending ingest batches are rolled up first: usage is exact
    either way (events not yet rolled up are read raw), but with a backlog every batch would
    re-read it.
    """
    roll_up_all_pending()
    batch_size = batch_size or settings.BILLING_BATCH_SIZE
    # Drafts whose grace is over first: a credit period closes only after the one before it.
    finalize_due_drafts(now=now, batch_size=batch_size)
    invoices = []
    # Larger batches save round trips but hold their customers' ingest locks (up to
    # billing_site.locks.CUSTOMER_LOCK_SLOTS slots) for longer.
    for credits, limit in ((False, batch_size), (True, 1)):
        while batch := close_due_batch(now=now, limit=limit, credits=credits):
            invoices.extend(batch)
    logger.info("billing cycle as of %s issued %d invoices", now.isoformat(), len(invoices))
    return invoices
