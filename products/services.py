"""The only ways to change products and subscriptions.

Rules checked here, whatever the caller (API, admin, seed): a usage-based price with a known
currency, at most 10 distinct active meters each priced per unit, subscriptions of quantity 1.
Price changes apply from the next period close on; the billing interval of a subscription is
fixed when it starts. Every change to a product and its prices is written to the audit log in
its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import cast

from django.db import transaction

from audit import log as audit_log
from audit.models import Action
from billing_site.errors import DomainError, InvalidInput, NotFound
from billing_site.money import CURRENCIES, decimal_digits
from billing_site.periods import INTERVAL_UNITS, BillingInterval
from billing_site.strict import refuse, refuse_unknown, unsupported
from credits import services as credit_services
from credits.deduction import grant_period_credits
from meters.models import Meter
from products.models import Customer, Product, ProductMeter, Subscription
from products.pricing import PACKAGE_ROUNDINGS, TIER_MODES

MAX_METERS_PER_PRODUCT = 10
MAX_PRICE_INTEGER_DIGITS = 5
MAX_PRICE_FRACTION_DIGITS = 12
# Storage bounds (bigint and integer columns), checked here so a larger value is a 422, not a 500.
# The fixed price stays far below bigint so an invoice's total (fee + meter lines) always fits.
MAX_FIXED_PRICE = 10**15
MAX_FREE_THRESHOLD = 2**63 - 1
MAX_PERIOD_COUNT = 2**31 - 1
MAX_TRIAL_DAYS = 10_000  # Dodo's bound for trial_period_days
UNSET = object()  # a PATCH field that was not sent (None is an explicit null)
# Extensions of Dodo's price: the cycle's usage lines together held between them (minor units).
CYCLE_LIMIT_FIELDS = ("minimum_amount", "maximum_amount")
PRICE_FIELDS = (
    "type",
    "currency",
    "fixed_price",
    "payment_frequency_count",
    "payment_frequency_interval",
    "subscription_period_count",
    "subscription_period_interval",
    "tax_inclusive",
    "meters",
    "discount",
    "discount_bps",
    "purchasing_power_parity",
    *CYCLE_LIMIT_FIELDS,
)
SHOWN_METER_FIELDS = ("name", "description", "measurement_unit")
PRICED_METER_FIELDS = (
    "meter_id",
    "price_per_unit",
    "free_threshold",
    "credit_entitlement_id",
    "meter_units_per_credit",
    *SHOWN_METER_FIELDS,
)
# Extensions of Dodo's meter price (products/pricing.py), each optional.
PRICING_EXTENSION_FIELDS = (
    "tiers",
    "tier_mode",
    "package_size",
    "package_rounding",
    "minimum_amount",
    "maximum_amount",
)
TIER_FIELDS = ("up_to", "unit_price", "flat_fee")
MAX_TIERS = 20
MAX_UNITS_INTEGER_DIGITS = 19
AUDITED_FIELDS = (
    "name",
    "description",
    "tax_category",
    "metadata",
    "currency",
    "fixed_price_minor",
    "interval_unit",
    "interval_count",
    "subscription_period_count",
    "subscription_period_interval",
    "tax_inclusive",
    "archived_at",
)
AUDITED_METER_FIELDS = (
    "meter_id",
    "price_per_unit",
    "free_threshold",
    "credit_entitlement_id",
    "meter_units_per_credit",
)


def _meter_state(pm: ProductMeter) -> dict:
    """A meter's price for the audit log; the pricing extensions only when set, so the
    entries of a Dodo-only price read as before."""
    state = audit_log.snapshot(pm, AUDITED_METER_FIELDS)
    extensions = audit_log.snapshot(pm, PRICING_EXTENSION_FIELDS)
    return {**state, **{name: value for name, value in extensions.items() if value is not None}}


def product_state(product: Product) -> dict:
    """What the audit log keeps of a product: its fields, each meter's price and free
    threshold, and the credit entitlements it grants (read fresh, never from a prefetch)."""
    meters = ProductMeter.objects.filter(product=product).order_by("position")
    limits = audit_log.snapshot(product, CYCLE_LIMIT_FIELDS)
    return {
        **audit_log.snapshot(product, AUDITED_FIELDS),
        **{name: value for name, value in limits.items() if value is not None},
        "meters": [_meter_state(pm) for pm in meters],
        "credit_entitlements": credit_services.link_states(product),
    }


class UnsupportedAction(DomainError):
    status = 422
    code = "UNSUPPORTED_ACTION"


@dataclass(frozen=True)
class MeterPrice:
    meter_id: str
    price_per_unit: Decimal | None
    free_threshold: int
    credit_entitlement_id: str | None = None
    meter_units_per_credit: Decimal | None = None
    tiers: list[dict] | None = None
    tier_mode: str | None = None
    package_size: Decimal | None = None
    package_rounding: str | None = None
    minimum_amount: int | None = None
    maximum_amount: int | None = None


def _fail(field: str, message: str, code: str = "INVALID_REQUEST_BODY") -> InvalidInput:
    return InvalidInput(
        f"{field}: {message}", errors=[{"field": field, "message": message}], code=code
    )


def parse_price_per_unit(
    raw: object,
    field: str,
    *,
    zero_allowed: bool = False,
    integer_digits: int = MAX_PRICE_INTEGER_DIGITS,
) -> Decimal:
    """A positive decimal in minor units, sent as a string ("0.1") or a number."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise _fail(field, 'Must be a decimal string such as "0.5".')
    try:
        price = Decimal(str(raw).strip())
    except InvalidOperation:
        raise _fail(field, f"{raw!r} is not a decimal number.") from None
    if not price.is_finite() or price < 0 or (price == 0 and not zero_allowed):
        raise _fail(field, "Must be 0 or more." if zero_allowed else "Must be greater than 0.")
    digits, fraction_digits = decimal_digits(price)  # exact, unlike normalize()
    if digits > integer_digits or fraction_digits > MAX_PRICE_FRACTION_DIGITS:
        raise _fail(field, f"At most {integer_digits} integer and 12 fraction digits.")
    return price + 0  # a price given as 0E-3 or -0 reads as 0


def _minor_amount(raw: object, field: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_FIXED_PRICE:
        raise _fail(field, f"Must be a whole amount in minor units from 0 to {MAX_FIXED_PRICE}.")
    return raw


def _parse_tiers(raw: object, field: str) -> list[dict]:
    """Tiers as stored: `up_to` strictly increasing, the last one null (unbounded)."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_TIERS:
        raise _fail(field, f"Must be a list of 1 to {MAX_TIERS} tiers.")
    tiers, previous = [], Decimal(0)
    for index, tier in enumerate(raw):
        at = f"{field}[{index}]"
        if not isinstance(tier, dict):
            raise _fail(at, "Must be an object {up_to, unit_price, flat_fee}.")
        refuse_unknown(tier, TIER_FIELDS, at)
        last = index == len(raw) - 1
        up_to = tier.get("up_to")
        if up_to is None and not last:
            raise _fail(f"{at}.up_to", "Only the last tier has no upper bound (null).")
        if up_to is not None and last:
            raise _fail(f"{at}.up_to", "The last tier must have up_to null (no upper bound).")
        if up_to is not None:
            bound = parse_price_per_unit(
                up_to, f"{at}.up_to", integer_digits=MAX_UNITS_INTEGER_DIGITS
            )
            if bound <= previous:
                raise _fail(f"{at}.up_to", f"Must be greater than the tier before ({previous}).")
            previous = bound
        if tier.get("unit_price") is None:
            raise _fail(f"{at}.unit_price", "Is required.")
        price = parse_price_per_unit(tier["unit_price"], f"{at}.unit_price", zero_allowed=True)
        flat_fee = tier.get("flat_fee")
        flat_fee = 0 if flat_fee is None else _minor_amount(flat_fee, f"{at}.flat_fee")
        tiers.append(
            {
                "up_to": None if up_to is None else format(bound, "f"),
                "unit_price": format(price, "f"),
                "flat_fee": flat_fee,
            }
        )
    return tiers


def _limits(entry: dict, field: str) -> dict:
    """`minimum_amount` and `maximum_amount` as sent (each optional), checked: whole minor
    units, the minimum not above the maximum. `field` is where they sit (`price`)."""
    found = {
        name: _minor_amount(entry[name], f"{field}.{name}")
        for name in ("minimum_amount", "maximum_amount")
        if entry.get(name) is not None
    }
    if found.get("minimum_amount", 0) > found.get("maximum_amount", MAX_FIXED_PRICE):
        raise _fail(f"{field}.minimum_amount", "Must not be greater than maximum_amount.")
    return found


def _pricing_extensions(entry: dict, field: str) -> dict:
    """The extensions of Dodo's price sent for one money meter, checked and as stored."""
    given = {name: entry.get(name) for name in PRICING_EXTENSION_FIELDS}
    found: dict = {}
    if given["tiers"]:
        found["tiers"] = _parse_tiers(given["tiers"], f"{field}.tiers")
        if given["tier_mode"] not in TIER_MODES:
            raise _fail(f"{field}.tier_mode", f"Must be one of {', '.join(TIER_MODES)}.")
        found["tier_mode"] = given["tier_mode"]
        if given["package_size"] is not None:
            raise _fail(f"{field}.package_size", "Packages and tiers cannot be combined.")
    elif given["tier_mode"] is not None:
        raise _fail(f"{field}.tier_mode", "Only with tiers.")
    if given["package_size"] is not None:
        found["package_size"] = parse_price_per_unit(
            given["package_size"], f"{field}.package_size", integer_digits=MAX_UNITS_INTEGER_DIGITS
        )
        rounding = given["package_rounding"]
        if rounding is not None and rounding not in PACKAGE_ROUNDINGS:
            raise _fail(
                f"{field}.package_rounding", f"Must be one of {', '.join(PACKAGE_ROUNDINGS)}."
            )
        found["package_rounding"] = rounding or "up"
    elif given["package_rounding"] is not None:
        raise _fail(f"{field}.package_rounding", "Only with package_size.")
    found.update(_limits(entry, field))
    return found


def money_meter_price(entry: dict, field: str, *, meter_id: str, free_threshold: int) -> MeterPrice:
    """One meter billed in money, checked: Dodo's `price_per_unit`, or the extensions. The
    admin's live example checks a draft price with it, so it prices what the API would store."""
    extensions = _pricing_extensions(entry, field)
    if "tiers" in extensions:
        # The tiers price every unit: price_per_unit is "0" or absent.
        raw = entry.get("price_per_unit")
        if raw is not None and parse_price_per_unit(
            raw, f"{field}.price_per_unit", zero_allowed=True
        ):
            raise _fail(f"{field}.price_per_unit", 'Must be "0" or absent with tiers.')
        return MeterPrice(meter_id, Decimal(0), free_threshold, **extensions)
    if entry.get("price_per_unit") is None:
        raise _fail(f"{field}.price_per_unit", "Is required for a meter billed in money.")
    price = parse_price_per_unit(entry["price_per_unit"], f"{field}.price_per_unit")
    return MeterPrice(meter_id, price, free_threshold, **extensions)


def validate_meter_prices(entries: object) -> list[MeterPrice]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise _fail("price.meters", "Must be a list.")
    if len(entries) > MAX_METERS_PER_PRODUCT:
        raise _fail("price.meters", f"At most {MAX_METERS_PER_PRODUCT} meters per product.")
    prices, seen, shown = [], set(), {}
    for index, entry in enumerate(entries):
        field = f"price.meters[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("meter_id"), str):
            raise _fail(f"{field}.meter_id", "Is required.")
        refuse_unknown(entry, (*PRICED_METER_FIELDS, *PRICING_EXTENSION_FIELDS), field)
        shown[index] = {
            name: entry[name] for name in SHOWN_METER_FIELDS if entry.get(name) is not None
        }
        meter_id = entry["meter_id"]
        if meter_id in seen:
            raise _fail(
                f"{field}.meter_id",
                f"{meter_id} is listed twice.",
                "DUPLICATE_METER_IDS_IN_REQUEST",
            )
        seen.add(meter_id)
        free = entry.get("free_threshold") or 0
        if (
            isinstance(free, bool)
            or not isinstance(free, int)
            or not 0 <= free <= MAX_FREE_THRESHOLD
        ):
            raise _fail(
                f"{field}.free_threshold",
                f"Must be a whole number of units from 0 to {MAX_FREE_THRESHOLD}.",
            )
        entitlement_id = entry.get("credit_entitlement_id")
        if entitlement_id is not None:
            # Billed in credits: usage after the free threshold / units per credit is deducted.
            units = entry.get("meter_units_per_credit")
            if units is None:
                raise _fail(
                    f"{field}.meter_units_per_credit", "Is required with credit_entitlement_id."
                )
            per_credit = parse_price_per_unit(units, f"{field}.meter_units_per_credit")
            unsupported(
                entry,
                PRICING_EXTENSION_FIELDS,
                "Not supported on a meter billed in credits.",
                path=field,
            )
            prices.append(MeterPrice(meter_id, None, free, str(entitlement_id), per_credit))
            continue
        prices.append(money_meter_price(entry, field, meter_id=meter_id, free_threshold=free))
    meters = {m.id: m for m in Meter.objects.filter(id__in=seen)}
    for index, meter_price in enumerate(prices):
        meter = meters.get(meter_price.meter_id)
        field = f"price.meters[{index}].meter_id"
        if meter is None:
            raise _fail(field, f"No meter {meter_price.meter_id}.", "MISSING_METER_IDS")
        if meter.is_archived:
            raise _fail(
                field,
                f"Meter {meter_price.meter_id} is archived; unarchive it first.",
                "METER_IS_DELETED",
            )
        # Dodo: "ignored on request, shown in response" (they come from the meter). A value
        # that differs from the meter's would be dropped, so it is refused instead.
        for name, value in shown[index].items():
            if value != getattr(meter, name):
                raise _fail(
                    f"price.meters[{index}].{name}",
                    f"Comes from the meter ({getattr(meter, name)!r}); change it on the meter.",
                )
    return prices


@dataclass(frozen=True)
class PriceSpec:
    currency: str
    fixed_price_minor: int
    interval: BillingInterval
    subscription_period_count: int
    subscription_period_interval: str
    tax_inclusive: bool | None
    meters: list[MeterPrice]
    minimum_amount: int | None = None
    maximum_amount: int | None = None


def validate_price(price: object) -> PriceSpec:
    if not isinstance(price, dict):
        raise _fail("price", "Must be an object.")
    if price.get("type") != "usage_based_price":
        raise _fail("price.type", "Only usage_based_price is supported.")
    refuse_unknown(price, PRICE_FIELDS, "price")
    # Discounts and purchasing power parity are not offered here: only their "none" is taken.
    for name, neutral in (("discount", 0), ("discount_bps", 0), ("purchasing_power_parity", False)):
        value = price.get(name)
        if value is not None and (value != neutral or type(value) is not type(neutral)):
            raise _fail(
                f"price.{name}",
                f"Not supported; send {str(neutral).lower()} or omit it.",
                "UNSUPPORTED_FIELD",
            )
    currency = price.get("currency")
    if currency not in CURRENCIES:
        raise _fail("price.currency", "Must be an ISO 4217 currency code such as USD.")
    fixed = price.get("fixed_price", 0)
    if isinstance(fixed, bool) or not isinstance(fixed, int) or not 0 <= fixed <= MAX_FIXED_PRICE:
        raise _fail(
            "price.fixed_price",
            f"Must be a whole amount in minor units from 0 to {MAX_FIXED_PRICE}.",
        )
    unit = price.get("payment_frequency_interval")
    if unit not in INTERVAL_UNITS:
        raise _fail(
            "price.payment_frequency_interval", f"Must be one of {', '.join(INTERVAL_UNITS)}."
        )
    count = price.get("payment_frequency_count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
        raise _fail("price.payment_frequency_count", "Must be a whole number from 1 to 1000.")
    period_count = price.get("subscription_period_count", 20)
    period_interval = price.get("subscription_period_interval", "Year")
    if (
        isinstance(period_count, bool)
        or not isinstance(period_count, int)
        or not 1 <= period_count <= MAX_PERIOD_COUNT
    ):
        raise _fail(
            "price.subscription_period_count",
            f"Must be a whole number from 1 to {MAX_PERIOD_COUNT}.",
        )
    if period_interval not in INTERVAL_UNITS:
        raise _fail(
            "price.subscription_period_interval", f"Must be one of {', '.join(INTERVAL_UNITS)}."
        )
    tax_inclusive = price.get("tax_inclusive")
    if tax_inclusive is not None and not isinstance(tax_inclusive, bool):
        raise _fail("price.tax_inclusive", "Must be true, false or null.")
    return PriceSpec(
        currency=currency,
        fixed_price_minor=fixed,
        interval=BillingInterval(unit, count),
        subscription_period_count=period_count,
        subscription_period_interval=period_interval,
        tax_inclusive=tax_inclusive,
        meters=validate_meter_prices(price.get("meters")),
        **_limits(price, "price"),
    )


def _apply_price(product: Product, spec: PriceSpec) -> None:
    product.currency = spec.currency
    product.fixed_price_minor = spec.fixed_price_minor
    product.interval_unit = spec.interval.unit
    product.interval_count = spec.interval.count
    product.subscription_period_count = spec.subscription_period_count
    product.subscription_period_interval = spec.subscription_period_interval
    product.tax_inclusive = spec.tax_inclusive
    product.minimum_amount = spec.minimum_amount
    product.maximum_amount = spec.maximum_amount


def _replace_meters(product: Product, meters: list[MeterPrice]) -> None:
    product.product_meters.all().delete()
    ProductMeter.objects.bulk_create(
        ProductMeter(
            product=product,
            meter_id=price.meter_id,
            position=position,
            price_per_unit=price.price_per_unit,
            free_threshold=price.free_threshold,
            credit_entitlement_id=price.credit_entitlement_id,
            meter_units_per_credit=price.meter_units_per_credit,
            tiers=price.tiers,
            tier_mode=price.tier_mode,
            package_size=price.package_size,
            package_rounding=price.package_rounding,
            minimum_amount=price.minimum_amount,
            maximum_amount=price.maximum_amount,
        )
        for position, price in enumerate(meters)
    )


def _check_credit_meters(meters: list[MeterPrice], attached: set[str]) -> None:
    """A meter billed in credits needs its entitlement attached to the same product."""
    for index, price in enumerate(meters):
        if price.credit_entitlement_id and price.credit_entitlement_id not in attached:
            raise _fail(
                f"price.meters[{index}].credit_entitlement_id",
                "Attach this credit entitlement to the product in credit_entitlements first.",
            )


def create_product(
    *,
    name: str,
    price: object,
    now: datetime,
    description: str | None = None,
    tax_category: str = "saas",
    metadata: dict | None = None,
    credit_entitlements: object = None,
) -> Product:
    spec = validate_price(price)
    links = credit_services.validate_links(credit_entitlements or [])
    _check_credit_meters(spec.meters, {link["credit_entitlement"].pk for link in links})
    with transaction.atomic():
        product = Product(
            name=name,
            description=description,
            tax_category=tax_category,
            metadata=metadata or {},
            created_at=now,
            updated_at=now,
        )
        _apply_price(product, spec)
        product.save()
        credit_services.replace_links(product, links)
        _replace_meters(product, spec.meters)
        audit_log.record_change(product, Action.CREATED, before=None, after=product_state(product))
    return product


def update_product(
    product: Product,
    *,
    now: datetime,
    price: object = None,
    credit_entitlements: object = None,
    **fields,
) -> Product:
    """Change fields; `price` replaces the whole price with its meters, `credit_entitlements`
    replaces every attached entitlement (an empty list removes them all)."""
    spec = validate_price(price) if price is not None else None
    links = (
        credit_services.validate_links(credit_entitlements)
        if credit_entitlements is not None
        else None
    )
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=product.pk)
        before = product_state(product)
        attached = (
            {link["credit_entitlement"].pk for link in links}
            if links is not None
            else set(product.credit_entitlements.values_list("credit_entitlement_id", flat=True))
        )
        meters = (
            spec.meters
            if spec is not None
            else [
                MeterPrice(
                    pm.meter_id,
                    pm.price_per_unit,
                    pm.free_threshold,
                    pm.credit_entitlement_id,
                    pm.meter_units_per_credit,
                )
                for pm in product.product_meters.all()
            ]
        )
        _check_credit_meters(meters, attached)
        for field, value in fields.items():
            setattr(product, field, value)
        if spec is not None:
            _apply_price(product, spec)
        product.updated_at = now
        product.save()
        if links is not None:
            credit_services.replace_links(product, links)
        if spec is not None:
            _replace_meters(product, spec.meters)
        audit_log.record_change(
            product, Action.UPDATED, before=before, after=product_state(product)
        )
    return product


def set_product_archived(product: Product, *, archived: bool, now: datetime) -> None:
    with transaction.atomic():
        locked = Product.objects.select_for_update().get(pk=product.pk)
        before = product_state(locked)
        locked.archived_at = product.archived_at = now if archived else None
        locked.save(update_fields=["archived_at"])
        audit_log.record_change(
            locked,
            Action.ARCHIVED if archived else Action.UNARCHIVED,
            before=before,
            after=product_state(locked),
        )


def record_admin_save(product: Product, *, before: dict) -> None:
    """The admin edits a product's name, description, tax category or metadata in place."""
    audit_log.record_change(product, Action.UPDATED, before=before, after=product_state(product))


# --- subscriptions --------------------------------------------------------------------------------


def customer_request(data: object, field: str = "customer") -> dict:
    """Dodo's customer of a subscription or checkout, checked without writing anything:
    `{customer_id}` of an existing customer, or `{email, name, phone_number}` of one to find or
    create (resolve_customer)."""
    if not isinstance(data, dict):
        raise _fail(field, "Must be {customer_id} or {email, name}.")
    if "customer_id" in data:
        refuse_unknown(data, ("customer_id",), field)
        if not Customer.objects.filter(customer_id=data["customer_id"]).exists():
            raise NotFound(f"No customer {data['customer_id']}.")
        return {"customer_id": data["customer_id"]}
    refuse_unknown(data, ("email", "name", "phone_number"), field)
    email = data.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise _fail(f"{field}.email", "Is required when no customer_id is given.")
    # The customer's columns, checked here as the customers API checks them (else a 500).
    for name, limit in (("email", 254), ("name", 255), ("phone_number", 32)):
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise _fail(f"{field}.{name}", f"Must be a string of at most {limit} characters.")
    return {name: data.get(name) for name in ("email", "name", "phone_number")}


def resolve_customer(data: object, *, always_new: bool = False) -> Customer:
    """`{customer_id}` attaches an existing customer; `{email, name}` finds the oldest customer
    with that email or creates one (always creates one with `always_new`)."""
    request = customer_request(data)
    if "customer_id" in request:
        return Customer.objects.get(customer_id=request["customer_id"])
    email = request["email"]
    customer = None
    if not always_new:
        customer = Customer.objects.filter(email__iexact=email).order_by("created_at").first()
    if customer is None:
        customer = Customer.objects.create(
            email=email,
            name=request["name"] or email.split("@")[0],
            phone_number=request["phone_number"],
        )
    return customer


def _check_trial(days: object, field: str = "trial_period_days") -> int:
    if days is None:
        return 0
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_TRIAL_DAYS:
        raise _fail(field, f"Must be a whole number of days from 0 to {MAX_TRIAL_DAYS}.")
    return days


def check_subscription_terms(
    *,
    product: Product,
    quantity: object,
    trial_period_days: object,
    fields: tuple[str, str, str] = ("product_id", "quantity", "trial_period_days"),
) -> int:
    """What a subscription of this product may start with (quantity 1, an active product, a
    trial of 0 to MAX_TRIAL_DAYS days), checked before anything is written; `fields` names the
    product, quantity and trial fields of the request. Returns the trial's days."""
    product_field, quantity_field, trial_field = fields
    if quantity != 1 or isinstance(quantity, bool):
        raise _fail(
            quantity_field,
            "Only 1 quantity allowed in usage based price products.",
            "INVALID_QUANTITY",
        )
    if product.archived_at is not None:
        raise _fail(product_field, "The product is archived.")
    return _check_trial(trial_period_days, trial_field)


def create_subscription(
    *,
    customer: Customer,
    product: Product,
    now: datetime,
    quantity: int = 1,
    billing: dict | None = None,
    metadata: dict | None = None,
    trial_period_days: int | None = None,
    customer_business_name: str | None = None,
) -> Subscription:
    """Start a subscription now. Its first period is [now, now + interval), or with a trial of
    N days the free trial [now, now + N days), after which the paid periods are counted."""
    trial_days = check_subscription_terms(
        product=product, quantity=quantity, trial_period_days=trial_period_days
    )
    with transaction.atomic():
        subscription = Subscription(
            customer=customer,
            product=product,
            quantity=quantity,
            anchor=now,
            interval_unit=product.interval.unit,
            interval_count=product.interval.count,
            trial_period_days=trial_days,
            period_index=0,
            billing=billing or {},
            metadata=metadata or {},
            customer_business_name=customer_business_name,
            created_at=now,
        )
        first = subscription.period(0)
        subscription.current_period_start = first.start
        subscription.current_period_end = first.end
        subscription.save(force_insert=True)
        if not subscription.is_trial(0):
            # A trial grants nothing: the first grant comes with the first paid period.
            grant_period_credits(subscription, first, now=now)
        return subscription


CANCELLATION_FIELDS = ("cancel_reason", "cancellation_comment", "cancellation_feedback")


def update_subscription(
    subscription: Subscription,
    *,
    cancel_at_next_billing_date: bool | None = None,
    metadata: dict | None = None,
    status: str | None = None,
    billing: dict | None = None,
    customer_name: str | None = None,
    customer_business_name: object = UNSET,
    cancel_reason: object = UNSET,
    cancellation_comment: object = UNSET,
    cancellation_feedback: object = UNSET,
) -> Subscription:
    """Apply a PATCH. `null` on `customer_business_name` or a cancellation field clears it;
    the cancellation fields are taken only with a scheduled cancellation (this request's
    `cancel_at_next_billing_date: true`, or an earlier one)."""
    if status is not None and status != subscription.status:
        message = (
            f"A subscription that is {subscription.status} cannot be set {status!r} here: "
            "status 'cancelled' cancels now with a final invoice, 'paused' pauses an active "
            "subscription, 'active' resumes a paused one; set cancel_at_next_billing_date to "
            "end the subscription when its current period is invoiced."
        )
        raise UnsupportedAction(message, errors=[{"field": "status", "message": message}])
    cancelling = (
        cancel_at_next_billing_date
        if cancel_at_next_billing_date is not None
        else subscription.cancel_at_next_billing_date
    )
    given = {
        "cancel_reason": cancel_reason,
        "cancellation_comment": cancellation_comment,
        "cancellation_feedback": cancellation_feedback,
    }
    if not cancelling:
        refuse(
            [
                {
                    "field": name,
                    "message": "Only valid when cancelling or scheduling cancellation "
                    "(cancel_at_next_billing_date: true).",
                }
                for name, value in given.items()
                if value is not UNSET and value is not None
            ]
        )
    fields = ["cancel_at_next_billing_date", "metadata"]
    if cancel_at_next_billing_date is not None:
        subscription.cancel_at_next_billing_date = cancel_at_next_billing_date
        if not cancel_at_next_billing_date:  # cancellation withdrawn: its reasons go with it
            for name in CANCELLATION_FIELDS:
                setattr(subscription, name, None)
            fields += CANCELLATION_FIELDS
    for name, value in given.items():
        if value is not UNSET and cancelling:
            setattr(subscription, name, value)
            fields.append(name)
    if customer_business_name is not UNSET:
        subscription.customer_business_name = cast(str | None, customer_business_name)
        fields.append("customer_business_name")
    if metadata is not None:
        subscription.metadata = metadata
    if billing is not None:
        subscription.billing = billing
        fields.append("billing")
    with transaction.atomic():
        subscription.save(update_fields=sorted(set(fields)))
        if customer_name is not None:
            Customer.objects.filter(pk=subscription.customer_id).update(name=customer_name)
    return subscription
