"""Model fields shared by the apps."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import models


class BitVaryingField(models.Field):
    """PostgreSQL `bit varying`, read and written as a string of 0s and 1s."""

    def db_type(self, connection) -> str:
        return "bit varying"


class NumericField(models.DecimalField):
    """PostgreSQL `numeric` with no precision or scale: exact at any size, stored compactly.

    Usage quantities and unit prices must never be rounded by the column; rounding happens once,
    by the billing rule, per invoice line.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 1000)
        kwargs.setdefault("decimal_places", 500)
        super().__init__(*args, **kwargs)

    def db_type(self, connection) -> str:
        return "numeric"

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("max_digits", None)
        kwargs.pop("decimal_places", None)
        return name, path, args, kwargs

    def to_python(self, value):
        # DecimalField would round to `decimal_places`; keep the exact value instead.
        if value is None or isinstance(value, Decimal):
            return value
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise ValidationError(f"{value!r} is not a decimal number.", code="invalid") from None

    def get_db_prep_value(self, value, connection, prepared=False):
        return self.to_python(value)
