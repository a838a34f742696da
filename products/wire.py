"""Products, customers, subscriptions and invoices as the API shows them (Dodo's wire shapes).

The API views and the webhook payloads (products/webhook_events.py) both build from here, so an
object looks the same whichever way it reaches a client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist

from billing_site.periods import Period
from billing_site.wire import decimal_text, timestamp_text
from products.models import Customer, Invoice, Product, ProductMeter, Subscription

# What subscription_data reads, for select_related / prefetch_related: a page of subscriptions
# (or a batch of webhooks) renders in a fixed number of queries, balances included.
SUBSCRIPTION_RELATED = (
    "customer",
    "customer__provider_customer",
    "product",
    "scheduled_change__product",
)
SUBSCRIPTION_PREFETCH = (
    "product__product_meters__meter",
    "product__credit_entitlements__credit_entitlement",
    "customer__credit_balances",
)


def product_price(product: Product) -> dict:
    """Dodo's usage-based price, with the cycle's minimum and maximum (extensions) when set."""
    limits = {
        name: getattr(product, name)
        for name in ("minimum_amount", "maximum_amount")
        if getattr(product, name) is not None
    }
    return {
        "type": "usage_based_price",
        "currency": product.currency,
        "fixed_price": product.fixed_price_minor,
        "payment_frequency_count": product.interval_count,
        "payment_frequency_interval": product.interval_unit,
        "subscription_period_count": product.subscription_period_count,
        "subscription_period_interval": product.subscription_period_interval,
        "tax_inclusive": product.tax_inclusive,
        "discount": 0,
        "purchasing_power_parity": False,
        "meters": [
            {
                **_priced_meter(pm),
                "credit_entitlement_id": pm.credit_entitlement_id,
                "meter_units_per_credit": decimal_text(pm.meter_units_per_credit),
            }
            for pm in product.product_meters.all()
        ],
        **limits,
    }


def _priced_meter(pm: ProductMeter) -> dict:
    """A product meter as both products and subscriptions show it."""
    return {
        "meter_id": pm.meter_id,
        "name": pm.meter.name,
        "description": pm.meter.description,
        "measurement_unit": pm.meter.measurement_unit,
        "price_per_unit": decimal_text(pm.price_per_unit),
        "free_threshold": pm.free_threshold,
        **pricing_extensions(pm),
    }


def pricing_extensions(pm: ProductMeter) -> dict:
    """The extensions of Dodo's meter price that are set (products/pricing.py), and only
    those: a product priced by Dodo's fields alone answers exactly as Dodo's API does."""
    shown: dict = {}
    if pm.tiers:
        shown.update(tier_mode=pm.tier_mode, tiers=pm.tiers)
    if pm.package_size is not None:
        shown.update(
            package_size=decimal_text(pm.package_size),
            package_rounding=pm.package_rounding or "up",
        )
    for name in ("minimum_amount", "maximum_amount"):
        if getattr(pm, name) is not None:
            shown[name] = getattr(pm, name)
    return shown


def _setting(link, name: str):
    """A product's override of an entitlement setting, else the entitlement's own."""
    value = getattr(link, name)
    return getattr(link.credit_entitlement, name) if value is None else value


def credit_links(product: Product) -> list[dict]:
    """Dodo's CreditEntitlementMappingResponse: the settings in force for this product (its
    overrides, else the entitlement's own)."""
    return [
        {
            "id": str(link.pk),
            "credit_entitlement_id": link.credit_entitlement_id,
            "credit_entitlement_name": link.credit_entitlement.name,
            "credit_entitlement_unit": link.credit_entitlement.unit,
            "credits_amount": decimal_text(link.credits_amount),
            "currency": _setting(link, "currency"),
            "price_per_unit": decimal_text(_setting(link, "price_per_unit")),
            "overage_enabled": bool(_setting(link, "overage_enabled")),
            "overage_behavior": _setting(link, "overage_behavior"),
            "overage_limit": decimal_text(_setting(link, "overage_limit")),
            "rollover_enabled": bool(_setting(link, "rollover_enabled")),
            "rollover_percentage": _setting(link, "rollover_percentage"),
            "rollover_timeframe_count": _setting(link, "rollover_timeframe_count"),
            "rollover_timeframe_interval": _setting(link, "rollover_timeframe_interval"),
            "max_rollover_count": _setting(link, "max_rollover_count"),
            "expires_after_days": _setting(link, "expires_after_days"),
            "low_balance_threshold_percent": link.low_balance_threshold_percent,
            "proration_behavior": "no_prorate",
            "trial_credits": None,
            "trial_credits_expire_after_trial": False,
        }
        for link in product.credit_entitlements.all()
    ]


def product_data(product: Product) -> dict:
    return {
        "product_id": product.product_id,
        "business_id": settings.BUSINESS_ID,
        "brand_id": settings.BUSINESS_ID,
        "name": product.name,
        "description": product.description,
        "tax_category": product.tax_category,
        "is_recurring": True,
        "license_key_enabled": False,
        "metadata": product.metadata,
        "price": product_price(product),
        "credit_entitlements": credit_links(product),
        "entitlements": [],
        "archived": product.archived_at is not None,
        "created_at": timestamp_text(product.created_at),
        "updated_at": timestamp_text(product.updated_at),
    }


def product_list_item(product: Product) -> dict:
    data = product_data(product)
    price = data.pop("price")
    data.update(currency=product.currency, price=product.fixed_price_minor, price_detail=price)
    return data


def customer_details(customer: Customer) -> dict:
    return {
        "customer_id": customer.customer_id,
        "email": customer.email,
        "name": customer.name,
        "metadata": customer.metadata,
        "phone_number": customer.phone_number,
    }


def credit_cart(subscription: Subscription) -> list[dict]:
    """Dodo's CreditEntitlementCartResponse: each entitlement the product grants, with the
    settings in force and the customer's live balance and overage (0 before any grant)."""
    product = subscription.product
    balances = {b.credit_entitlement_id: b for b in subscription.customer.credit_balances.all()}
    cart = []
    for link in product.credit_entitlements.all():
        entitlement = link.credit_entitlement
        balance = balances.get(link.credit_entitlement_id)
        cart.append(
            {
                "credit_entitlement_id": link.credit_entitlement_id,
                "credit_entitlement_name": entitlement.name,
                "unit": entitlement.unit,
                "product_id": product.product_id,
                "credits_amount": decimal_text(link.credits_amount),
                "remaining_balance": decimal_text(balance.balance) if balance else "0",
                "overage_balance": decimal_text(balance.overage) if balance else "0",
                "overage_enabled": bool(_setting(link, "overage_enabled")),
                "overage_behavior": _setting(link, "overage_behavior"),
                "overage_limit": decimal_text(_setting(link, "overage_limit")),
                "rollover_enabled": bool(_setting(link, "rollover_enabled")),
                "rollover_percentage": _setting(link, "rollover_percentage"),
                "rollover_timeframe_count": _setting(link, "rollover_timeframe_count"),
                "rollover_timeframe_interval": _setting(link, "rollover_timeframe_interval"),
                "max_rollover_count": _setting(link, "max_rollover_count"),
                "expires_after_days": _setting(link, "expires_after_days"),
                "low_balance_threshold_percent": link.low_balance_threshold_percent,
            }
        )
    return cart


def subscription_data(subscription: Subscription) -> dict:
    """GET /api/subscriptions/{id} (and each list item: Dodo's list type needs `discounts`).
    Load it with SUBSCRIPTION_RELATED and SUBSCRIPTION_PREFETCH."""
    product = subscription.product
    return {
        "subscription_id": subscription.subscription_id,
        "business_id": settings.BUSINESS_ID,
        "brand_id": settings.BUSINESS_ID,
        "customer": customer_details(subscription.customer),
        "product_id": product.product_id,
        "status": subscription.status,
        "quantity": subscription.quantity,
        "currency": product.currency,
        "recurring_pre_tax_amount": product.fixed_price_minor,
        "payment_frequency_count": subscription.interval_count,
        "payment_frequency_interval": subscription.interval_unit,
        "subscription_period_count": product.subscription_period_count,
        "subscription_period_interval": product.subscription_period_interval,
        "previous_billing_date": timestamp_text(subscription.current_period_start),
        "next_billing_date": timestamp_text(subscription.current_period_end),
        "cancel_at_next_billing_date": subscription.cancel_at_next_billing_date,
        "cancelled_at": subscription.cancelled_at and timestamp_text(subscription.cancelled_at),
        "created_at": timestamp_text(subscription.created_at),
        "billing": subscription.billing,
        "metadata": subscription.metadata,
        "customer_business_name": subscription.customer_business_name,
        "cancellation_comment": subscription.cancellation_comment,
        "cancellation_feedback": subscription.cancellation_feedback,
        "cancel_reason": subscription.cancel_reason,  # not on Dodo's object: an extension
        "discounts": [],
        "tax_id": None,
        "meters": [
            {**_priced_meter(pm), "currency": product.currency}
            for pm in product.product_meters.all()
        ],
        "credit_entitlement_cart": credit_cart(subscription),
        "meter_credit_entitlement_cart": [
            {
                "credit_entitlement_id": pm.credit_entitlement_id,
                "meter_id": pm.meter_id,
                "meter_name": pm.meter.name,
                "meter_units_per_credit": decimal_text(pm.meter_units_per_credit),
                "product_id": product.product_id,
            }
            for pm in product.product_meters.all()
            if pm.credit_entitlement_id
        ],
        "addons": [],
        "on_demand": False,
        "has_payment_method": has_payment_method(subscription.customer),
        "tax_inclusive": bool(product.tax_inclusive),
        "trial_period_days": subscription.trial_period_days,
        "scheduled_change": scheduled_change_data(subscription),
    }


def has_payment_method(customer: Customer) -> bool:
    """Whether the provider holds a saved method to charge this customer's invoices with."""
    try:
        return bool(customer.provider_customer.payment_method_id)
    except ObjectDoesNotExist:
        return False


def scheduled_change_data(subscription: Subscription) -> dict | None:
    """Dodo's `ScheduledPlanChange`: what the next period close will switch to, or null."""
    try:
        schedule = subscription.scheduled_change
    except ObjectDoesNotExist:
        return None
    return {
        "id": schedule.id,
        "product_id": schedule.product_id,
        "product_name": schedule.product.name,
        "product_description": schedule.product.description,
        "quantity": schedule.quantity,
        "addons": [],
        "created_at": timestamp_text(schedule.created_at),
        "effective_at": timestamp_text(subscription.current_period_end),
    }


def invoice_data(invoice: Invoice, *, lines: Iterable[InvoiceLineLike] | None = None) -> dict:
    """An invoice or credit note; `lines` replaces the stored lines (a draft shown live)."""
    lines = list(invoice.lines.all() if lines is None else lines)
    return {
        "invoice_id": invoice.invoice_id,
        "business_id": settings.BUSINESS_ID,
        "subscription_id": invoice.subscription_id,
        "customer_id": invoice.customer_id,
        "period_start": timestamp_text(invoice.period_start),
        "period_end": timestamp_text(invoice.period_end),
        "status": invoice.status,
        "currency": invoice.currency,
        "total": sum(line.amount_minor for line in lines),
        "created_at": timestamp_text(invoice.created_at),
        "lines": [line_data(line) for line in lines],
        # The lifecycle (products/invoices.py).
        "kind": invoice.kind,
        "number": invoice.number,
        "finalize_at": timestamp_text(invoice.finalize_at),
        "issued_at": timestamp_text(invoice.issued_at),
        "paid_at": timestamp_text(invoice.paid_at),
        "payment_reference": invoice.payment_reference,
        "voided_at": timestamp_text(invoice.voided_at),
        "void_reason": invoice.void_reason,
        "replaces_invoice_id": invoice.replaces_id,
        "corrects_invoice_id": invoice.corrects_id,
    }


class InvoiceLineLike(Protocol):
    """A stored InvoiceLine or a computed products.billing.LineDraft: the same fields, read."""

    @property
    def kind(self) -> str: ...

    @property
    def meter_id(self) -> str | None: ...

    @property
    def description(self) -> str: ...

    @property
    def consumed_units(self) -> Decimal | None: ...

    @property
    def free_threshold(self) -> int | None: ...

    @property
    def free_units(self) -> Decimal | None: ...

    @property
    def chargeable_units(self) -> Decimal | None: ...

    @property
    def unit_price(self) -> Decimal | None: ...

    @property
    def credits_applied(self) -> Decimal | None: ...

    @property
    def amount_minor(self) -> int: ...


def line_data(line: InvoiceLineLike) -> dict:
    return {
        "kind": line.kind,
        "meter_id": line.meter_id,
        "description": line.description,
        "consumed_units": decimal_text(line.consumed_units),
        "free_threshold": line.free_threshold,
        "free_units": decimal_text(line.free_units),
        "chargeable_units": decimal_text(line.chargeable_units),
        "unit_price": decimal_text(line.unit_price),
        "credits_applied": decimal_text(line.credits_applied),
        "amount": line.amount_minor,
        **_line_extensions(line),
    }


def _line_extensions(line: InvoiceLineLike) -> dict:
    """How a tiered, packaged or limited price made the amount; absent for Dodo's own price."""
    shown: dict = {}
    tiers = getattr(line, "tiers", None)
    if tiers is not None:
        shown["tiers"] = tiers
    packages = getattr(line, "packages", None)
    if packages is not None:
        shown["packages"] = decimal_text(packages)
    limit = getattr(line, "limit_applied", None)
    if limit is not None:
        shown["limit_applied"] = limit
    return shown


def upcoming_invoice_data(
    subscription: Subscription, period: Period, lines: Sequence[InvoiceLineLike]
) -> dict:
    """The invoice the open period would close with now (an extension of Dodo's API)."""
    return {
        "subscription_id": subscription.subscription_id,
        "customer_id": subscription.customer_id,
        "period_start": timestamp_text(period.start),
        "period_end": timestamp_text(period.end),
        "currency": subscription.product.currency,
        "total": sum(line.amount_minor for line in lines),
        "lines": [line_data(line) for line in lines],
    }
