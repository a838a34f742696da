"""The catalogue and who buys it: customers, products, subscriptions and invoices."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import models
from django.utils import timezone

from billing_site.fields import NumericField
from billing_site.ids import (
    new_checkout_session_id,
    new_customer_id,
    new_invoice_id,
    new_payment_id,
    new_product_id,
    new_refund_id,
    new_scheduled_change_id,
    new_subscription_id,
)
from billing_site.jsonutil import ExactJSONDecoder, ExactJSONEncoder
from billing_site.periods import INTERVAL_UNITS, BillingInterval, Period, period_start


class Customer(models.Model):
    customer_id = models.CharField(
        primary_key=True, max_length=64, default=new_customer_id, editable=False
    )
    email = models.CharField(max_length=254, db_index=True)
    name = models.CharField(max_length=255)
    phone_number = models.CharField(max_length=32, null=True, blank=True)
    preferred_locale = models.CharField(max_length=35, null=True, blank=True)
    metadata = models.JSONField(
        default=dict, blank=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    class Meta:
        ordering = ["-created_at", "customer_id"]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class ProductQuerySet(models.QuerySet):
    def active(self) -> ProductQuerySet:
        return self.filter(archived_at__isnull=True)


class Product(models.Model):
    """A usage-based price: a fixed fee per cycle plus metered charges."""

    product_id = models.CharField(
        primary_key=True, max_length=64, default=new_product_id, editable=False
    )
    name = models.CharField(max_length=255)
    description = models.TextField(null=True, blank=True)
    tax_category = models.CharField(max_length=32, default="saas")
    currency = models.CharField(max_length=3)
    fixed_price_minor = models.BigIntegerField(default=0, help_text="Per cycle, in minor units.")
    interval_unit = models.CharField(max_length=5, choices=[(u, u) for u in INTERVAL_UNITS])
    interval_count = models.PositiveIntegerField(default=1)
    subscription_period_count = models.PositiveIntegerField(default=20)
    subscription_period_interval = models.CharField(
        max_length=5, choices=[(u, u) for u in INTERVAL_UNITS], default="Year"
    )
    tax_inclusive = models.BooleanField(null=True, blank=True)
    grace_period_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="How long a closed period's invoice stays a draft that late events still "
        "enter; empty: BILLING_GRACE_PERIOD_MINUTES.",
    )
    metadata = models.JSONField(
        default=dict, blank=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder
    )
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    # Extensions (products/pricing.py, cycle_limit): hold the cycle's usage lines together.
    minimum_amount = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Minor units: the cycle's usage lines together bill at least this.",
    )
    maximum_amount = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Minor units: the cycle's usage lines together bill at most this.",
    )

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "product_id"]

    def __str__(self) -> str:
        return self.name

    @property
    def interval(self) -> BillingInterval:
        return BillingInterval(self.interval_unit, self.interval_count)


class ProductMeter(models.Model):
    """A meter attached to a product: priced per unit after a free threshold, or in credits."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="product_meters")
    meter = models.ForeignKey("meters.Meter", on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField(default=0)
    price_per_unit = NumericField(
        null=True, blank=True, help_text="In the currency's minor unit: 0.1 is a tenth of a cent."
    )
    free_threshold = models.BigIntegerField(default=0, help_text="Units free each cycle.")
    credit_entitlement = models.ForeignKey(
        "credits.CreditEntitlement",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Bill this meter in credits instead of money.",
    )
    meter_units_per_credit = NumericField(null=True, blank=True)
    # Extensions of Dodo's price (products/pricing.py); all empty for Dodo's own price.
    tiers = models.JSONField(
        null=True,
        blank=True,
        encoder=ExactJSONEncoder,
        decoder=ExactJSONDecoder,
        help_text='[{"up_to": "1000" or null, "unit_price": "0.1", "flat_fee": 0}, ...]',
    )
    tier_mode = models.CharField(
        max_length=9,
        null=True,
        blank=True,
        choices=[("graduated", "graduated"), ("volume", "volume")],
    )
    package_size = NumericField(
        null=True, blank=True, help_text="price_per_unit is the price of this many units."
    )
    package_rounding = models.CharField(
        max_length=4,
        null=True,
        blank=True,
        choices=[("up", "per started package"), ("down", "per completed package")],
    )
    minimum_amount = models.BigIntegerField(
        null=True, blank=True, help_text="The line's least amount, in minor units."
    )
    maximum_amount = models.BigIntegerField(
        null=True, blank=True, help_text="The line's greatest amount, in minor units."
    )

    class Meta:
        ordering = ["product", "position"]
        constraints = [
            models.UniqueConstraint(fields=["product", "meter"], name="product_meter_unique")
        ]

    def __str__(self) -> str:
        return f"{self.product_id} / {self.meter_id}"


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active"
    # Every automatic payment attempt of an invoice failed (products/payments.py): no period
    # closes until a later payment succeeds and the subscription is active again.
    ON_HOLD = "on_hold"
    # PATCH status "paused" (products/plan_changes.py): the period closed at the pause, no
    # period runs until status "active" starts one at the resume moment.
    PAUSED = "paused"
    CANCELLED = "cancelled"


class Subscription(models.Model):
    """A customer's subscription; billing periods are counted from `anchor`.

    `period_index` is the current (open) period; everything before its start has an invoice.
    Those invoices are drafts during their grace period and final after it: `finalized_until`
    is the line before which late events are refused (null while nothing is final).

    With `trial_period_days` N > 0, period 0 is the free trial [anchor, anchor + N days) and the
    paid periods are counted from its end: period k >= 1 is interval number k - 1 from there.

    A plan change or cancellation that takes effect now ends the current period early (its
    invoice records the short period) and re-anchors the cycle: `cycle_anchor` is the change
    moment and `cycle_offset` the index of the period that starts there, so period k >=
    `cycle_offset` is interval number k - `cycle_offset` from `cycle_anchor`. Indexes keep
    growing (one invoice per index), `anchor` stays the start of all billed history (ingestion
    refuses events in [anchor, finalized_until)), and periods before `cycle_offset` are known
    from their invoices only.

    A change that keeps the billing cycle (`prorated_immediately_keep_cycle`,
    `difference_immediately`) moves `cycle_offset` one index on without moving the grid: the
    period after the change is the grid's period that contains `lead_start`, cut to start
    there (the *lead* up to the original next billing date). It covers `lead_share` of a full
    period: its fixed fee (when `lead_fee`) and free thresholds are scaled by it.

    A moved billing date (PATCH `next_billing_date`) re-anchors the cycle at the new date with
    `cycle_offset` one past the current period: the current period (`cycle_offset` - 1, the
    only state where the current index is below the offset) runs from its start to
    `cycle_anchor`, and the following periods are counted from there.
    """

    subscription_id = models.CharField(
        primary_key=True, max_length=64, default=new_subscription_id, editable=False
    )
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="subscriptions")
    quantity = models.PositiveIntegerField(default=1)
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    anchor = models.DateTimeField(help_text="Start of the first billing period.")
    interval_unit = models.CharField(max_length=5, choices=[(u, u) for u in INTERVAL_UNITS])
    interval_count = models.PositiveIntegerField(default=1)
    period_index = models.PositiveIntegerField(default=0)
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    finalized_until = models.DateTimeField(null=True, blank=True, editable=False)
    cycle_anchor = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Where the cycle restarted last."
    )
    cycle_offset = models.PositiveIntegerField(default=0, editable=False)
    lead_start = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Start of a kept cycle's short period."
    )
    lead_share = NumericField(null=True, blank=True, editable=False)
    lead_fee = models.BooleanField(default=True, editable=False)
    trial_period_days = models.PositiveIntegerField(default=0)
    cancel_at_next_billing_date = models.BooleanField(default=False)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=64, null=True, blank=True)
    cancellation_comment = models.TextField(null=True, blank=True)
    cancellation_feedback = models.CharField(max_length=32, null=True, blank=True)
    customer_business_name = models.CharField(max_length=255, null=True, blank=True)
    billing = models.JSONField(
        default=dict, blank=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder
    )
    metadata = models.JSONField(
        default=dict, blank=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "subscription_id"]
        indexes = [
            models.Index(fields=["customer", "status"], name="subscription_customer"),
            # Billing claims due subscriptions in this order, LIMIT n: the index hands them over
            # already sorted, so a claim reads a batch, not every due subscription.
            models.Index(fields=["current_period_end", "subscription_id"], name="subscription_due"),
        ]

    def __str__(self) -> str:
        return self.subscription_id

    @property
    def awaits_finalization(self) -> bool:
        """Whether the invoice of the period before the current one is still a draft."""
        if self.period_index == 0:
            return False
        return self.finalized_until is None or self.finalized_until < self.current_period_start

    @property
    def interval(self) -> BillingInterval:
        return BillingInterval(self.interval_unit, self.interval_count)

    @property
    def trial_end(self) -> datetime | None:
        """The end of the free trial (the first paid period's start), None without a trial."""
        if not self.trial_period_days:
            return None
        return self.anchor + timedelta(days=self.trial_period_days)

    def is_trial(self, index: int) -> bool:
        return index == 0 and self.trial_period_days > 0

    def period(self, index: int) -> Period:
        """Period `index`: the grid's (`full_period`), a lead cut to start at `lead_start`."""
        full = self.full_period(index)
        if self.lead_start is not None and full.start < self.lead_start < full.end:
            return Period(index, self.lead_start, full.end)
        return full

    def lead_terms(self, period: Period) -> tuple[Decimal, bool] | None:
        """(share of a full period, whether the fee is billed) when `period` is a lead."""
        if self.lead_start is None or self.lead_share is None or period.start != self.lead_start:
            return None
        return Decimal(self.lead_share), self.lead_fee

    @property
    def billing_date_moved(self) -> bool:
        """Whether the current period's end was moved (PATCH `next_billing_date`)."""
        return self.cycle_anchor is not None and self.period_index == self.cycle_offset - 1

    def full_period(self, index: int) -> Period:
        """Period `index` on the cycle's grid, whole (what proration shares are taken of)."""
        if self.cycle_anchor is not None and index == self.period_index == self.cycle_offset - 1:
            # A moved period (`billing_date_moved`) is whole as it is: its start to the new date.
            return Period(index, self.current_period_start, self.cycle_anchor)
        if self.cycle_anchor is not None and index >= self.cycle_offset:
            k = index - self.cycle_offset
            return Period(
                index,
                period_start(self.cycle_anchor, self.interval, k),
                period_start(self.cycle_anchor, self.interval, k + 1),
            )
        trial_end = self.trial_end
        if trial_end is None:
            start = period_start(self.anchor, self.interval, index)
            return Period(index, start, period_start(self.anchor, self.interval, index + 1))
        if index == 0:
            return Period(0, self.anchor, trial_end)
        start = period_start(trial_end, self.interval, index - 1)
        return Period(index, start, period_start(trial_end, self.interval, index))


class ScheduledPlanChange(models.Model):
    """A plan change waiting for the end of the current period (`effective_at:
    next_billing_date`): the billing cycle applies it when it closes that period, as the new
    cycle of the new product starting there. At most one per subscription; a new one replaces
    it, `DELETE .../change-plan/scheduled` removes it."""

    id = models.CharField(
        primary_key=True, max_length=64, default=new_scheduled_change_id, editable=False
    )
    subscription = models.OneToOneField(
        Subscription, on_delete=models.CASCADE, related_name="scheduled_change"
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"{self.subscription_id} -> {self.product_id}"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft"
    ISSUED = "issued"
    PAID = "paid"
    VOID = "void"


class InvoiceKind(models.TextChoices):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"
    # An on-demand charge (POST /api/subscriptions/{id}/charge): its own invoice, dated in the
    # period it was made in, beside that period's invoice.
    CHARGE = "charge"


class Invoice(models.Model):
    """One live invoice per subscription and billing period (a void one may be replaced).

    A draft is created when the period ends and is finalized (lines frozen, `number` assigned,
    status issued) when its grace period is over; see products/invoices.py for every transition.
    A credit note is a negative invoice that `corrects` a paid one.
    """

    invoice_id = models.CharField(
        primary_key=True, max_length=64, default=new_invoice_id, editable=False
    )
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="invoices"
    )
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    period_index = models.PositiveIntegerField()
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(
        max_length=8, choices=InvoiceStatus.choices, default=InvoiceStatus.ISSUED
    )
    kind = models.CharField(max_length=11, choices=InvoiceKind.choices, default=InvoiceKind.INVOICE)
    number = models.CharField(max_length=32, null=True, blank=True, unique=True)
    currency = models.CharField(max_length=3)
    total_minor = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    finalize_at = models.DateTimeField(
        null=True, blank=True, help_text="When the grace period of a draft ends."
    )
    issued_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    payment_reference = models.CharField(max_length=255, null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=500, null=True, blank=True)
    replaces = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="replaced_by"
    )
    corrects = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="credit_notes"
    )

    class Meta:
        ordering = ["-period_start", "invoice_id"]
        constraints = [
            # The database itself refuses a second live invoice for the same period; a void one
            # may be replaced by a reissue, and credit notes stand beside the invoice.
            models.UniqueConstraint(
                fields=["subscription", "period_index"],
                condition=models.Q(kind="invoice") & ~models.Q(status="void"),
                name="invoice_once_per_period",
            )
        ]
        indexes = [
            models.Index(
                fields=["finalize_at"],
                condition=models.Q(status="draft"),
                name="invoice_draft_due",
            )
        ]

    def __str__(self) -> str:
        return self.number or self.invoice_id

    @property
    def period(self) -> Period:
        return Period(self.period_index, self.period_start, self.period_end)


class InvoiceSequence(models.Model):
    """The last invoice number given in a year: locked by the finalization that takes the next,
    so numbers are sequential and gap-free (a rolled-back finalization gives its number back)."""

    year = models.PositiveIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last_number}"


class LineKind(models.TextChoices):
    FIXED_FEE = "fixed_fee"
    USAGE = "usage"
    CREDIT_OVERAGE = "credit_overage"
    CREDIT_NOTE = "credit_note"
    CHARGE = "charge"
    # The product's cycle minimum or maximum (an extension): what it adds to or takes off the
    # usage lines above it.
    USAGE_LIMIT = "usage_limit"


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=16, choices=LineKind.choices)
    meter = models.ForeignKey(
        "meters.Meter", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    description = models.CharField(max_length=500)
    consumed_units = NumericField(null=True, blank=True)
    free_units = NumericField(null=True, blank=True, help_text="Consumed units that were free.")
    free_threshold = models.BigIntegerField(null=True, blank=True)
    chargeable_units = NumericField(null=True, blank=True)
    unit_price = NumericField(null=True, blank=True, help_text="Minor units per unit.")
    credits_applied = NumericField(null=True, blank=True)
    amount_minor = models.BigIntegerField()
    # Extensions: how a tiered, packaged or limited price made the amount (products/pricing.py).
    tiers = models.JSONField(
        null=True,
        blank=True,
        encoder=ExactJSONEncoder,
        decoder=ExactJSONDecoder,
        help_text="Units and exact amount of each tier reached.",
    )
    packages = NumericField(null=True, blank=True, help_text="Packages billed.")
    limit_applied = models.CharField(
        max_length=14, null=True, blank=True, help_text="maximum_amount or minimum_amount."
    )
    # Extension: the proof of a usage line, written when its invoice becomes final
    # (products/proofs.py): how many events it counted and the SHA-256 of their sorted ids.
    events_counted = models.BigIntegerField(null=True, blank=True)
    events_digest = models.CharField(max_length=64, null=True, blank=True)

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position")
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id} #{self.position}"


class InvoiceVerification(models.Model):
    """One run of `verify_invoices`: every final usage line recomputed from the raw events."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    since = models.DateTimeField(null=True, blank=True)
    lines_verified = models.BigIntegerField()
    events_verified = models.BigIntegerField()
    mismatch_count = models.BigIntegerField()
    # The first mismatches (at most products.proofs.MAX_REPORTED), each with what differs.
    mismatches = models.JSONField(default=list, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder)

    class Meta:
        ordering = ["-finished_at"]
        get_latest_by = "finished_at"

    def __str__(self) -> str:
        return f"verification of {self.finished_at:%Y-%m-%d %H:%M}"


# --- collecting the money (products/payments.py) -------------------------------------------------


class ProviderCustomer(models.Model):
    """A customer's counterpart at the payment provider and the payment method saved there."""

    customer = models.OneToOneField(
        Customer, on_delete=models.PROTECT, primary_key=True, related_name="provider_customer"
    )
    provider = models.CharField(max_length=16)
    provider_customer_id = models.CharField(max_length=255, unique=True)
    # The last payment-method session handed out: its method is adopted once it succeeds.
    setup_intent_id = models.CharField(max_length=255, null=True, blank=True)
    payment_method_id = models.CharField(max_length=255, null=True, blank=True)
    card_network = models.CharField(max_length=32, null=True, blank=True)
    card_type = models.CharField(max_length=32, null=True, blank=True)
    card_last_four = models.CharField(max_length=4, null=True, blank=True)
    card_exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    card_exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    payment_method_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return self.provider_customer_id

    @property
    def payment_method_label(self) -> str:
        if not self.payment_method_id:
            return "none saved"
        card = f"{self.card_network or 'card'} ending {self.card_last_four or '????'}"
        if self.card_exp_month and self.card_exp_year:
            card += f", expires {self.card_exp_month:02d}/{self.card_exp_year}"
        return card


class PaymentStatus(models.TextChoices):
    SCHEDULED = "scheduled"  # waits for `due_at`: the first attempt or a dunning retry
    PROCESSING = "processing"  # claimed: the provider call may be under way (lease: `due_at`)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # its invoice was no longer issued when its turn came


class Payment(models.Model):
    """One attempt to collect an invoice (Dodo's payment; `retry_attempt` 0 is the first).

    Written `scheduled` in the transaction that issues the invoice (or that records the failed
    attempt before it), sent to the provider after commit by whichever worker claims it. The
    idempotency key is derived from the invoice and the attempt number, so the provider charges
    one attempt once however often it is sent.
    """

    payment_id = models.CharField(
        primary_key=True, max_length=64, default=new_payment_id, editable=False
    )
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="payments"
    )
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="payments")
    retry_attempt = models.PositiveSmallIntegerField(default=0)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=12, choices=PaymentStatus.choices, default=PaymentStatus.SCHEDULED
    )
    due_at = models.DateTimeField(
        null=True, blank=True, help_text="When the attempt is made; while processing, its lease."
    )
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When the provider was first asked to charge it."
    )
    provider = models.CharField(max_length=16)
    idempotency_key = models.CharField(max_length=128, unique=True)
    provider_payment_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    payment_method_id = models.CharField(max_length=255, null=True, blank=True)
    card_network = models.CharField(max_length=32, null=True, blank=True)
    card_last_four = models.CharField(max_length=4, null=True, blank=True)
    error_code = models.CharField(max_length=100, null=True, blank=True)
    error_message = models.CharField(max_length=500, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "payment_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "retry_attempt"], name="payment_attempt_once"
            ),
        ]
        indexes = [
            models.Index(
                fields=["due_at"],
                condition=models.Q(status__in=["scheduled", "processing"]),
                name="payment_due",
            )
        ]

    def __str__(self) -> str:
        return self.payment_id


class DunningStatus(models.TextChoices):
    RECOVERING = "recovering"
    RECOVERED = "recovered"
    EXHAUSTED = "exhausted"


class Dunning(models.Model):
    """The retries of an invoice whose first payment failed (Dodo's dunning attempt)."""

    invoice = models.OneToOneField(
        Invoice, on_delete=models.PROTECT, primary_key=True, related_name="dunning"
    )
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="dunnings"
    )
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=DunningStatus.choices)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.invoice_id}: {self.status}"


class RefundStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Refund(models.Model):
    refund_id = models.CharField(
        primary_key=True, max_length=64, default=new_refund_id, editable=False
    )
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=RefundStatus.choices)
    reason = models.CharField(max_length=500, null=True, blank=True)
    provider_refund_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    error_message = models.CharField(max_length=500, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "refund_id"]

    def __str__(self) -> str:
        return self.refund_id


class ProviderEvent(models.Model):
    """A webhook the payment provider sent, by its own id: each is applied once."""

    event_id = models.CharField(primary_key=True, max_length=255)
    provider = models.CharField(max_length=16)
    event_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=255, null=True, blank=True)
    outcome = models.CharField(max_length=200)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class CheckoutStatus(models.TextChoices):
    OPEN = "open"
    COMPLETED = "completed"


class CheckoutSession(models.Model):
    """Dodo's checkout session: what a merchant asked for (`POST /checkouts`), kept until the
    customer completes the page at `/checkout/{session_id}` (products/checkout.py).

    The customer is `customer` when the merchant named one, else `new_customer`'s details,
    created only at completion. Completion sets `subscription` once (the row lock and the
    one-to-one make a double submit start one subscription)."""

    session_id = models.CharField(
        primary_key=True, max_length=64, default=new_checkout_session_id, editable=False
    )
    status = models.CharField(
        max_length=12, choices=CheckoutStatus.choices, default=CheckoutStatus.OPEN
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(default=1)
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # {email, name, phone_number} of a customer created at completion; {} when none was given.
    new_customer = models.JSONField(default=dict, blank=True)
    billing_address = models.JSONField(null=True, blank=True)
    return_url = models.CharField(max_length=2048, null=True, blank=True)
    cancel_url = models.CharField(max_length=2048, null=True, blank=True)
    metadata = models.JSONField(
        default=dict, blank=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder
    )
    trial_period_days = models.PositiveIntegerField(null=True, blank=True)
    customer_business_name = models.CharField(max_length=255, null=True, blank=True)
    minimal_address = models.BooleanField(default=False)
    # The page's behaviour: Dodo's feature_flags and customization as given (checked at creation).
    feature_flags = models.JSONField(default=dict, blank=True)
    customization = models.JSONField(default=dict, blank=True)
    allowed_payment_method_types = models.JSONField(null=True, blank=True)
    setup_intent_id = models.CharField(max_length=255, null=True, blank=True)
    setup_client_secret = models.CharField(max_length=255, null=True, blank=True)
    payment_method_id = models.CharField(max_length=255, null=True, blank=True)
    card_saved_at = models.DateTimeField(null=True, blank=True)
    subscription = models.OneToOneField(
        Subscription,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="checkout_session",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "session_id"]

    def __str__(self) -> str:
        return self.session_id

    def is_expired(self, now: datetime) -> bool:
        return self.status == CheckoutStatus.OPEN and now >= self.expires_at

    def flag(self, name: str, default: bool = False) -> bool:
        return bool(self.feature_flags.get(name, default))
