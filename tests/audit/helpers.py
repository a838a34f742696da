"""Reading the audit log in tests."""

from __future__ import annotations

from audit.models import AuditEntry
from billing_site.models import ApiKey


def logged(object_type: str, object_id: str | None = None) -> list[AuditEntry]:
    """The audit rows for one object (or every object of a type), oldest first."""
    rows = AuditEntry.objects.filter(object_type=object_type)
    if object_id is not None:
        rows = rows.filter(object_id=object_id)
    return list(rows.order_by("id"))


def actor(entry: AuditEntry) -> tuple[str, str | None, str]:
    return (entry.actor_kind, entry.actor_id, entry.actor_name)


def api_key_actor(name: str = "tests") -> tuple[str, str, str]:
    """The actor of requests made with the `api` fixture's key."""
    return ("api_key", str(ApiKey.objects.get(name=name).pk), name)


def user_actor(user) -> tuple[str, str, str]:
    return ("user", str(user.pk), user.get_username())


SYSTEM = ("system", None, "system")
