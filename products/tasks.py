"""Celery entry points for the billing cycle and for collecting invoices; the rules are in
products/billing.py and products/payments.py."""

from celery import shared_task
from django.utils import timezone

from products import payments, proofs
from products.billing import run_billing_cycle


@shared_task(name="products.bill")
def bill() -> None:
    run_billing_cycle(now=timezone.now())


@shared_task(name="products.collect_payment")
def collect_payment(payment_id: str) -> None:
    """Queued when a payment is written (products/payment_outbox.py)."""
    payments.collect(payment_id, now=timezone.now())


@shared_task(name="products.collect_due_payments")
def collect_due_payments() -> None:
    """Dunning retries, payments whose task was lost or whose worker died, lost refunds."""
    if payments.provider_enabled():
        now = timezone.now()
        payments.collect_due(now=now)
        payments.settle_pending_refunds(now=now)


@shared_task(name="products.verify_invoices")
def verify_invoices() -> int:
    """Daily: every final usage line recomputed from the raw events; the result is kept."""
    return proofs.record_verification(since=None, now=timezone.now()).mismatch_count
