"""The webhooks out, read back from the outbox and parsed with the official SDK's own types."""

from __future__ import annotations

import json

from dodopayments.types import (
    DunningRecoveredWebhookEvent,
    DunningStartedWebhookEvent,
    PaymentFailedWebhookEvent,
    PaymentSucceededWebhookEvent,
    RefundSucceededWebhookEvent,
    SubscriptionActiveWebhookEvent,
    SubscriptionOnHoldWebhookEvent,
)

from webhooks.models import WebhookEvent

SDK_TYPES = {
    "payment.succeeded": PaymentSucceededWebhookEvent,
    "payment.failed": PaymentFailedWebhookEvent,
    "dunning.started": DunningStartedWebhookEvent,
    "dunning.recovered": DunningRecoveredWebhookEvent,
    "subscription.on_hold": SubscriptionOnHoldWebhookEvent,
    "subscription.active": SubscriptionActiveWebhookEvent,
    "refund.succeeded": RefundSucceededWebhookEvent,
}


def payment_events() -> list[dict]:
    """The payment-related events written so far, in order, each validated by its SDK type."""
    found = []
    stored_events = WebhookEvent.objects.filter(event_type__in=SDK_TYPES)
    for stored in stored_events.order_by("created_at", "pk"):
        body = json.loads(stored.body)
        SDK_TYPES[stored.event_type].model_validate(body)
        found.append(body)
    return found


def event_types() -> list[str]:
    return [body["type"] for body in payment_events()]
