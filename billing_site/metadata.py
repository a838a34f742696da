"""The limits of flat metadata, one set for events, customers, products and every other object:
at most 50 keys of 1 to 100 characters, strings of at most 500 characters, and numbers exact
enough for billing arithmetic (below 10^20 in magnitude, at most 20 decimals)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MAX_METADATA_KEYS = 50
MAX_KEY_LENGTH = 100
MAX_STRING_VALUE_LENGTH = 500
# Numbers are kept exactly (jsonb numeric); these bounds keep them sane for billing arithmetic.
MAX_NUMBER_MAGNITUDE = Decimal("1e20")
MAX_FRACTION_DIGITS = 20


def is_storable_number(value: int | float | Decimal) -> bool:
    """Whether a metadata number is within the limits (1e999999 would overflow the jsonb numeric,
    NaN and infinities are no JSON)."""
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError):
        return False
    if not number.is_finite():
        return False
    # copy_abs, not abs(): exact, where abs() rounds to the context and overflows (1e999999999)
    exponent = number.as_tuple().exponent
    return (
        number.copy_abs() < MAX_NUMBER_MAGNITUDE
        and isinstance(exponent, int)
        and -exponent <= MAX_FRACTION_DIGITS
    )
