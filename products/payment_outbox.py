"""The payment outbox: a scheduled Payment for each invoice issued, written in the transaction that
issues it, so an invoice is collected if and only if it was issued. The provider is called after
commit by products/payments.py (never inside the billing transaction).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from celery import current_app
from django.conf import settings
from django.db import transaction

from products.models import Invoice, InvoiceKind, InvoiceStatus, Payment

TASK = "products.collect_payment"


def idempotency_key(invoice_id: str, retry_attempt: int) -> str:
    """The provider's idempotency key of one attempt: the same for every send of it."""
    return f"{invoice_id}-attempt-{retry_attempt}"


def schedule_first_payments(invoices: Iterable[Invoice], *, now: datetime) -> list[Payment]:
    """A first attempt, due now, for each issued invoice with something to collect (zero-total
    ones too: they are paid without a charge). Nothing with PAYMENT_PROVIDER=none."""
    if settings.PAYMENT_PROVIDER == "none":
        return []
    due = [
        invoice
        for invoice in invoices
        if invoice.status == InvoiceStatus.ISSUED
        and invoice.kind == InvoiceKind.INVOICE
        and invoice.total_minor >= 0
    ]
    payments = Payment.objects.bulk_create(
        Payment(
            invoice=invoice,
            subscription_id=invoice.subscription_id,
            customer_id=invoice.customer_id,
            retry_attempt=0,
            amount_minor=invoice.total_minor,
            currency=invoice.currency,
            due_at=now,
            provider=settings.PAYMENT_PROVIDER,
            idempotency_key=idempotency_key(invoice.invoice_id, 0),
            created_at=now,
            updated_at=now,
        )
        for invoice in due
    )
    queue_after_commit([payment.payment_id for payment in payments])
    return payments


def queue_after_commit(payment_ids: list[str]) -> None:
    """Send each payment's task once the transaction commits (by name: products/tasks.py sits
    above this module). A lost task costs latency only: beat collects every due payment."""
    if not payment_ids:
        return

    def queue() -> None:
        for payment_id in payment_ids:
            current_app.send_task(TASK, args=[payment_id])

    transaction.on_commit(queue, robust=True)
