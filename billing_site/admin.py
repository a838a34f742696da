"""Staff manage API keys here: a new key is shown once, then only its prefix."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from billing_site.models import ApiKey

EDITABLE_FIELDS = ["name", "scope", "rate_limit_per_second", "rate_limit_per_minute"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "key_prefix",
        "scope",
        "rate_limit_per_second",
        "rate_limit_per_minute",
        "created_at",
        "revoked_at",
    ]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key_prefix"]
    fields = [*EDITABLE_FIELDS, "key_prefix", "created_at", "revoked_at"]
    readonly_fields = ["key_prefix", "created_at", "revoked_at"]
    actions = ["revoke_keys"]

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=EDITABLE_FIELDS)
            return
        values = {field: getattr(obj, field) for field in EDITABLE_FIELDS}
        api_key, raw_key = ApiKey.create(**values)
        obj.pk = api_key.pk
        obj.refresh_from_db()
        messages.warning(
            request, f"The new API key is {raw_key} — copy it now, it will not be shown again."
        )

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request, queryset):
        now = timezone.now()
        for api_key in queryset.active():
            api_key.revoke(now=now)
