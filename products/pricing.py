"""How one meter's chargeable units become money: Dodo's flat `price_per_unit`, or this server's
extensions of it: tiers (graduated or volume), packages, a line's minimum and maximum, and a
product's minimum and maximum for all its usage lines of a cycle (`cycle_adjustment`).

Pure arithmetic on exact decimals: the amount is summed exactly and rounded half-up once per
line (billing_site.money.round_minor), then held between the minimum and maximum, which are
whole minor units (so clamping before or after the rounding gives the same result).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from billing_site.money import format_minor, round_minor

GRADUATED = "graduated"
VOLUME = "volume"
TIER_MODES = (GRADUATED, VOLUME)
PACKAGE_UP = "up"
PACKAGE_DOWN = "down"
PACKAGE_ROUNDINGS = (PACKAGE_UP, PACKAGE_DOWN)
MAXIMUM = "maximum_amount"
MINIMUM = "minimum_amount"


@dataclass(frozen=True)
class Tier:
    up_to: Decimal | None  # inclusive; None: no upper bound (the last tier)
    unit_price: Decimal
    flat_fee: int = 0

    def stored(self) -> dict:
        """As ProductMeter.tiers keeps it and the wire shows it: exact decimal strings."""
        return {
            "up_to": None if self.up_to is None else format(self.up_to, "f"),
            "unit_price": format(self.unit_price, "f"),
            "flat_fee": self.flat_fee,
        }

    @classmethod
    def from_stored(cls, data: dict) -> Tier:
        up_to = data.get("up_to")
        return cls(
            up_to=None if up_to is None else Decimal(up_to),
            unit_price=Decimal(data["unit_price"]),
            flat_fee=int(data.get("flat_fee") or 0),
        )


@dataclass(frozen=True)
class MeterPricing:
    price_per_unit: Decimal = Decimal(0)
    tiers: tuple[Tier, ...] = ()
    tier_mode: str | None = None
    package_size: Decimal | None = None
    package_rounding: str | None = None
    minimum_amount: int | None = None
    maximum_amount: int | None = None

    @classmethod
    def of(cls, product_meter) -> MeterPricing:
        """The pricing of a ProductMeter (any object with its fields)."""
        return cls(
            price_per_unit=product_meter.price_per_unit or Decimal(0),
            tiers=tuple(Tier.from_stored(t) for t in product_meter.tiers or ()),
            tier_mode=product_meter.tier_mode,
            package_size=product_meter.package_size,
            package_rounding=product_meter.package_rounding,
            minimum_amount=product_meter.minimum_amount,
            maximum_amount=product_meter.maximum_amount,
        )

    @property
    def is_plain(self) -> bool:
        """Dodo's own price: chargeable units x price per unit, nothing else."""
        return (
            not self.tiers
            and self.package_size is None
            and self.minimum_amount is None
            and self.maximum_amount is None
        )


@dataclass(frozen=True)
class TierCharge:
    """The part of a line that one tier priced."""

    up_to: Decimal | None
    units: Decimal
    unit_price: Decimal
    flat_fee: int
    amount: Decimal  # exact: units x unit_price + flat_fee, never rounded on its own

    def wire(self) -> dict:
        return {
            "up_to": None if self.up_to is None else format(self.up_to, "f"),
            "units": format(self.units, "f"),
            "unit_price": format(self.unit_price, "f"),
            "flat_fee": self.flat_fee,
            "amount": format(self.amount, "f"),
        }


@dataclass(frozen=True)
class Charge:
    amount_minor: int  # what the line bills: rounded once, then held within the limits
    exact: Decimal  # before rounding and limits
    tiers: tuple[TierCharge, ...] = ()
    packages: Decimal | None = None
    limit_applied: str | None = None  # MAXIMUM or MINIMUM when one changed the amount
    rounded: int = 0  # the amount before the limits


def _tier_charges(tiers: tuple[Tier, ...], mode: str | None, units: Decimal) -> list[TierCharge]:
    if units <= 0:
        return []
    lower = Decimal(0)
    charges = []
    for tier in tiers:
        upper = tier.up_to
        if mode == VOLUME:
            if upper is None or units <= upper:
                amount = units * tier.unit_price + tier.flat_fee
                return [TierCharge(upper, units, tier.unit_price, tier.flat_fee, amount)]
        else:
            inside = (units if upper is None else min(units, upper)) - lower
            if inside <= 0:
                break
            amount = inside * tier.unit_price + tier.flat_fee
            charges.append(TierCharge(upper, inside, tier.unit_price, tier.flat_fee, amount))
        if upper is None:
            break
        lower = upper
    if mode == VOLUME:
        return []  # unreachable with a valid price: the last tier has no upper bound
    return charges


def charge(pricing: MeterPricing, chargeable: Decimal) -> Charge:
    """The amount for `chargeable` units (those after the free threshold)."""
    units = max(chargeable, Decimal(0))
    tiers: tuple[TierCharge, ...] = ()
    packages = None
    if pricing.tiers:
        tiers = tuple(_tier_charges(pricing.tiers, pricing.tier_mode, units))
        exact = sum((t.amount for t in tiers), Decimal(0))
    elif pricing.package_size is not None:
        # divmod: an exact whole quotient, where `/` would round to the context's precision.
        whole, rest = divmod(units, pricing.package_size)
        packages = whole + (1 if rest and pricing.package_rounding != PACKAGE_DOWN else 0)
        exact = packages * pricing.price_per_unit
    else:
        exact = units * pricing.price_per_unit
    rounded = round_minor(exact)
    amount, limit = rounded, None
    if pricing.maximum_amount is not None and amount > pricing.maximum_amount:
        amount, limit = pricing.maximum_amount, MAXIMUM
    if pricing.minimum_amount is not None and amount < pricing.minimum_amount:
        amount, limit = pricing.minimum_amount, MINIMUM
    return Charge(amount, exact, tiers, packages, limit, rounded)


def cycle_adjustment(
    usage_total: int, *, minimum_amount: int | None, maximum_amount: int | None
) -> tuple[int, str | None]:
    """What a product's cycle minimum or maximum adds to (positive) or takes off (negative) the
    cycle's usage lines, whose amounts are already rounded and held by their own limits, and
    which limit changed it (MAXIMUM, MINIMUM or None: no line). Whole minor units: no rounding."""
    if maximum_amount is not None and usage_total > maximum_amount:
        return maximum_amount - usage_total, MAXIMUM
    if minimum_amount is not None and usage_total < minimum_amount:
        return minimum_amount - usage_total, MINIMUM
    return 0, None


def describe(pricing: MeterPricing, *, free_threshold: int, currency: str) -> str:
    """The extensions of a price in words for staff, with a worked example ("" for Dodo's own):
    'graduated: up to 10000 at 0.1; above at 0.05. Example: 12,500 units cost 12.50 USD'."""
    if pricing.is_plain:
        return ""
    parts = []
    if pricing.tiers:
        steps = [
            ("above" if t.up_to is None else f"up to {t.up_to}")
            + f" at {t.unit_price}"
            + (f" + {t.flat_fee} flat" if t.flat_fee else "")
            for t in pricing.tiers
        ]
        parts.append(f"{pricing.tier_mode}: " + "; ".join(steps))
        example = next((t.up_to for t in pricing.tiers[::-1] if t.up_to is not None), None)
        example = (example or Decimal(10_000)) * Decimal("1.25")
    elif pricing.package_size is not None:
        per = "started" if pricing.package_rounding != PACKAGE_DOWN else "completed"
        parts.append(f"{pricing.price_per_unit} per {per} package of {pricing.package_size}")
        example = pricing.package_size * Decimal("2.5")
    else:
        example = Decimal(10_000)
    if pricing.minimum_amount is not None:
        parts.append(f"minimum {format_minor(pricing.minimum_amount, currency)}")
    if pricing.maximum_amount is not None:
        parts.append(f"maximum {format_minor(pricing.maximum_amount, currency)}")
    example = example.to_integral_value()
    cost = charge(pricing, example).amount_minor
    consumed = example + free_threshold
    return (
        ", ".join(parts)
        + f". Example: {consumed:,f} units ({example:,f} after the free ones) cost"
        + f" {format_minor(cost, currency)}"
    )
