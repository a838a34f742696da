"""How values look on the wire, in one place for the API, the webhooks and the admin: decimals as
exact strings ("0.1", never a float) and times as DRF writes them (ISO 8601, UTC)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from rest_framework import serializers

_DATETIME = serializers.DateTimeField()


def decimal_text(value: Decimal | None) -> str | None:
    """A decimal as its exact text; None stays None (absent differs from zero on Dodo's wire)."""
    return None if value is None else format(value, "f")


def timestamp_text(moment: datetime | None) -> str | None:
    """An aware time as DRF renders it; None stays None."""
    return None if moment is None else _DATETIME.to_representation(moment)
