"""The customer's own view: portal sessions (one customer each, expiring, revocable) and the usage
alerts staff or the API set on a subscription's meter, with the crossings that fired them.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from billing_site.fields import NumericField
from billing_site.ids import new_id


def new_portal_session_id() -> str:
    return new_id("cps")


def new_usage_alert_id() -> str:
    return new_id("ual")


class PortalSession(models.Model):
    """One link handed out by `POST /customers/{id}/customer-portal/session`.

    Only the SHA-256 of the link's random token is stored, so the table cannot be turned back
    into working links. Logging out ends the session: the link and its cookie stop working.
    """

    id = models.CharField(
        primary_key=True, max_length=64, default=new_portal_session_id, editable=False
    )
    customer = models.ForeignKey(
        "products.Customer", on_delete=models.CASCADE, related_name="portal_sessions"
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    return_url = models.CharField(max_length=2000, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return self.id


class ThresholdKind(models.TextChoices):
    UNITS = "units"  # consumed units of the meter in the period
    AMOUNT = "amount"  # the meter's charge so far, in minor units of the product's currency


class UsageAlert(models.Model):
    """Fires `usage.threshold_reached` once per billing period when the meter's usage (or its
    charge so far) in the subscription's current period reaches `threshold`."""

    id = models.CharField(
        primary_key=True, max_length=64, default=new_usage_alert_id, editable=False
    )
    subscription = models.ForeignKey(
        "products.Subscription", on_delete=models.CASCADE, related_name="usage_alerts"
    )
    meter = models.ForeignKey("meters.Meter", on_delete=models.PROTECT, related_name="+")
    threshold_kind = models.CharField(max_length=6, choices=ThresholdKind.choices)
    threshold = NumericField(help_text="Units, or minor units of money for an amount.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["subscription", "meter", "threshold_kind", "threshold"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "meter", "threshold_kind", "threshold"],
                name="usage_alert_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(threshold__gt=0), name="usage_alert_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subscription_id} {self.meter_id} >= {self.threshold} {self.threshold_kind}"


class UsageAlertCrossing(models.Model):
    """An alert that fired in one period. The unique (alert, period_start) row is written in the
    transaction that writes the webhook, so a second run or worker can never fire it again."""

    alert = models.ForeignKey(UsageAlert, on_delete=models.CASCADE, related_name="crossings")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    consumed_units = NumericField()
    amount_minor = models.BigIntegerField()
    reached_at = models.DateTimeField()

    class Meta:
        ordering = ["-period_start", "alert"]
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "period_start"], name="usage_alert_once_per_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.alert_id} @ {self.period_start}"
