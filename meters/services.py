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
from meters.models import DODO_FALLBACK, Aggregation, Meter

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


AGGREGATION_FIELDS = ("type", "key", "extended_type")


def validate_aggregation(data: object) -> tuple[str, str | None]:
    """`{type, key}` -> (type, key); `key` names a metadata property, required unless count.

    `type` may also be an extension (`unique_count`, `min`), or its Dodo fallback with the
    extension in `extended_type`, as `wire_aggregation` answers, so a meter read back can be sent
    again as it came. Unknown fields are refused, not dropped.
    """
    if not isinstance(data, dict):
        raise InvalidInput(
            "aggregation must be an object.",
            errors=[{"field": "aggregation", "message": "Must be an object {type, key}."}],
        )
    errors = unknown_fields(data, AGGREGATION_FIELDS, "aggregation")
    kind = data.get("type")
    key = data.get("key")
    extended = data.get("extended_type")
    if kind not in Aggregation.values:
        errors.append(
            {
                "field": "aggregation.type",
                "message": f"Must be one of {', '.join(Aggregation.values)}.",
            }
        )
    elif extended is not None:
        if extended not in DODO_FALLBACK:
            errors.append(
                {
                    "field": "aggregation.extended_type",
                    "message": f"Must be one of {', '.join(DODO_FALLBACK)}, or null.",
                }
            )
        elif kind not in (extended, DODO_FALLBACK[extended]):
            errors.append(
                {
                    "field": "aggregation.extended_type",
                    "message": f"{extended} goes with type {DODO_FALLBACK[extended]} "
                    f"(or {extended}), not {kind}.",
                }
            )
        else:
            kind = extended
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH):
        errors.append(
            {"field": "aggregation.key", "message": "Must be a string of 1 to 100 characters."}
        )
    elif key is None and kind in Aggregation.values and kind != Aggregation.COUNT:
        errors.append(
            {"field": "aggregation.key", "message": f"Is required for a {kind} aggregation."}
        )
    if errors:
        raise InvalidInput.from_errors(errors)
    return str(kind), key


def wire_aggregation(aggregation_type: str, key: str | None) -> dict:
    """A meter's aggregation as the API answers it.

    The SDK types `type` as Dodo's four values and its strict client refuses any other, so an
    extension is answered as its nearest Dodo type (unique_count -> count, min -> max) with the
    real one in `extended_type`, a field the SDK keeps (`meter.aggregation.extended_type`).
    Meters of Dodo's types are answered exactly as Dodo does, without the field.
    """
    if aggregation_type in DODO_FALLBACK:
        return {
            "type": str(DODO_FALLBACK[Aggregation(aggregation_type)]),
            "key": key,
            "extended_type": aggregation_type,
        }
    return {"type": aggregation_type, "key": key}


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
