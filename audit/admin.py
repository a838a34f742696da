"""The audit log in the admin: read-only for everyone, superusers included; nobody edits
history. Filter by object type, action, actor and date; search by object id or actor."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from audit.models import AuditEntry
from billing_site.jsonutil import exact_dumps


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "action", "object_type", "object_id", "change"]
    list_filter = ["object_type", "action", "actor_kind", "actor_name", "created_at"]
    search_fields = ["=object_id", "object_id", "actor_name"]
    date_hierarchy = "created_at"
    actions = None
    fields = (
        "created_at",
        "actor_kind",
        "actor_id",
        "actor_name",
        "object_type",
        "object_id",
        "action",
        "before_json",
        "after_json",
        "details_json",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    @admin.display(description="Actor", ordering="actor_name")
    def actor(self, entry: AuditEntry) -> str:
        if entry.actor_kind == "system":
            return "system"
        return f"{entry.get_actor_kind_display()} {entry.actor_name} (#{entry.actor_id})"

    @admin.display(description="Changed")
    def change(self, entry: AuditEntry) -> str:
        """The fields whose values differ, so the list reads without opening each row."""
        before, after = entry.before or {}, entry.after or {}
        if not before:
            return "(new)"
        keys = [key for key in after if before.get(key) != after.get(key)]
        return ", ".join(keys)

    def _json(self, value: object) -> str:
        return format_html("<pre>{}</pre>", "" if value is None else exact_dumps(value))

    @admin.display(description="Before")
    def before_json(self, entry: AuditEntry) -> str:
        return self._json(entry.before)

    @admin.display(description="After")
    def after_json(self, entry: AuditEntry) -> str:
        return self._json(entry.after)

    @admin.display(description="Details")
    def details_json(self, entry: AuditEntry) -> str:
        return self._json(entry.details)
