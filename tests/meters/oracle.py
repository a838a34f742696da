"""An independent, plain-Python aggregation of raw events, to check what the database computes.

It knows nothing of buckets, SQL or the project's filter module: it is written from the rules in
DESIGN.md (typed values, skipped non-numbers, last by timestamp then ingestion order) and the
unique_count rule (distinct values of the key, typed as filters compare: 1 and 1.0 are one value,
"1" another, true another; events without the key skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


def is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def typed_value(value: object) -> tuple[str, object] | None:
    """A metadata value as unique_count tells values apart; None if it cannot be counted.

    Decimal("1.0") == Decimal(1) and they hash alike, so a set holds them once.
    """
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, str):
        return ("string", value)
    if is_number(value):
        return ("number", Decimal(str(value)))
    return None


@dataclass(frozen=True)
class RawEvent:
    event_id: str
    customer_id: str
    event_name: str
    timestamp: datetime
    metadata: dict
    order: int  # ingestion order, for ties on `last`


def aggregate(
    events: list[RawEvent],
    *,
    kind: str,
    key: str | None,
    event_name: str,
    predicate,
    customer_id: str | None,
    start: datetime,
    end: datetime,
) -> tuple[Decimal, int, int]:
    """(quantity, contributing events, skipped events) over [start, end)."""
    matched = [
        e
        for e in events
        if e.event_name == event_name
        and (customer_id is None or e.customer_id == customer_id)
        and start <= e.timestamp < end
        and predicate(e.metadata)
    ]
    if kind == "count":
        return Decimal(len(matched)), len(matched), 0
    if kind == "unique_count":
        typed = [typed_value(e.metadata.get(key)) for e in matched if key in e.metadata]
        counted = [value for value in typed if value is not None]
        return Decimal(len(set(counted))), len(counted), len(matched) - len(counted)
    numeric = [e for e in matched if is_number(e.metadata.get(key))]
    skipped = len(matched) - len(numeric)
    values = [Decimal(str(e.metadata[key])) for e in numeric]
    if not values:
        return Decimal(0), 0, skipped
    if kind == "sum":
        quantity = sum(values, Decimal(0))
    elif kind == "max":
        quantity = max(values)
    elif kind == "min":
        quantity = min(values)
    else:
        latest = max(numeric, key=lambda e: (e.timestamp, e.order))
        quantity = Decimal(str(latest.metadata[key]))
    return quantity, len(numeric), skipped
