"""Credit entitlements and their attachment to products: the only ways to change them.

Settings are checked here as a whole (the merged state after an update), so an entitlement can
never hold an inconsistent combination, whoever edits it. Changes do not touch existing grants.
Every change is written to the audit log in its own transaction (balance changes are audited
from the ledger: see audit/receivers.py).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction

from audit import log as audit_log
from audit.models import Action
from billing_site.errors import Conflict, InvalidInput, NotFound
from billing_site.money import CURRENCIES, decimal_digits
from billing_site.periods import INTERVAL_UNITS
from billing_site.strict import unknown_fields
from credits.models import CreditEntitlement, OverageBehavior, ProductCreditEntitlement
from products.models import Product

MAX_ENTITLEMENTS_PER_PRODUCT = 5
# Bounds that keep every setting storable (integer columns) and every date computed from it in
# range: a grant expiring after more days than datetime can reach would fail when it is granted.
MAX_EXPIRES_AFTER_DAYS = 36_500  # 100 years; null means never
MAX_ROLLOVER_TIMEFRAME_COUNT = 1000  # as a product's payment_frequency_count
MAX_INTEGER_COLUMN = 2**31 - 1
# Decimals (price_per_unit, overage_limit, credits_amount) as event numbers: sane for billing
# arithmetic and storable (1e999999 overflows the numeric column).
MAX_DECIMAL = Decimal("1e20")
MAX_DECIMAL_PLACES = 20
SETTINGS = (
    "name",
    "description",
    "unit",
    "currency",
    "price_per_unit",
    "overage_enabled",
    "overage_limit",
    "overage_behavior",
    "expires_after_days",
    "rollover_enabled",
    "rollover_percentage",
    "rollover_timeframe_count",
    "rollover_timeframe_interval",
    "max_rollover_count",
)


def entitlement_state(entitlement: CreditEntitlement) -> dict:
    """What the audit log keeps of an entitlement before and after a change."""
    return audit_log.snapshot(entitlement, ("precision", *SETTINGS, "deleted_at"))


def record_admin_save(entitlement: CreditEntitlement, *, before: dict | None) -> None:
    """The admin saves entitlements with the model form; this logs it like a service change."""
    action = Action.CREATED if before is None else Action.UPDATED
    audit_log.record_change(
        entitlement, action, before=before, after=entitlement_state(entitlement)
    )


class NameTaken(Conflict):
    code = "CREDIT_ENTITLEMENT_NAME_ALREADY_EXISTS"


def _error(errors: list[dict], field: str, message: str) -> None:
    errors.append({"field": field, "message": message})


def _decimal(value: object) -> Decimal | None:
    """A finite decimal below 1e20 with at most 20 places, else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite() or number.copy_abs() >= MAX_DECIMAL:
        return None
    return number if decimal_digits(number)[1] <= MAX_DECIMAL_PLACES else None


def check_settings(values: dict, errors: list[dict], prefix: str = "") -> None:
    """Check one set of credit settings (an entitlement's, or a product's overrides)."""

    def whole(field: str, minimum: int, maximum: int | None = None) -> None:
        value = values.get(field)
        if value is None:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
            _error(errors, prefix + field, f"Must be a whole number {bound}.")

    whole("expires_after_days", 1, MAX_EXPIRES_AFTER_DAYS)
    whole("rollover_percentage", 0, 100)
    whole("rollover_timeframe_count", 1, MAX_ROLLOVER_TIMEFRAME_COUNT)
    whole("max_rollover_count", 0, MAX_INTEGER_COLUMN)
    whole("low_balance_threshold_percent", 0, 100)
    for field in ("price_per_unit", "overage_limit"):
        raw = values.get(field)
        if raw is not None:
            number = _decimal(raw)
            if number is None or number < 0:
                _error(
                    errors,
                    prefix + field,
                    "Must be a decimal number, 0 or more, below 1e20 with at most 20 decimals.",
                )
            else:
                values[field] = number
    if values.get("currency") is not None and values["currency"] not in CURRENCIES:
        _error(errors, prefix + "currency", "Must be an ISO 4217 currency code such as USD.")
    behavior = values.get("overage_behavior")
    if behavior is not None and behavior not in OverageBehavior.values:
        _error(
            errors,
            prefix + "overage_behavior",
            f"Must be one of {', '.join(OverageBehavior.values)}.",
        )
    interval = values.get("rollover_timeframe_interval")
    if interval is not None and interval not in INTERVAL_UNITS:
        _error(
            errors,
            prefix + "rollover_timeframe_interval",
            f"Must be one of {', '.join(INTERVAL_UNITS)}.",
        )
    for field in ("overage_enabled", "rollover_enabled"):
        if values.get(field) is not None and not isinstance(values[field], bool):
            _error(errors, prefix + field, "Must be true or false.")


def check_entitlement(entitlement: CreditEntitlement) -> None:
    """Every rule on an entitlement's settings as a whole, for the API's create and update and
    for the admin's form alike; raises InvalidInput naming each bad field, or NameTaken.
    Normalizes `price_per_unit` and `overage_limit` to exact decimals on the instance."""
    errors: list[dict] = []
    values = {field: getattr(entitlement, field) for field in SETTINGS}
    check_settings(values, errors)
    if not isinstance(entitlement.name, str) or not 1 <= len(entitlement.name) <= 255:
        _error(errors, "name", "Must be 1 to 255 characters.")
    if not isinstance(entitlement.unit, str) or not 1 <= len(entitlement.unit) <= 50:
        _error(errors, "unit", "Must be 1 to 50 characters.")
    if entitlement.description is not None and len(str(entitlement.description)) > 1000:
        _error(errors, "description", "At most 1000 characters.")
    precision = entitlement.precision
    if isinstance(precision, bool) or not isinstance(precision, int) or not 0 <= precision <= 10:
        _error(errors, "precision", "Must be a whole number from 0 to 10.")
    if entitlement.overage_enabled and values.get("price_per_unit") is None:
        _error(errors, "price_per_unit", "Is required when overage is enabled.")
    if values.get("price_per_unit") is not None and not entitlement.currency:
        _error(errors, "currency", "Is required when price_per_unit is set.")
    if (entitlement.rollover_timeframe_count is None) != (
        entitlement.rollover_timeframe_interval is None
    ):
        _error(
            errors,
            "rollover_timeframe_count",
            "rollover_timeframe_count and rollover_timeframe_interval go together.",
        )
    if errors:
        raise InvalidInput.from_errors(errors)
    for field in ("price_per_unit", "overage_limit"):
        setattr(entitlement, field, values[field])
    clash = (
        CreditEntitlement.objects.live().filter(name=entitlement.name).exclude(pk=entitlement.pk)
    )
    if clash.exists():
        raise NameTaken(f"A credit entitlement named {entitlement.name!r} already exists.")


def create_entitlement(*, now: datetime, precision: int, **values) -> CreditEntitlement:
    values.setdefault("overage_behavior", OverageBehavior.FORGIVE_AT_RESET)
    entitlement = CreditEntitlement(precision=precision, created_at=now, updated_at=now, **values)
    check_entitlement(entitlement)
    with transaction.atomic():
        _save(entitlement)
        audit_log.record_change(
            entitlement, Action.CREATED, before=None, after=entitlement_state(entitlement)
        )
    return entitlement


def _save(entitlement: CreditEntitlement) -> None:
    try:
        with transaction.atomic():
            entitlement.save()
    except IntegrityError:
        raise NameTaken(
            f"A credit entitlement named {entitlement.name!r} already exists."
        ) from None


def update_entitlement(
    entitlement: CreditEntitlement, *, now: datetime, **changes
) -> CreditEntitlement:
    if "precision" in changes:
        raise InvalidInput(
            "precision cannot be changed after creation.",
            errors=[{"field": "precision", "message": "Cannot be changed after creation."}],
        )
    with transaction.atomic():
        entitlement = CreditEntitlement.objects.select_for_update().get(pk=entitlement.pk)
        before = entitlement_state(entitlement)
        for field, value in changes.items():
            setattr(entitlement, field, value)
        if entitlement.overage_behavior is None:
            entitlement.overage_behavior = OverageBehavior.FORGIVE_AT_RESET
        entitlement.updated_at = now
        check_entitlement(entitlement)
        _save(entitlement)
        audit_log.record_change(
            entitlement, Action.UPDATED, before=before, after=entitlement_state(entitlement)
        )
    return entitlement


def set_deleted(entitlement: CreditEntitlement, *, deleted: bool, now: datetime) -> None:
    before = entitlement_state(entitlement)
    if deleted:
        entitlement.deleted_at = entitlement.deleted_at or now
    else:
        if entitlement.deleted_at is None:
            raise InvalidInput("The credit entitlement is not deleted.")
        entitlement.deleted_at = None
        check_entitlement(entitlement)  # its name may have been reused meanwhile
    with transaction.atomic():
        entitlement.save(update_fields=["deleted_at"])
        audit_log.record_change(
            entitlement,
            Action.DELETED if deleted else Action.UNDELETED,
            before=before,
            after=entitlement_state(entitlement),
        )


LINK_OVERRIDES = (
    "overage_enabled",
    "overage_limit",
    "overage_behavior",
    "price_per_unit",
    "currency",
    "expires_after_days",
    "rollover_enabled",
    "rollover_percentage",
    "rollover_timeframe_count",
    "rollover_timeframe_interval",
    "max_rollover_count",
    "low_balance_threshold_percent",
)


# Dodo's link fields this server cannot honour, with the one value it takes (what it shows).
LINK_NEUTRAL = {
    "proration_behavior": "no_prorate",
    "trial_credits": "0",
    "trial_credits_expire_after_trial": False,
}
LINK_FIELDS = ("credit_entitlement_id", "credits_amount", *LINK_OVERRIDES, *LINK_NEUTRAL)


def _takes_nothing(name: str, value: object) -> bool:
    if name == "trial_credits":
        number = _decimal(value) if isinstance(value, str) else None
        return number is not None and number == 0
    neutral = LINK_NEUTRAL[name]
    return type(value) is type(neutral) and value == neutral


def validate_links(entries: object) -> list[dict]:
    """Product `credit_entitlements`: `{credit_entitlement_id, credits_amount, overrides...}`."""
    if not isinstance(entries, list):
        raise InvalidInput(
            "credit_entitlements must be a list.",
            errors=[{"field": "credit_entitlements", "message": "Must be a list."}],
        )
    if len(entries) > MAX_ENTITLEMENTS_PER_PRODUCT:
        raise InvalidInput(
            f"At most {MAX_ENTITLEMENTS_PER_PRODUCT} credit entitlements per product.",
            errors=[{"field": "credit_entitlements", "message": "At most 5."}],
        )
    errors: list[dict] = []
    links, seen = [], set()
    for index, entry in enumerate(entries):
        prefix = f"credit_entitlements[{index}]."
        if not isinstance(entry, dict):
            _error(errors, prefix[:-1], "Must be an object.")
            continue
        errors += unknown_fields(entry, LINK_FIELDS, prefix[:-1])
        # Proration and trial credits are not offered: only what the product shows is taken.
        for name, neutral in LINK_NEUTRAL.items():
            value = entry.get(name)
            if value is not None and not _takes_nothing(name, value):
                _error(errors, prefix + name, f"Not supported; send {neutral!r} or omit it.")
        entitlement_id = entry.get("credit_entitlement_id")
        entitlement = CreditEntitlement.objects.filter(pk=entitlement_id).first()
        if entitlement is None:
            _error(
                errors,
                prefix + "credit_entitlement_id",
                f"No credit entitlement {entitlement_id!r}.",
            )
            continue
        if entitlement.deleted_at is not None:
            _error(errors, prefix + "credit_entitlement_id", "The credit entitlement is deleted.")
            continue
        if entitlement_id in seen:
            _error(errors, prefix + "credit_entitlement_id", "Listed twice.")
        seen.add(entitlement_id)
        amount = _decimal(entry.get("credits_amount"))
        if amount is None or amount <= 0:
            _error(
                errors,
                prefix + "credits_amount",
                "Must be a decimal number greater than 0 and below 1e20.",
            )
        elif decimal_digits(amount)[1] > entitlement.precision:  # exact, unlike normalize()
            # Granted as is every cycle: never rounded to the entitlement's precision.
            _error(
                errors,
                prefix + "credits_amount",
                f"At most {entitlement.precision} decimal places (the entitlement's precision).",
            )
        values = {field: entry.get(field) for field in LINK_OVERRIDES}
        check_settings(values, errors, prefix)
        links.append({"credit_entitlement": entitlement, "credits_amount": amount, **values})
    if errors:
        raise InvalidInput.from_errors(errors)
    return links


def link_states(product: Product) -> list[dict]:
    """A product's credit entitlements and their settings, for the audit log."""
    links = ProductCreditEntitlement.objects.filter(product=product).order_by(
        "credit_entitlement_id"
    )
    return [
        audit_log.snapshot(link, ("credit_entitlement_id", "credits_amount", *LINK_OVERRIDES))
        for link in links
    ]


def replace_links(product: Product, links: list[dict]) -> None:
    product.credit_entitlements.all().delete()
    ProductCreditEntitlement.objects.bulk_create(
        ProductCreditEntitlement(product=product, **link) for link in links
    )


def entitlement_or_404(entitlement_id: str, *, include_deleted: bool = False) -> CreditEntitlement:
    entitlements = CreditEntitlement.objects.all()
    if not include_deleted:
        entitlements = entitlements.live()
    entitlement = entitlements.filter(pk=entitlement_id).first()
    if entitlement is None:
        raise NotFound(f"No credit entitlement {entitlement_id}.")
    return entitlement
