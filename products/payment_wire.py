"""Payments, refunds and dunning as webhooks (and the staff pages) show them: Dodo's `Payment`,
`Refund` and dunning payloads, read off the SDK's types, plus the invoice they collect.
"""

from __future__ import annotations

from django.conf import settings

from billing_site.wire import timestamp_text
from products.models import (
    Dunning,
    InvoiceKind,
    InvoiceLine,
    LineKind,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from products.wire import customer_details, invoice_data

# Dodo's IntentStatus for ours: an attempt not finished yet is `processing`.
WIRE_STATUS = {
    PaymentStatus.SCHEDULED: "processing",
    PaymentStatus.PROCESSING: "processing",
    PaymentStatus.SUCCEEDED: "succeeded",
    PaymentStatus.FAILED: "failed",
    PaymentStatus.CANCELLED: "cancelled",
}


def refund_list_item(refund: Refund) -> dict:
    return {
        "business_id": settings.BUSINESS_ID,
        "created_at": timestamp_text(refund.created_at),
        "is_partial": refund.amount_minor < refund.payment.amount_minor,
        "payment_id": refund.payment_id,
        "refund_id": refund.refund_id,
        "status": refund.status,
        "amount": refund.amount_minor,
        "currency": refund.currency,
        "reason": refund.reason,
    }


def _includes_usage(lines: list[InvoiceLine]) -> bool:
    return any(line.kind in (LineKind.USAGE, LineKind.CREDIT_OVERAGE) for line in lines)


def payment_data(payment: Payment) -> dict:
    """Dodo's Payment for one attempt (`retry_attempt` 0 is the first)."""
    subscription = payment.subscription
    refunds = list(payment.refunds.all())
    refunded = sum(r.amount_minor for r in refunds if r.status == RefundStatus.SUCCEEDED)
    return {
        "payment_id": payment.payment_id,
        "business_id": settings.BUSINESS_ID,
        "brand_id": settings.BUSINESS_ID,
        "billing": subscription.billing,
        "created_at": timestamp_text(payment.created_at),
        "updated_at": timestamp_text(payment.updated_at),
        "currency": payment.currency,
        "customer": customer_details(payment.customer),
        "digital_products_delivered": False,
        "disputes": [],
        "includes_usage": _includes_usage(list(payment.invoice.lines.all())),
        "is_multi_subscription": False,
        "is_update_payment_method": False,
        "metadata": payment.metadata,
        "payment_provider": payment.provider,
        "refunds": [refund_list_item(refund) for refund in refunds],
        "refund_status": (
            None if not refunded else "full" if refunded >= payment.amount_minor else "partial"
        ),
        "retry_attempt": payment.retry_attempt,
        "service_periods": [],
        "settlement_amount": payment.amount_minor,
        "settlement_currency": payment.currency,
        "subscription_ids": [payment.subscription_id],
        "subscription_id": payment.subscription_id,
        "total_amount": payment.amount_minor,
        "tax": None,
        "charge_type": "on_demand" if payment.invoice.kind == InvoiceKind.CHARGE else "renewal",
        "status": WIRE_STATUS[PaymentStatus(payment.status)],
        "error_code": payment.error_code,
        "error_message": payment.error_message,
        "invoice_id": payment.invoice_id,
        "payment_method": "card" if payment.payment_method_id else None,
        "payment_method_id": payment.payment_method_id,
        "payment_method_type": payment.card_network,
        "card_last_four": payment.card_last_four,
        "card_network": payment.card_network,
    }


def payment_event_data(payment: Payment) -> dict:
    """payment.succeeded / payment.failed: the payment, and the invoice it collects (an
    extension field)."""
    return {**payment_data(payment), "invoice": invoice_data(payment.invoice)}


def refund_event_data(refund: Refund) -> dict:
    """refund.succeeded: Dodo's Refund, plus its payment and invoice (extension fields)."""
    payment = refund.payment
    return {
        **refund_list_item(refund),
        "brand_id": settings.BUSINESS_ID,
        "customer": customer_details(payment.customer),
        "metadata": {},
        "payment": payment_data(payment),
        "invoice": invoice_data(payment.invoice),
    }


def dunning_event_data(dunning: Dunning, payment: Payment) -> dict:
    """dunning.started / dunning.recovered. The subscription stays active while the retries run,
    which is Dodo's `past_due` window: that is the trigger state named."""
    return {
        "brand_id": settings.BUSINESS_ID,
        "created_at": timestamp_text(dunning.created_at),
        "customer_id": dunning.customer_id,
        "status": dunning.status,
        "subscription_id": dunning.subscription_id,
        "trigger_state": "past_due",
        "payment_id": payment.payment_id,
        "payment": payment_data(payment),
        "invoice": invoice_data(payment.invoice),
    }
