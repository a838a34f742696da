"""Staff forms for a product's prices: each money meter's tiers, package and limits, and the
cycle's minimum and maximum, with the live example the page asks for as the user types.

The forms only turn text into the API's price shape; the rules are the API's own
(`products.services`), so a price saved here is one the API would take, and its errors name the
same fields. The example prices a draft with `products.pricing.charge`, the invoice's rule.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms

from billing_site.errors import InvalidInput
from billing_site.money import format_minor
from products import services
from products.models import Product, ProductMeter
from products.pricing import PACKAGE_ROUNDINGS, TIER_MODES, MeterPricing, charge
from products.wire import product_price

EXAMPLE_CONSUMED = Decimal(12_500)
_METER_PATH = re.compile(r"^price\.meters\[(\d+)\]\.([a-z_]+)(.*)$")
NO_BOUND = "*"


def tiers_text(tiers: list[dict] | None) -> str:
    """Stored tiers as the form shows them: one `up_to unit_price flat_fee` per line."""
    return "\n".join(
        f"{t['up_to'] or NO_BOUND} {t['unit_price']} {t.get('flat_fee') or 0}" for t in tiers or ()
    )


def parse_tiers_text(text: str) -> list[dict] | None:
    """`10000 0.1 0` lines (flat fee optional, `*` for the last, unbounded tier) as the API's
    tiers; anything unusual is passed on as written, for the API's rules to name."""
    tiers: list[dict] = []
    for line in text.strip().splitlines():
        words = line.replace(",", " ").split()
        if not words:
            continue
        if len(words) > 3:
            raise forms.ValidationError(f"“{line.strip()}”: at most up_to, unit_price, flat_fee.")
        up_to, unit_price, flat_fee = [*words, None, None][:3]
        tier: dict[str, Any] = {
            "up_to": None if up_to == NO_BOUND else up_to,
            "unit_price": unit_price,
        }
        if flat_fee is not None:
            tier["flat_fee"] = int(flat_fee) if re.fullmatch(r"-?\d+", flat_fee) else flat_fee
        tiers.append(tier)
    return tiers or None


def _whole(raw: str) -> object:
    """A whole number of minor units as typed; anything else as written, for the API to refuse."""
    raw = raw.strip()
    if not raw:
        return None
    return int(raw) if re.fullmatch(r"-?\d+", raw) else raw


class MeterPricingForm(forms.Form):
    """One meter billed in money. Free text fields: the API's rules check them (`entry`)."""

    price_per_unit = forms.CharField(
        required=False, help_text='Minor units per unit ("0" with tiers).'
    )
    tier_mode = forms.ChoiceField(
        required=False, choices=[("", "no tiers"), *((m, m) for m in TIER_MODES)]
    )
    tiers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 36}),
        help_text="One tier a line: up_to unit_price flat_fee, the last up_to * (no bound).",
    )
    package_size = forms.CharField(required=False)
    package_rounding = forms.ChoiceField(
        required=False, choices=[("", "up (default)"), *((r, r) for r in PACKAGE_ROUNDINGS)]
    )
    minimum_amount = forms.CharField(required=False, help_text="Whole minor units, this line.")
    maximum_amount = forms.CharField(required=False, help_text="Whole minor units, this line.")

    def clean_tiers(self) -> list[dict] | None:
        return parse_tiers_text(self.cleaned_data["tiers"])

    @staticmethod
    def initial_for(pm: ProductMeter) -> dict:
        return {
            "price_per_unit": format(pm.price_per_unit or 0, "f"),
            "tier_mode": pm.tier_mode or "",
            "tiers": tiers_text(pm.tiers),
            "package_size": "" if pm.package_size is None else format(pm.package_size, "f"),
            "package_rounding": pm.package_rounding or "",
            "minimum_amount": "" if pm.minimum_amount is None else str(pm.minimum_amount),
            "maximum_amount": "" if pm.maximum_amount is None else str(pm.maximum_amount),
        }

    def entry(self) -> dict:
        """The meter's price fields as the API takes them (unset ones left out)."""
        data = self.cleaned_data
        found: dict[str, Any] = {
            "price_per_unit": data["price_per_unit"].strip() or None,
            "tier_mode": data["tier_mode"] or None,
            "tiers": data["tiers"],
            "package_size": data["package_size"].strip() or None,
            "package_rounding": data["package_rounding"] or None,
            "minimum_amount": _whole(data["minimum_amount"]),
            "maximum_amount": _whole(data["maximum_amount"]),
        }
        return {name: value for name, value in found.items() if value is not None}


class CycleLimitsForm(forms.Form):
    minimum_amount = forms.CharField(
        required=False, help_text="Whole minor units: the cycle's usage lines bill at least this."
    )
    maximum_amount = forms.CharField(
        required=False, help_text="Whole minor units: the cycle's usage lines bill at most this."
    )

    @staticmethod
    def initial_for(product: Product) -> dict:
        return {
            name: "" if getattr(product, name) is None else str(getattr(product, name))
            for name in ("minimum_amount", "maximum_amount")
        }

    def limits(self) -> dict:
        found = {name: _whole(self.cleaned_data[name]) for name in self.fields}
        return {name: value for name, value in found.items() if value is not None}


class PricingForms:
    """The page's forms: the cycle limits, then one per meter billed in money (credit-billed
    meters are shown, not edited: the extensions do not apply to them)."""

    def __init__(self, product: Product, data=None):
        self.product = product
        self.meters = list(product.product_meters.select_related("meter").order_by("position"))
        self.cycle = CycleLimitsForm(
            data, prefix="cycle", initial=CycleLimitsForm.initial_for(product)
        )
        self.by_position = {
            index: MeterPricingForm(
                data, prefix=f"meter{index}", initial=MeterPricingForm.initial_for(pm)
            )
            for index, pm in enumerate(self.meters)
            if pm.credit_entitlement_id is None
        }

    def rows(self) -> list[tuple[ProductMeter, MeterPricingForm | None]]:
        return [(pm, self.by_position.get(index)) for index, pm in enumerate(self.meters)]

    def is_valid(self) -> bool:
        valid = [self.cycle.is_valid(), *(form.is_valid() for form in self.by_position.values())]
        return all(valid)

    def price(self) -> dict:
        """The stored price with the edited fields in place: a whole price for update_product."""
        body = product_price(self.product)
        for name in ("minimum_amount", "maximum_amount"):
            body.pop(name, None)
        body.update(self.cycle.limits())
        for index, form in self.by_position.items():
            meter = body["meters"][index]
            for name in (*services.PRICING_EXTENSION_FIELDS, "price_per_unit"):
                meter.pop(name, None)
            meter.update(form.entry())
        return body

    def save(self, *, now) -> Product | None:
        """Save through `services.update_product` (audited); on a refusal, put each error on
        the field it names and return None."""
        try:
            return services.update_product(self.product, price=self.price(), now=now)
        except InvalidInput as exc:
            for error in exc.errors:
                self._add_error(error.get("field", ""), error.get("message", str(exc)))
            return None

    def _add_error(self, path: str, message: str) -> None:
        match = _METER_PATH.match(path)
        if match and int(match[1]) in self.by_position:
            form = self.by_position[int(match[1])]
            field = match[2] if match[2] in form.fields else None
            form.add_error(field, f"{match[2]}{match[3]}: {message}" if match[3] else message)
        elif path.startswith("price.") and path[6:] in self.cycle.fields:
            self.cycle.add_error(path[6:], message)
        else:
            self.cycle.add_error(None, f"{path}: {message}" if path else message)


def example(body: object, *, currency: str) -> dict:
    """The live example for a draft meter price `{pricing: {form fields}, free_threshold,
    consumed}`: what `consumed` units would bill, by the invoice's rule, or the errors."""
    if not isinstance(body, dict) or not isinstance(body.get("pricing"), dict):
        raise InvalidInput.from_errors(
            [{"field": "pricing", "message": "Send {pricing, free_threshold, consumed}."}]
        )
    raw = {name: str(value) for name, value in body["pricing"].items() if value is not None}
    form = MeterPricingForm(raw)
    if not form.is_valid():
        errors = [
            {"field": name, "message": message}
            for name, messages in form.errors.items()
            for message in messages
        ]
        raise InvalidInput.from_errors(errors)
    free = body.get("free_threshold") or 0
    try:
        consumed = Decimal(str(body.get("consumed", EXAMPLE_CONSUMED)).replace(",", ""))
    except InvalidOperation:
        consumed = Decimal(-1)
    if isinstance(free, bool) or not isinstance(free, int) or free < 0:
        raise InvalidInput.from_errors([{"field": "free_threshold", "message": "Whole units."}])
    if not consumed.is_finite() or consumed < 0:
        raise InvalidInput.from_errors([{"field": "consumed", "message": "Units, 0 or more."}])
    try:
        price = services.money_meter_price(form.entry(), "", meter_id="", free_threshold=free)
    except InvalidInput as exc:
        errors = [{**e, "field": e.get("field", "").lstrip(".")} for e in exc.errors]
        raise InvalidInput(str(exc), errors=errors) from None
    pricing = MeterPricing.of(price)
    chargeable = max(consumed - free, Decimal(0))
    result = charge(pricing, chargeable)
    text = (
        f"{consumed:,f} units ({chargeable:,f} after {free:,} free) cost "
        f"{format_minor(result.amount_minor, currency)}"
    )
    if result.limit_applied:
        text += f" ({result.limit_applied} applied; {format_minor(result.rounded, currency)})"
    return {
        "text": text,
        "amount_minor": result.amount_minor,
        "tiers": [t.wire() for t in result.tiers],
        "packages": None if result.packages is None else format(result.packages, "f"),
        "limit_applied": result.limit_applied,
    }
