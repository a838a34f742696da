"""Writing the audit log: `record` one change, with `snapshot` to capture an object's state.

Callers (the services of meters, products and credits, their admin saves, and the ledger
receiver) call it inside the transaction of the change; the actor comes from audit/context.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal

from django.db import models
from django.utils import timezone

from audit.context import current_actor
from audit.models import AuditEntry


def jsonable(value: object) -> object:
    """Values as the exact JSON encoder takes them: decimals kept, times as ISO 8601 text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if value is None or isinstance(value, str | bool | int | Decimal | float):
        return value
    return str(value)


def snapshot(instance: models.Model, fields: Iterable[str]) -> dict:
    """The named fields of `instance` (a foreign key as its id: pass `meter_id`)."""
    return {field: jsonable(getattr(instance, field)) for field in fields}


def record(
    *,
    object_type: str,
    object_id: str,
    action: str,
    before: dict | None,
    after: dict | None,
    details: dict | None = None,
) -> AuditEntry | None:
    """Log one change by the current actor."""
    actor = current_actor()
    return AuditEntry.objects.create(
        created_at=timezone.now(),
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_name=actor.name[:150],
        object_type=object_type,
        object_id=str(object_id),
        action=action,
        before=before,
        after=after,
        details=jsonable(details or {}),
    )


def record_change(
    instance: models.Model, action: str, *, before: dict | None, after: dict | None
) -> AuditEntry | None:
    """`record` for a model instance (type `app.model`, id its primary key); an update that
    changed nothing is not logged."""
    if before is not None and before == after:
        return None
    return record(
        object_type=instance._meta.label_lower,
        object_id=str(instance.pk),
        action=action,
        before=before,
        after=after,
    )
