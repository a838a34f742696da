"""Credits: entitlements (the credit unit and its rules), grants, balances and the ledger.

A customer's balance for an entitlement is the sum of its ledger's balance changes, and equals
the remaining amount of its unexpired grants; overage (usage the balance could not cover) is the
sum of the ledger's overage changes. Every change goes through credits/ledger.py.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from billing_site.fields import NumericField
from billing_site.ids import new_credit_entitlement_id
from billing_site.jsonutil import ExactJSONDecoder, ExactJSONEncoder
from billing_site.periods import INTERVAL_UNITS

INTERVAL_CHOICES = [(unit, unit) for unit in INTERVAL_UNITS]


class OverageBehavior(models.TextChoices):
    FORGIVE_AT_RESET = "forgive_at_reset"
    INVOICE_AT_BILLING = "invoice_at_billing"
    CARRY_DEFICIT = "carry_deficit"
    CARRY_DEFICIT_AUTO_REPAY = "carry_deficit_auto_repay"


class CreditEntitlementQuerySet(models.QuerySet):
    def live(self) -> CreditEntitlementQuerySet:
        return self.filter(deleted_at__isnull=True)


class CreditEntitlement(models.Model):
    id = models.CharField(
        primary_key=True, max_length=64, default=new_credit_entitlement_id, editable=False
    )
    name = models.CharField(max_length=255)
    description = models.TextField(null=True, blank=True)
    unit = models.CharField(max_length=50)
    precision = models.PositiveSmallIntegerField(
        default=2, help_text="Decimal places of credit amounts; fixed after creation."
    )
    currency = models.CharField(max_length=3, null=True, blank=True)
    price_per_unit = NumericField(
        null=True, blank=True, help_text="Minor units per credit, for overage charges."
    )
    overage_enabled = models.BooleanField(default=False)
    overage_limit = NumericField(null=True, blank=True)
    overage_behavior = models.CharField(
        max_length=32, choices=OverageBehavior.choices, default=OverageBehavior.FORGIVE_AT_RESET
    )
    expires_after_days = models.PositiveIntegerField(null=True, blank=True)
    rollover_enabled = models.BooleanField(default=False)
    rollover_percentage = models.PositiveSmallIntegerField(null=True, blank=True)
    rollover_timeframe_count = models.PositiveIntegerField(null=True, blank=True)
    rollover_timeframe_interval = models.CharField(
        max_length=5, choices=INTERVAL_CHOICES, null=True, blank=True
    )
    max_rollover_count = models.PositiveIntegerField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = CreditEntitlementQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "id"]
        constraints = [
            # Checked in credits/services.py for a clear answer; here so that two concurrent
            # creates cannot both win.
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(deleted_at__isnull=True),
                name="credit_entitlement_live_name_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.unit})"


class ProductCreditEntitlement(models.Model):
    """An entitlement attached to a product: `credits_amount` granted every cycle, with overrides.

    Each override left empty falls back to the entitlement's own setting.
    """

    product = models.ForeignKey(
        "products.Product", on_delete=models.CASCADE, related_name="credit_entitlements"
    )
    credit_entitlement = models.ForeignKey(
        CreditEntitlement, on_delete=models.PROTECT, related_name="product_links"
    )
    credits_amount = NumericField()
    overage_enabled = models.BooleanField(null=True, blank=True)
    overage_limit = NumericField(null=True, blank=True)
    overage_behavior = models.CharField(
        max_length=32, choices=OverageBehavior.choices, null=True, blank=True
    )
    price_per_unit = NumericField(null=True, blank=True)
    currency = models.CharField(max_length=3, null=True, blank=True)
    expires_after_days = models.PositiveIntegerField(null=True, blank=True)
    rollover_enabled = models.BooleanField(null=True, blank=True)
    rollover_percentage = models.PositiveSmallIntegerField(null=True, blank=True)
    rollover_timeframe_count = models.PositiveIntegerField(null=True, blank=True)
    rollover_timeframe_interval = models.CharField(
        max_length=5, choices=INTERVAL_CHOICES, null=True, blank=True
    )
    max_rollover_count = models.PositiveIntegerField(null=True, blank=True)
    low_balance_threshold_percent = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["product", "credit_entitlement"], name="product_credit_entitlement_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.product_id} / {self.credit_entitlement_id}"


class CreditBalance(models.Model):
    """The row every change to one customer's credits locks first (FOR UPDATE)."""

    credit_entitlement = models.ForeignKey(
        CreditEntitlement, on_delete=models.PROTECT, related_name="balances"
    )
    customer = models.ForeignKey(
        "products.Customer", on_delete=models.PROTECT, related_name="credit_balances"
    )
    balance = NumericField(default=0)
    overage = NumericField(default=0)
    last_transaction_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["credit_entitlement", "customer"], name="credit_balance_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.balance} {self.credit_entitlement_id}"


class GrantSource(models.TextChoices):
    SUBSCRIPTION = "subscription"
    ONE_TIME = "one_time"
    ADDON = "addon"
    API = "api"
    ROLLOVER = "rollover"


class CreditGrant(models.Model):
    balance = models.ForeignKey(CreditBalance, on_delete=models.PROTECT, related_name="grants")
    initial_amount = NumericField()
    remaining_amount = NumericField()
    source_type = models.CharField(max_length=16, choices=GrantSource.choices)
    source_id = models.CharField(max_length=64, null=True, blank=True)
    parent_grant = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="rollovers"
    )
    rollover_count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    is_expired = models.BooleanField(default=False)
    is_rolled_over = models.BooleanField(default=False)
    metadata = models.JSONField(
        null=True, blank=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]  # oldest first: the order deductions take
        constraints = [
            models.CheckConstraint(
                condition=models.Q(remaining_amount__gte=0), name="credit_grant_not_negative"
            )
        ]

    def __str__(self) -> str:
        return f"grant {self.pk}: {self.remaining_amount}/{self.initial_amount}"


class TransactionType(models.TextChoices):
    CREDIT_ADDED = "credit_added"
    CREDIT_DEDUCTED = "credit_deducted"
    CREDIT_EXPIRED = "credit_expired"
    CREDIT_ROLLED_OVER = "credit_rolled_over"
    ROLLOVER_FORFEITED = "rollover_forfeited"
    OVERAGE_CHARGED = "overage_charged"
    OVERAGE_RESET = "overage_reset"
    AUTO_TOP_UP = "auto_top_up"
    MANUAL_ADJUSTMENT = "manual_adjustment"
    REFUND = "refund"


class LedgerEntry(models.Model):
    """One change to a balance, with the state before and after; never edited afterwards."""

    balance = models.ForeignKey(CreditBalance, on_delete=models.PROTECT, related_name="entries")
    transaction_type = models.CharField(max_length=24, choices=TransactionType.choices)
    is_credit = models.BooleanField()
    amount = NumericField(help_text="The size of the change, always positive.")
    balance_change = NumericField()
    overage_change = NumericField(default=0)
    balance_before = NumericField()
    balance_after = NumericField()
    overage_before = NumericField()
    overage_after = NumericField()
    grant = models.ForeignKey(
        CreditGrant, on_delete=models.PROTECT, null=True, blank=True, related_name="entries"
    )
    reference_type = models.CharField(max_length=32, null=True, blank=True)
    reference_id = models.CharField(max_length=64, null=True, blank=True)
    description = models.CharField(max_length=1000, null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    metadata = models.JSONField(
        default=dict, blank=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder
    )
    created_by = models.CharField(max_length=150, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(
                fields=["balance", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="ledger_idempotency_key_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.transaction_type} {self.amount}"


class UsageDeduction(models.Model):
    """The checkpoint of usage-to-credits conversion for one subscription, meter and period.

    `credits_due` is what the usage so far is worth; `credits_deducted` and `credits_blocked`
    (beyond the overage limit) add up to it. A run deducts only the difference, under this row's
    lock, so usage is never deducted twice or skipped.
    """

    subscription = models.ForeignKey(
        "products.Subscription", on_delete=models.CASCADE, related_name="+"
    )
    meter = models.ForeignKey("meters.Meter", on_delete=models.PROTECT, related_name="+")
    period_index = models.PositiveIntegerField()
    credit_entitlement = models.ForeignKey(
        CreditEntitlement, on_delete=models.PROTECT, related_name="+"
    )
    consumed_units = NumericField(default=0)
    credits_due = NumericField(default=0)
    credits_deducted = NumericField(default=0)
    credits_blocked = NumericField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "meter", "period_index"], name="usage_deduction_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subscription_id} {self.meter_id} #{self.period_index}"
