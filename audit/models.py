"""The audit log: one row per change to a meter, a price or a credit balance, never edited.

Written by audit/log.py in the same transaction as the change it describes, so a change that
rolls back leaves no row, and a row always describes a change that happened.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from billing_site.jsonutil import ExactJSONDecoder, ExactJSONEncoder


class Action(models.TextChoices):
    CREATED = "created"
    UPDATED = "updated"
    ARCHIVED = "archived"
    UNARCHIVED = "unarchived"
    DELETED = "deleted"
    UNDELETED = "undeleted"
    BALANCE_CHANGED = "balance_changed"
    FINALIZED = "finalized"
    PAID = "paid"
    VOIDED = "voided"
    REISSUED = "reissued"
    CREDIT_NOTE_ISSUED = "credit_note_issued"
    PLAN_CHANGED = "plan_changed"
    PLAN_CHANGE_SCHEDULED = "plan_change_scheduled"
    PLAN_CHANGE_CANCELLED = "plan_change_cancelled"
    CANCELLED = "cancelled"
    PAUSED = "paused"
    RESUMED = "resumed"
    PAYMENT_RETRIED = "payment_retried"
    REFUNDED = "refunded"
    PUT_ON_HOLD = "put_on_hold"
    REACTIVATED = "reactivated"


class ActorKind(models.TextChoices):
    USER = "user", "Staff user"
    API_KEY = "api_key", "API key"
    SYSTEM = "system", "System"


class AuditEntry(models.Model):
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_id = models.CharField(
        max_length=64, null=True, blank=True, help_text="The user's or the API key's id."
    )
    actor_name = models.CharField(max_length=150, help_text="User name, API key name or system.")
    object_type = models.CharField(
        max_length=64, help_text="app.model, e.g. meters.meter or credits.creditbalance."
    )
    object_id = models.CharField(max_length=255)
    action = models.CharField(max_length=24, choices=Action.choices)
    # Exact decimals: a price of 0.1 is recorded as the number 0.1, never as a float.
    before = models.JSONField(null=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder)
    after = models.JSONField(null=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder)
    details = models.JSONField(default=dict, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
            models.Index(fields=["actor_kind", "actor_id"], name="audit_actor"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.object_type} {self.object_id}"
