"""Why is this event (not) billed? One event explained against every meter that could count it:
refused or stored, its customer, each meter's name and filter (the failed condition by path),
its value, and the period and invoice line that billed it, or why none did.

Read-only and answered from indexes (the event by id, its refusals, its customer's subscriptions
and invoices), so it stays fast on a large events table. The filter is evaluated in Python by
meters.filters, with the very semantics its SQL has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from billing_site.names import name_distance
from events.models import Event, RefusedEvent
from events.queries import refuse_archived_event
from meters.filters import failed_conditions, is_numeric_string, value_type
from meters.models import Aggregation, Meter
from products.models import (
    Customer,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    LineKind,
    ProductMeter,
    Subscription,
    SubscriptionStatus,
)

# Meters whose event name is this close to the event's (edits, case aside) are considered too.
MAX_NAME_DISTANCE = 2
MAX_REFUSALS = 20

# Reason codes, one per meter: why the meter did or did not bill the event.
BILLED = "BILLED"
EVENT_NAME_DIFFERS_BY_CASE = "EVENT_NAME_DIFFERS_BY_CASE"
EVENT_NAME_SIMILAR = "EVENT_NAME_SIMILAR"
REFUSED = "REFUSED"
FILTER_FAILED = "FILTER_FAILED"
KEY_MISSING = "KEY_MISSING"
NOT_A_NUMBER = "NOT_A_NUMBER"
NUMERIC_STRING = "NUMERIC_STRING"
UNCOUNTABLE_VALUE = "UNCOUNTABLE_VALUE"
UNKNOWN_CUSTOMER = "UNKNOWN_CUSTOMER"
NO_SUBSCRIPTION = "NO_SUBSCRIPTION"
BEFORE_SUBSCRIPTION = "BEFORE_SUBSCRIPTION"
NOT_PRICED = "NOT_PRICED"
PERIOD_OPEN = "PERIOD_OPEN"
DRAFT_INVOICE = "DRAFT_INVOICE"
PERIOD_INVOICED_BEFORE_ARRIVAL = "PERIOD_INVOICED_BEFORE_ARRIVAL"
NOT_INVOICED = "NOT_INVOICED"


@dataclass(frozen=True)
class _Facts:
    """What is known of the event: all of it when stored, what its refused request said if not."""

    event_id: str
    event: Event | None
    customer_id: str | None
    event_name: str | None
    timestamp: datetime | None
    metadata: dict | None
    arrived_at: datetime  # stored at, or the last time it was refused


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def explain_event(event_id: str) -> dict | None:
    """The explanation of one event id, or None if it was never stored nor refused (within
    REJECTED_EVENTS_RETENTION_DAYS)."""
    event = Event.objects.filter(event_id=event_id).first()
    refusals = list(
        RefusedEvent.objects.filter(event_id=event_id).order_by("-refused_at", "-id")[:MAX_REFUSALS]
    )
    if event is None and not refusals:
        refuse_archived_event(event_id)
        return None
    if event is not None:
        facts = _Facts(
            event_id,
            event,
            event.customer_id,
            event.event_name,
            event.timestamp,
            event.metadata if isinstance(event.metadata, dict) else {},
            event.ingested_at,
        )
    else:
        latest = refusals[0]
        facts = _Facts(
            event_id,
            None,
            latest.customer_id,
            latest.event_name,
            _parse_time(latest.timestamp),
            None,
            latest.refused_at,
        )
    customer = _customer(facts)
    meters = [_meter(facts, meter, customer) for meter in _candidate_meters(facts.event_name)]
    return {
        "event_id": event_id,
        "stored": event is not None,
        "event": None
        if event is None
        else {
            "customer_id": event.customer_id,
            "event_name": event.event_name,
            "timestamp": _iso(event.timestamp),
            "ingested_at": _iso(event.ingested_at),
            "metadata": event.metadata,
        },
        "refused": [
            {
                "code": r.code,
                "field": r.field,
                "message": r.message,
                "at": _iso(r.refused_at),
            }
            for r in refusals
        ]
        or None,
        "customer": customer.wire(),
        "meters": meters,
        "summary": _summary(event is not None, refusals, meters),
    }


# --- the customer ------------------------------------------------------------------------------


@dataclass
class _Customer:
    customer_id: str | None
    exists: bool
    subscriptions: list[Subscription]
    at: datetime | None

    def live_at(self, moment: datetime | None) -> list[Subscription]:
        """Subscriptions that had begun by `moment` and were not cancelled before it."""
        if moment is None:
            return []
        return [
            s
            for s in self.subscriptions
            if s.anchor <= moment and (s.cancelled_at is None or moment < s.cancelled_at)
        ]

    def wire(self) -> dict:
        return {
            "customer_id": self.customer_id,
            "exists": self.exists,
            "subscribed": bool(self.live_at(self.at)),
            "subscriptions": [
                {
                    "subscription_id": s.subscription_id,
                    "product_id": s.product_id,
                    "status": s.status,
                    "start": _iso(s.anchor),
                    "current_period_start": _iso(s.current_period_start),
                    "current_period_end": _iso(s.current_period_end),
                }
                for s in self.subscriptions
            ],
        }


def _customer(facts: _Facts) -> _Customer:
    if facts.customer_id is None:
        return _Customer(None, False, [], facts.timestamp)
    exists = Customer.objects.filter(customer_id=facts.customer_id).exists()
    subscriptions = list(
        Subscription.objects.filter(customer_id=facts.customer_id).order_by("anchor", "pk")
    )
    return _Customer(facts.customer_id, exists, subscriptions, facts.timestamp)


# --- the meters --------------------------------------------------------------------------------


def _candidate_meters(event_name: str | None) -> list[tuple[Meter, str, int]]:
    """(meter, "exact" | "case" | "similar", distance) for every active meter of this event name
    and those whose name differs only by case or by at most MAX_NAME_DISTANCE edits."""
    if event_name is None:
        return []
    folded = event_name.casefold()
    close: list[tuple[str, str, int]] = []
    for meter_id, name in Meter.objects.active().values_list("id", "event_name"):
        if name == event_name:
            close.append((meter_id, "exact", 0))
        elif name.casefold() == folded:
            close.append((meter_id, "case", 0))
        else:
            distance = name_distance(name, event_name)
            if distance <= MAX_NAME_DISTANCE:
                close.append((meter_id, "similar", distance))
    meters = Meter.objects.in_bulk([meter_id for meter_id, _, _ in close])
    order = {"exact": 0, "case": 1, "similar": 2}
    close.sort(key=lambda c: (order[c[1]], c[2], c[0]))
    return [(meters[meter_id], kind, distance) for meter_id, kind, distance in close]


def _meter(facts: _Facts, candidate: tuple[Meter, str, int], customer: _Customer) -> dict:
    meter, name_match, distance = candidate
    entry: dict[str, Any] = {
        "meter_id": meter.id,
        "meter_name": meter.name,
        "meter_event_name": meter.event_name,
        "name_match": name_match,
        "matched": False,
        "counted": False,
        "reason": None,
        "message": "",
        "failed_condition": None,
        "failed_conditions": [],
        "value": None,
        "billing": None,
    }

    def answer(reason: str, message: str, **fields: Any) -> dict:
        entry.update(reason=reason, message=message, **fields)
        return entry

    if name_match == "case":
        return answer(
            EVENT_NAME_DIFFERS_BY_CASE,
            f"The meter counts {meter.event_name!r}; the event is named {facts.event_name!r}. "
            "Event names match exactly and case-sensitively.",
        )
    if name_match == "similar":
        return answer(
            EVENT_NAME_SIMILAR,
            f"The meter counts {meter.event_name!r}; the event is named {facts.event_name!r} "
            f"({distance} edit{'s' if distance > 1 else ''} away).",
        )
    if facts.metadata is None:  # refused: what it held is not kept, but its period may be
        billing = _billing(facts, meter, customer)
        if billing is not None and billing["reason"] == PERIOD_INVOICED_BEFORE_ARRIVAL:
            return answer(PERIOD_INVOICED_BEFORE_ARRIVAL, billing["message"], billing=billing)
        return answer(REFUSED, "The event was refused at ingestion, so no meter counted it.")
    failures = failed_conditions(meter.filter, facts.metadata)
    if failures:
        return answer(
            FILTER_FAILED,
            failures[0]["message"],
            failed_condition=failures[0],
            failed_conditions=failures,
        )
    entry["matched"] = True
    skipped = _skipped(meter, facts.metadata)
    if skipped is not None:
        reason, message = skipped
        return answer(reason, message, value=facts.metadata.get(meter.aggregation_key or ""))
    entry["counted"] = True
    if meter.aggregation_type != Aggregation.COUNT:
        entry["value"] = facts.metadata[meter.aggregation_key or ""]
    billing = _billing(facts, meter, customer)
    assert billing is not None
    return answer(billing["reason"], billing["message"], billing=billing)


def _skipped(meter: Meter, metadata: dict) -> tuple[str, str] | None:
    """Why a matching event adds nothing to the meter (meters.usage.event_value_sql's rule)."""
    if meter.aggregation_type == Aggregation.COUNT:
        return None
    key = meter.aggregation_key or ""
    kind = value_type(metadata, key)
    value = metadata.get(key)
    if kind == "missing":
        close = sorted(k for k in metadata if name_distance(k, key) <= MAX_NAME_DISTANCE)
        hint = f" (it has {', '.join(map(repr, close))})" if close else ""
        return (
            KEY_MISSING,
            f"The event has no {key!r} key{hint}: the meter's {meter.aggregation_type} skips it.",
        )
    if meter.aggregation_type == Aggregation.UNIQUE_COUNT:
        if kind in ("string", "number", "boolean"):
            return None  # every scalar is a distinct value
        return UNCOUNTABLE_VALUE, f"{key} is {kind}: unique_count counts scalars only."
    if kind == "number":
        return None
    if isinstance(value, str) and is_numeric_string(value):
        return (
            NUMERIC_STRING,
            f"{key} is the string {value!r}: numbers must be sent as numbers "
            f"({value.strip()}, not {value!r}), so the meter skips it.",
        )
    return NOT_A_NUMBER, f"{key} is a {kind}, not a number: the meter skips it."


# --- the period and the invoice ----------------------------------------------------------------


def _billing(facts: _Facts, meter: Meter, customer: _Customer) -> dict | None:
    """Where this meter billed the event (invoice and line), or why nowhere."""
    moment = facts.timestamp
    if moment is None:
        return None
    result: dict[str, Any] = {
        "reason": None,
        "message": "",
        "subscription_id": None,
        "period_start": None,
        "period_end": None,
        "invoice_id": None,
        "invoice_number": None,
        "invoice_status": None,
        "line": None,
    }

    def answer(reason: str, message: str, **fields: Any) -> dict:
        result.update(reason=reason, message=message, **fields)
        return result

    if not customer.exists:
        return answer(
            UNKNOWN_CUSTOMER,
            f"No customer {facts.customer_id!r} exists: events are billed to the customer "
            "whose customer_id they carry.",
        )
    if not customer.subscriptions:
        return answer(NO_SUBSCRIPTION, f"Customer {facts.customer_id!r} has no subscription.")
    for invoice in _invoices_covering(customer.customer_id or "", moment):
        line = invoice.lines.filter(kind=LineKind.USAGE, meter_id=meter.id).first()
        where: dict[str, Any] = {
            "subscription_id": invoice.subscription_id,
            "period_start": _iso(invoice.period_start),
            "period_end": _iso(invoice.period_end),
            "invoice_id": invoice.invoice_id,
            "invoice_number": invoice.number,
            "invoice_status": invoice.status,
        }
        if line is None:
            continue
        where["line"] = line.position
        if invoice.status == InvoiceStatus.DRAFT:
            return answer(
                DRAFT_INVOICE,
                f"The period's invoice {invoice.invoice_id} is a draft: the event is counted "
                f"when it is finalized (at {_iso(invoice.finalize_at)}).",
                **where,
            )
        issued = invoice.issued_at
        if issued is not None and facts.arrived_at > issued:
            return answer(
                PERIOD_INVOICED_BEFORE_ARRIVAL,
                f"The period {_iso(invoice.period_start)} to {_iso(invoice.period_end)} was "
                f"invoiced ({invoice.number or invoice.invoice_id}, issued {_iso(issued)}) "
                "before the event arrived.",
                **where,
            )
        if facts.event is None:
            return answer(REFUSED, "The event was refused before its period was invoiced.")
        return answer(
            BILLED,
            f"Billed on invoice {invoice.number or invoice.invoice_id}, line {line.position} "
            f"({invoice.status}).",
            **where,
        )
    live = customer.live_at(moment)
    if not live:
        first = customer.subscriptions[0].anchor
        if moment < first:
            return answer(
                BEFORE_SUBSCRIPTION,
                f"The event's time {_iso(moment)} is before the customer's first subscription "
                f"started ({_iso(first)}).",
            )
        return answer(NOT_INVOICED, f"No subscription of the customer was live at {_iso(moment)}.")
    priced = set(
        ProductMeter.objects.filter(
            product_id__in={s.product_id for s in live}, meter_id=meter.id
        ).values_list("product_id", flat=True)
    )
    for subscription in live:
        if subscription.product_id not in priced:
            continue
        if (
            subscription.status == SubscriptionStatus.ACTIVE
            and moment >= subscription.current_period_start
        ):
            return answer(
                PERIOD_OPEN,
                f"The period {_iso(subscription.current_period_start)} to "
                f"{_iso(subscription.current_period_end)} is still open: the event is billed "
                "when it closes.",
                subscription_id=subscription.subscription_id,
                period_start=_iso(subscription.current_period_start),
                period_end=_iso(subscription.current_period_end),
            )
    if not priced:
        return answer(
            NOT_PRICED,
            f"No product the customer subscribes to prices meter {meter.id}: "
            f"{', '.join(sorted({s.product_id for s in live}))}.",
            subscription_id=live[0].subscription_id,
        )
    return answer(
        NOT_INVOICED,
        f"No invoice covers {_iso(moment)} for this meter (the subscription is {live[0].status}).",
        subscription_id=live[0].subscription_id,
    )


def _invoices_covering(customer_id: str, moment: datetime) -> list[Invoice]:
    """The customer's invoices whose period holds `moment`: current ones first (a void invoice
    after the one that replaced it)."""
    invoices = Invoice.objects.filter(
        customer_id=customer_id,
        kind=InvoiceKind.INVOICE,
        period_start__lte=moment,
        period_end__gt=moment,
    ).order_by("-created_at", "invoice_id")
    return sorted(invoices, key=lambda i: i.status == InvoiceStatus.VOID)


def _summary(stored: bool, refusals: list[RefusedEvent], meters: list[dict]) -> str:
    if not stored:
        return f"Refused at ingestion ({refusals[0].code}): {refusals[0].message}"
    if not meters:
        return "Stored, but no active meter counts events of this name (or a similar one)."
    billed = [m for m in meters if m["reason"] == BILLED]
    counted = [m for m in meters if m["counted"]]
    text = f"Stored; counted by {len(counted)} of {len(meters)} meters considered"
    if billed:
        text += "; billed on " + ", ".join(
            f"{m['billing']['invoice_number'] or m['billing']['invoice_id']} line "
            f"{m['billing']['line']}"
            for m in billed
        )
    reasons = sorted({m["reason"] for m in meters if m["reason"] != BILLED})
    if reasons:
        text += "; not billed: " + ", ".join(reasons)
    return text + "."
