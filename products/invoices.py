"""The invoice lifecycle after the period close: draft -> issued -> paid | void, reissue of a void
invoice, credit notes for a paid one, and the upcoming invoice.

Each transition is one function here, the only way to make it: it locks the invoice (its
subscription first, as the period close does), checks the state, writes, records an audit row
and emits the webhook, all in one transaction. Nothing is deleted: a correction is a new invoice
that references the one it corrects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from audit import log as audit_log
from audit.models import Action
from billing_site.errors import Conflict, InvalidInput, NotFound
from billing_site.locks import lock_customer_slots
from products import billing, payment_outbox, proofs, webhook_events
from products.billing import LineDraft
from products.models import (
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    Subscription,
    SubscriptionStatus,
)
from webhooks.models import EventType

MAX_REASON_LENGTH = 500
MAX_REFERENCE_LENGTH = 255


class InvoiceStateConflict(Conflict):
    code = "INVOICE_STATE_CONFLICT"


def locked_invoice(invoice_id: str) -> Invoice:
    """The invoice, locked after its subscription (the period close's lock order)."""
    subscription_id = (
        Invoice.objects.filter(pk=invoice_id).values_list("subscription_id", flat=True).first()
    )
    if subscription_id is None:
        raise NotFound(f"No invoice {invoice_id}.")
    subscription = (
        Subscription.objects.select_for_update(of=("self",), no_key=True)
        .select_related("product", "customer")
        .get(pk=subscription_id)
    )
    invoice = Invoice.objects.select_for_update(of=("self",)).get(pk=invoice_id)
    invoice.subscription = subscription
    return invoice


def _require(invoice: Invoice, *statuses: str, doing: str) -> None:
    if invoice.status not in statuses:
        allowed = " or ".join(statuses)
        raise InvoiceStateConflict(
            f"Invoice {invoice.invoice_id} is {invoice.status}; only a {allowed} invoice can be "
            f"{doing}."
        )


def _audit(invoice: Invoice, action: str, before: dict | None, **details) -> None:
    audit_log.record(
        object_type="products.invoice",
        object_id=invoice.invoice_id,
        action=action,
        before=before,
        after=_state(invoice),
        details=details,
    )


def _state(invoice: Invoice) -> dict:
    return {
        "status": invoice.status,
        "number": invoice.number,
        "total_minor": invoice.total_minor,
        "payment_reference": invoice.payment_reference,
        "void_reason": invoice.void_reason,
    }


def _text(value: object, field: str, *, limit: int, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidInput.from_errors([{"field": field, "message": "Is required."}])
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InvalidInput.from_errors(
            [{"field": field, "message": f"Must be a string of at most {limit} characters."}]
        )
    return value.strip() or None


def finalize(invoice_id: str, *, now: datetime) -> Invoice:
    """Finalize a draft now, before its grace period ends (late events are then refused)."""
    with transaction.atomic():
        invoice = locked_invoice(invoice_id)
        _require(invoice, InvoiceStatus.DRAFT, doing="finalized")
        before = _state(invoice)
        billing.finalize_drafts([invoice], now=now)
        _audit(invoice, Action.FINALIZED, before)
    return invoice


def mark_paid(invoice_id: str, *, payment_reference: object = None, now: datetime) -> Invoice:
    """Record that an issued invoice was paid, with the payment system's reference if given."""
    reference = _text(
        payment_reference, "payment_reference", limit=MAX_REFERENCE_LENGTH, required=False
    )
    with transaction.atomic():
        invoice = locked_invoice(invoice_id)
        _require(invoice, InvoiceStatus.ISSUED, doing="marked paid")
        before = _state(invoice)
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = now
        invoice.payment_reference = reference
        invoice.save(update_fields=["status", "paid_at", "payment_reference"])
        _audit(invoice, Action.PAID, before)
        webhook_events.invoice_changed(EventType.INVOICE_PAID, [invoice])
    return invoice


def void(invoice_id: str, *, reason: object, now: datetime) -> Invoice:
    """Void an issued invoice (a paid one is corrected by a credit note instead; a draft is
    finalized first). Its period's events stay refused; `reissue` replaces it."""
    text = _text(reason, "reason", limit=MAX_REASON_LENGTH, required=True)
    with transaction.atomic():
        invoice = locked_invoice(invoice_id)
        if invoice.status == InvoiceStatus.PAID:
            raise InvoiceStateConflict(
                f"Invoice {invoice.invoice_id} is paid: correct it with a credit note."
            )
        _require(invoice, InvoiceStatus.ISSUED, doing="voided")
        before = _state(invoice)
        invoice.status = InvoiceStatus.VOID
        invoice.voided_at = now
        invoice.void_reason = text
        invoice.save(update_fields=["status", "voided_at", "void_reason"])
        _audit(invoice, Action.VOIDED, before)
        webhook_events.invoice_changed(EventType.INVOICE_VOIDED, [invoice])
    return invoice


def reissue(invoice_id: str, *, now: datetime) -> Invoice:
    """Replace a void invoice with a new one for the same period, recomputed from the raw events
    at the prices in force now. Credits are not deducted again: the credit lines are what the
    period's credit close took (read back in a rolled-back savepoint), its overage charge is
    carried over from the void invoice."""
    with transaction.atomic():
        old = locked_invoice(invoice_id)
        _require(old, InvoiceStatus.VOID, doing="reissued")
        if old.kind != InvoiceKind.INVOICE:
            raise InvoiceStateConflict("A credit note is not reissued; issue a new one.")
        if Invoice.objects.filter(replaces=old).exists():
            raise InvoiceStateConflict(f"Invoice {old.invoice_id} was already reissued.")
        subscription = old.subscription
        lock_customer_slots([subscription.customer_id], shared=False)
        lines = [
            line
            for line in billing.preview_lines(subscription, old.period, now=now)
            if line.kind != LineKind.CREDIT_OVERAGE
        ] + [
            _draft_of(line)
            for line in old.lines.filter(kind=LineKind.CREDIT_OVERAGE).order_by("position")
        ]
        new = _issue_document(
            subscription, old, lines, kind=InvoiceKind.INVOICE, now=now, replaces=old
        )
        _audit(new, Action.REISSUED, None, replaces=old.invoice_id)
    return new


def _draft_of(line: InvoiceLine) -> LineDraft:
    return LineDraft(
        kind=line.kind,
        description=line.description,
        amount_minor=line.amount_minor,
        meter_id=line.meter_id,
        consumed_units=line.consumed_units,
        free_threshold=line.free_threshold,
        free_units=line.free_units,
        chargeable_units=line.chargeable_units,
        unit_price=line.unit_price,
        credits_applied=line.credits_applied,
        tiers=line.tiers,
        packages=line.packages,
        limit_applied=line.limit_applied,
    )


@dataclass(frozen=True)
class CreditNoteLine:
    description: str
    amount_minor: int  # positive: how much of the invoice is given back


def credit_note(invoice_id: str, *, lines: object = None, reason: object, now: datetime) -> Invoice:
    """A negative invoice referencing an issued or paid one, giving back the given amounts (all
    of it without `lines`). Credit notes of an invoice never add up to more than its total."""
    text = _text(reason, "reason", limit=MAX_REASON_LENGTH, required=True)
    with transaction.atomic():
        original = locked_invoice(invoice_id)
        _require(original, InvoiceStatus.ISSUED, InvoiceStatus.PAID, doing="credited")
        if original.kind == InvoiceKind.CREDIT_NOTE:
            raise InvoiceStateConflict("A credit note cannot itself be credited.")
        already = -sum(original.credit_notes.values_list("total_minor", flat=True))
        remaining = original.total_minor - already
        wanted = _credit_note_lines(lines, remaining=remaining, reason=text or "")
        if sum(line.amount_minor for line in wanted) > remaining:
            raise InvalidInput.from_errors(
                [
                    {
                        "field": "lines",
                        "message": f"At most {remaining} minor units are left to credit.",
                    }
                ]
            )
        drafts = [
            LineDraft(
                kind=LineKind.CREDIT_NOTE,
                description=line.description,
                amount_minor=-line.amount_minor,
            )
            for line in wanted
        ]
        note = _issue_document(
            original.subscription, original, drafts, kind=InvoiceKind.CREDIT_NOTE, now=now
        )
        _audit(note, Action.CREDIT_NOTE_ISSUED, None, corrects=original.invoice_id, reason=text)
    return note


def _credit_note_lines(raw: object, *, remaining: int, reason: str) -> list[CreditNoteLine]:
    if raw is None:
        if remaining <= 0:
            raise InvoiceStateConflict("Nothing is left to credit on this invoice.")
        return [CreditNoteLine(reason, remaining)]
    if not isinstance(raw, list) or not 1 <= len(raw) <= 50:
        raise InvalidInput.from_errors(
            [{"field": "lines", "message": "Must be a list of 1 to 50 lines."}]
        )
    parsed = []
    for index, entry in enumerate(raw):
        field = f"lines[{index}]"
        if not isinstance(entry, dict) or set(entry) - {"description", "amount"}:
            raise InvalidInput.from_errors(
                [{"field": field, "message": "Must be {description, amount}."}]
            )
        amount = entry.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidInput.from_errors(
                [{"field": f"{field}.amount", "message": "Must be a positive whole minor unit."}]
            )
        description = _text(
            entry.get("description"), f"{field}.description", limit=500, required=True
        )
        parsed.append(CreditNoteLine(description or "", amount))
    return parsed


def _issue_document(
    subscription: Subscription,
    source: Invoice,
    lines: list[LineDraft],
    *,
    kind: str,
    now: datetime,
    replaces: Invoice | None = None,
) -> Invoice:
    """An issued, numbered invoice or credit note for `source`'s period, with its lines."""
    (number,) = billing.take_invoice_numbers(1, year=now.year)
    document = Invoice.objects.create(
        subscription=subscription,
        customer_id=subscription.customer_id,
        period_index=source.period_index,
        period_start=source.period_start,
        period_end=source.period_end,
        status=InvoiceStatus.ISSUED,
        kind=kind,
        number=number,
        currency=source.currency,
        total_minor=sum(line.amount_minor for line in lines),
        created_at=now,
        issued_at=now,
        replaces=replaces,
        corrects=source if kind == InvoiceKind.CREDIT_NOTE else None,
    )
    billing.write_lines([(document, lines)])
    proofs.prove_lines([document])
    document.subscription = subscription
    webhook_events.invoices_created([document])
    webhook_events.invoices_finalized([document])
    payment_outbox.schedule_first_payments([document], now=now)
    return document


def upcoming(subscription_id: str, *, now: datetime) -> tuple[Subscription, list[LineDraft]]:
    """The invoice the current period would close with if it closed now: the same computation
    as the close (credits included, in a rolled-back savepoint), written nowhere."""
    subscription = (
        Subscription.objects.select_related("product", "customer")
        .filter(pk=subscription_id)
        .first()
    )
    if subscription is None:
        raise NotFound(f"No subscription {subscription_id}.")
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise InvoiceStateConflict(
            f"Subscription {subscription_id} is {subscription.status}: it has no open period."
        )
    period = subscription.period(subscription.period_index)
    with transaction.atomic():
        return subscription, billing.preview_lines(subscription, period, now=now)
