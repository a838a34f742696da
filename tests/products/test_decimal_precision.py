"""Amounts beyond 28 significant digits are billed exactly (the default decimal context would
round them before the one half-up rounding the rules ask for)."""

from __future__ import annotations

import threading
from decimal import Decimal
from fractions import Fraction

from products.billing import usage_charge


def half_up(value: Fraction) -> int:
    """Round a non-negative exact fraction half-up to an integer, independently of decimal."""
    whole, rest = divmod(value.numerator, value.denominator)
    return whole + (1 if 2 * rest >= value.denominator else 0)


def test_a_31_digit_usage_is_charged_exactly():
    consumed = Decimal("12345678901234567900.49999999995")  # 31 significant digits
    free, price = 10, Decimal("1")
    _, chargeable, amount = usage_charge(consumed, free, price)
    exact = Fraction(consumed) - free
    assert chargeable == Decimal("12345678901234567890.49999999995")
    # 28 digits would make it ...890.5000000 and round up to ...891.
    assert amount == half_up(exact * Fraction(price)) == 12345678901234567890


def test_threads_started_later_carry_the_same_precision():
    seen = []
    thread = threading.Thread(
        target=lambda: seen.append(
            Decimal("1234567890123456789012345.6789") * Decimal("1.00000000000000000001")
        )
    )
    thread.start()
    thread.join()
    exact = Fraction("1234567890123456789012345.6789") * Fraction("1.00000000000000000001")
    assert Fraction(seen[0]) == exact
