"""Query-string parsing shared by the list endpoints, with errors that name the parameter."""

from __future__ import annotations

from datetime import UTC, datetime

from rest_framework.exceptions import ValidationError


def parse_datetime_value(raw: str) -> datetime:
    """ISO 8601 with `Z` or an offset; a time without offset is UTC. Raises ValueError, also for
    a time that is out of range in UTC (`0001-01-01T00:00+01:00`)."""
    raw = raw.strip()
    if "T" in raw:
        raw = raw.replace(" ", "+")  # an unencoded `+` in a query string arrives as a space
    moment = datetime.fromisoformat(raw)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{raw!r} is out of range") from None


def parse_query_datetime(params, name: str) -> datetime | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        return parse_datetime_value(raw)
    except ValueError:
        raise ValidationError({name: [f"{raw!r} is not an ISO 8601 date-time."]}) from None


def parse_query_bool(params, name: str) -> bool | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    if raw.lower() in {"true", "1"}:
        return True
    if raw.lower() in {"false", "0"}:
        return False
    raise ValidationError({name: ["Must be true or false."]})


def filter_exact(queryset, params, fields: tuple[str, ...]):
    """Narrow `queryset` by each of `fields` given (non-empty) in the query string."""
    for field in fields:
        if params.get(field):
            queryset = queryset.filter(**{field: params[field]})
    return queryset
