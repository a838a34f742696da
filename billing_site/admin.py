"""Staff manage API keys here: a new key is shown once, then only its prefix."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from billing_site.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "key_prefix", "created_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key_prefix"]
    fields = ["name", "key_prefix", "created_at", "revoked_at"]
    readonly_fields = ["key_prefix", "created_at", "revoked_at"]
    actions = ["revoke_keys"]

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        api_key, raw_key = ApiKey.create(name=obj.name)
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
