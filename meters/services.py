"""The only ways to change a meter: create, update, archive, unarchive.

A change to what a meter counts (event name, aggregation, filter) gives it a new definition
version; the rollup worker then rebuilds its buckets over all history, and until it has, usage is
answered from raw events, so an edit never shows stale numbers. Each change is written to the
audit log in its own transaction.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from audit import log as audit_log
from audit.models import Action
from billing_site.errors import InvalidInput
from billing_site.strict import unknown_fields
from meters.filters import validate_filter
from meters.models import Aggregation, Meter

DEFINITION_FIELDS = ("event_name", "aggregation_type", "aggregation_key", "filter")
MAX_KEY_LENGTH = 100
AUDITED_FIELDS = (
    "name",
    "description",
    "event_name",
    "measurement_unit",
    "aggregation_type",
    "aggregation_key",
    "filter",
    "archived_at",
)


def meter_state(meter: Meter) -> dict:
    """What the audit log keeps of a meter before and after a change."""
    return audit_log.snapshot(meter, AUDITED_FIELDS)


def validate_aggregation(data: object) -> tuple[str, str | None]:
    """`{type, key}` -> (type, key); `key` names a metadata property, required unless count."""
    if not isinstance(data, dict):
        raise InvalidInput(
            "aggregation must be an object.",
            errors=[{"field": "aggregation", "message": "Must be an object {type, key}."}],
        )
    errors = unknown_fields(data, ("type", "key"), "aggregation")
    kind = data.get("type")
    key = data.get("key")
    if kind not in Aggregation.values:
        errors.append(
            {
                "field": "aggregation.type",
                "message": f"Must be one of {', '.join(Aggregation.values)}.",
            }
        )
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH):
        errors.append(
            {"field": "aggregation.key", "message": "Must be a string of 1 to 100 characters."}
        )
    elif key is None and kind in (Aggregation.SUM, Aggregation.MAX, Aggregation.LAST):
        errors.append(
            {"field": "aggregation.key", "message": f"Is required for a {kind} aggregation."}
        )
    if errors:
        raise InvalidInput.from_errors(errors)
    return str(kind), key


def create_meter(
    *,
    name: str,
    event_name: str,
    measurement_unit: str,
    aggregation: dict,
    filter: object = None,
    description: str | None = None,
    now: datetime,
) -> Meter:
    aggregation_type, aggregation_key = validate_aggregation(aggregation)
    with transaction.atomic():
        meter = Meter.objects.create(
            name=name,
            description=description,
            event_name=event_name,
            measurement_unit=measurement_unit,
            aggregation_type=aggregation_type,
            aggregation_key=aggregation_key,
            filter=None if filter is None else validate_filter(filter),
            created_at=now,
            updated_at=now,
        )
        audit_log.record_change(meter, Action.CREATED, before=None, after=meter_state(meter))
    return meter


def update_meter(meter: Meter, *, now: datetime, **changes) -> Meter:
    """Apply changes; `aggregation` and `filter` are validated like on create."""
    if "aggregation" in changes:
        changes["aggregation_type"], changes["aggregation_key"] = validate_aggregation(
            changes.pop("aggregation")
        )
    if changes.get("filter") is not None:
        changes["filter"] = validate_filter(changes["filter"])
    with transaction.atomic():
        meter = Meter.objects.select_for_update().get(pk=meter.pk)
        before = meter_state(meter)
        redefined = any(
            field in changes and changes[field] != getattr(meter, field)
            for field in DEFINITION_FIELDS
        )
        for field, value in changes.items():
            setattr(meter, field, value)
        meter.updated_at = now
        if redefined:
            meter.definition_version += 1
            meter.backfill_next_day = None
            meter.backfill_days_done = 0
        meter.save()
        audit_log.record_change(meter, Action.UPDATED, before=before, after=meter_state(meter))
    return meter


def archive_meter(meter: Meter, *, now: datetime) -> None:
    """Archived meters keep their history and rollups; they cannot be attached to products."""
    _set_archived_at(meter, now, Action.ARCHIVED)


def unarchive_meter(meter: Meter) -> None:
    _set_archived_at(meter, None, Action.UNARCHIVED)


def _set_archived_at(meter: Meter, archived_at: datetime | None, action: str) -> None:
    """Archive or unarchive under the row lock, so the audit log's before is what was there."""
    with transaction.atomic():
        locked = Meter.objects.select_for_update().get(pk=meter.pk)
        if (locked.archived_at is None) == (archived_at is None):
            meter.archived_at = locked.archived_at
            return
        before = meter_state(locked)
        locked.archived_at = meter.archived_at = archived_at
        locked.save(update_fields=["archived_at"])
        audit_log.record_change(locked, action, before=before, after=meter_state(locked))
