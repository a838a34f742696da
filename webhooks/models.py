"""Webhooks: endpoints staff register, the events sent to them and each delivery with its attempts.

An event's body is stored as the exact text that is signed and sent, so a retry or a redelivery
sends the same bytes and decimals stay exact. Deliveries are the outbox: written in the same
transaction as the change they report, sent after it commits (webhooks/delivery.py).
"""

from __future__ import annotations

import base64
import secrets

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from billing_site.ids import new_id
from webhooks.destinations import validate_endpoint_url


class EventType(models.TextChoices):
    """The wire names; staff see them as they are in the admin."""

    CREDIT_ADDED = "credit.added", "credit.added"
    CREDIT_DEDUCTED = "credit.deducted", "credit.deducted"
    CREDIT_EXPIRED = "credit.expired", "credit.expired"
    CREDIT_ROLLED_OVER = "credit.rolled_over", "credit.rolled_over"
    CREDIT_ROLLOVER_FORFEITED = "credit.rollover_forfeited", "credit.rollover_forfeited"
    CREDIT_OVERAGE_CHARGED = "credit.overage_charged", "credit.overage_charged"
    CREDIT_OVERAGE_RESET = "credit.overage_reset", "credit.overage_reset"
    CREDIT_MANUAL_ADJUSTMENT = "credit.manual_adjustment", "credit.manual_adjustment"
    CREDIT_BALANCE_LOW = "credit.balance_low", "credit.balance_low"
    SUBSCRIPTION_RENEWED = "subscription.renewed", "subscription.renewed"
    SUBSCRIPTION_PLAN_CHANGED = "subscription.plan_changed", "subscription.plan_changed"
    SUBSCRIPTION_CANCELLED = "subscription.cancelled", "subscription.cancelled"
    SUBSCRIPTION_PAUSED = "subscription.paused", "subscription.paused"
    INVOICE_CREATED = "invoice.created", "invoice.created"
    # Collecting invoices (products/payments.py), Dodo's types.
    PAYMENT_SUCCEEDED = "payment.succeeded", "payment.succeeded"
    PAYMENT_FAILED = "payment.failed", "payment.failed"
    SUBSCRIPTION_ON_HOLD = "subscription.on_hold", "subscription.on_hold"
    SUBSCRIPTION_ACTIVE = "subscription.active", "subscription.active"
    DUNNING_STARTED = "dunning.started", "dunning.started"
    DUNNING_RECOVERED = "dunning.recovered", "dunning.recovered"
    REFUND_SUCCEEDED = "refund.succeeded", "refund.succeeded"
    # Extensions (not Dodo's types): the invoice lifecycle of products/invoices.py.
    INVOICE_FINALIZED = "invoice.finalized", "invoice.finalized"
    INVOICE_PAID = "invoice.paid", "invoice.paid"
    INVOICE_VOIDED = "invoice.voided", "invoice.voided"
    # Extension: a usage alert reached in the current period (portal/alerts.py).
    USAGE_THRESHOLD_REACHED = "usage.threshold_reached", "usage.threshold_reached"


def new_signing_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 24 random bytes in base64 (192 bits)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_message_id() -> str:
    """The `webhook-id` a receiver deduplicates on; the same for every attempt of an event."""
    return new_id("msg")


class WebhookEndpoint(models.Model):
    url = models.URLField(
        max_length=2000,
        validators=[validate_endpoint_url],
        help_text="Receives a signed POST for each event: an https URL on a public address.",
    )
    description = models.CharField(max_length=500, blank=True)
    enabled = models.BooleanField(
        default=True,
        help_text="A disabled endpoint is sent nothing; its queued deliveries wait until it is "
        "enabled again.",
    )
    event_types = ArrayField(
        models.CharField(max_length=64, choices=EventType.choices),
        default=list,
        blank=True,
        help_text="Leave empty to receive every event type.",
    )
    secret = models.CharField(
        max_length=100,
        default=new_signing_secret,
        editable=False,
        help_text="Give it to the receiver: it verifies the webhook-signature header with it.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.description or self.url

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookEvent(models.Model):
    """One event, sent to every endpoint that wanted it when it happened."""

    id = models.CharField(primary_key=True, max_length=64, default=new_message_id, editable=False)
    event_type = models.CharField(max_length=64, choices=EventType.choices, db_index=True)
    body = models.TextField(help_text="The exact JSON that is signed and sent.")
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"


class Delivery(models.Model):
    """One event to one endpoint, attempted until a 2xx answer or the last retry.

    `next_attempt_at` is when a pending delivery is due; while an attempt is under way it is
    pushed past the attempt's deadline (the lease), so no other worker sends the same delivery
    meanwhile, and `claim_token` names the claim, so an attempt that outlived its lease cannot
    record over the next one.
    """

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    redelivery_of = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="redeliveries",
        help_text="The delivery staff asked to send again.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="webhook_delivery_due",
            )
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk}"


class DeliveryAttempt(models.Model):
    """One POST: what the receiver answered, or why there was no answer."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The first few KB.")
    error = models.TextField(blank=True)
    succeeded = models.BooleanField()

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "number"], name="webhook_attempt_number_unique"
            )
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
