"""Staff manage API keys here: a new key is shown once, then only its prefix.

The new key is shown on the page that answers the form, never through Django's messages: the
default messages storage is a signed but readable cookie, so a key there would travel back to
the browser, and into any log of cookies, in plain text."""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse
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
        request._new_api_key = raw_key  # for response_add, the page that shows it once

    def response_add(self, request, obj, post_url_continue=None):
        raw_key = getattr(request, "_new_api_key", None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "API key created",
            "api_key": obj,
            "raw_key": raw_key,
        }
        response = TemplateResponse(request, "admin/billing_site/apikey/created.html", context)
        response["Cache-Control"] = "no-store"  # not kept in the browser's cache either
        return response

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request, queryset):
        now = timezone.now()
        for api_key in queryset.active():
            api_key.revoke(now=now)
