"""Webhooks in the admin: endpoints (URL, event types, on/off, the signing secret to give the
receiver), the events sent, and deliveries with their attempts. Events, deliveries and attempts
are history: read-only, except that staff may redeliver (an action, and a button on the page)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing_site.jsonutil import exact_dumps, exact_loads
from billing_site.staff import PermittedActionsMixin
from webhooks import delivery as deliveries
from webhooks.destinations import validate_endpoint_url
from webhooks.models import (
    Delivery,
    DeliveryAttempt,
    EventType,
    WebhookEndpoint,
    WebhookEvent,
    new_signing_secret,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class EndpointURLField(forms.URLField):
    """The endpoint rules (https, a public address) in place of any-scheme URL validation, so a
    refused URL is told why rather than "Enter a valid URL"."""

    default_validators = [validate_endpoint_url]


class EndpointForm(forms.ModelForm):
    url = EndpointURLField(
        max_length=2000,
        assume_scheme="https",
        help_text="Receives a signed POST for each event: an https URL on a public address.",
    )
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Leave all unticked to receive every event type, including ones added later.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "enabled", "event_types"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["url", "description", "enabled", "event_types_shown", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "description"]
    fields = [
        "url",
        "description",
        "enabled",
        "event_types",
        "signing_secret",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["signing_secret", "created_at", "updated_at"]
    actions = ["rotate_secret"]

    @admin.display(description="event types")
    def event_types_shown(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.event_types) or "all"

    @admin.display(description="signing secret")
    def signing_secret(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.pk is None:
            return "Generated when the endpoint is saved."
        return format_html(
            "<code>{}</code><br>Configure the receiver with it: it verifies the "
            "<code>webhook-signature</code> header (Standard Webhooks).",
            endpoint.secret,
        )

    def save_model(self, request, obj, form, change):
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)

    @admin.action(description="Generate a new signing secret", permissions=["change"])
    def rotate_secret(self, request, queryset):
        """The old secret stops working at once: update the receiver right after."""
        for endpoint in queryset:
            endpoint.secret = new_signing_secret()
            endpoint.updated_at = timezone.now()
            endpoint.save(update_fields=["secret", "updated_at"])
        messages.warning(request, "New secrets generated; configure the receivers with them.")


def _pretty(body: str) -> str:
    return format_html("<pre>{}</pre>", _indented(exact_loads(body)))


def _indented(value: object, indent: str = "") -> str:
    """The body for reading, one field a line, numbers exactly as sent."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{exact_dumps(k)}: {_indented(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value:
        items = [inner + _indented(v, inner) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return exact_dumps(value)


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fk_name = "event"
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("delivery_link", "endpoint", "status", "attempt_count", "last_status_code")
    readonly_fields = fields

    @admin.display(description="delivery")
    def delivery_link(self, delivery: Delivery) -> str:
        url = reverse("admin:webhooks_delivery_change", args=[delivery.pk])
        return format_html('<a href="{}">{}</a>', url, delivery.pk)

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "event_type", "created_at"]
    list_filter = ["event_type"]
    search_fields = ["=id"]
    fields = ("id", "event_type", "created_at", "payload")
    readonly_fields = fields
    inlines = [DeliveryInline]

    @admin.display(description="body")
    def payload(self, event: WebhookEvent) -> str:
        return _pretty(event.body)


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    max_num = 0
    can_delete = False
    fields = (
        "number",
        "attempted_at",
        "status_code",
        "duration_ms",
        "error",
        "response_body",
        "succeeded",
    )
    readonly_fields = fields

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(PermittedActionsMixin, ReadOnlyAdmin):
    list_display = [
        "id",
        "event_type",
        "endpoint",
        "status",
        "attempt_count",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "event__event_type", "endpoint"]
    list_select_related = ["event", "endpoint"]
    search_fields = ["=event__id"]
    fields = (
        "event_link",
        "event_type",
        "endpoint",
        "status",
        "attempt_count",
        "next_attempt_at",
        "last_attempt_at",
        "last_status_code",
        "redelivery_of",
        "created_at",
        "payload",
    )
    readonly_fields = fields
    inlines = [AttemptInline]
    actions = ["redeliver_selected"]

    @admin.display(description="event type", ordering="event__event_type")
    def event_type(self, delivery: Delivery) -> str:
        return delivery.event.event_type

    @admin.display(description="event (webhook-id)")
    def event_link(self, delivery: Delivery) -> str:
        url = reverse("admin:webhooks_webhookevent_change", args=[delivery.event_id])
        return format_html('<a href="{}">{}</a>', url, delivery.event_id)

    @admin.display(description="body")
    def payload(self, delivery: Delivery) -> str:
        return _pretty(delivery.event.body)

    def has_redeliver_permission(self, request) -> bool:
        return request.user.has_perm("webhooks.change_delivery")

    @admin.action(description="Redeliver now", permissions=["redeliver"])
    def redeliver_selected(self, request, queryset):
        now = timezone.now()
        originals = list(queryset)
        for original in originals:
            deliveries.redeliver(original, now=now)
        messages.success(request, f"{len(originals)} new deliveries queued.")

    def get_urls(self):
        return [
            path(
                "<int:delivery_id>/redeliver/",
                self.admin_site.admin_view(self.redeliver_view),
                name="webhooks_delivery_redeliver",
            ),
            *super().get_urls(),
        ]

    def redeliver_view(self, request, delivery_id: int):
        """The page's button: a new delivery of the same event to the same endpoint, now."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        # Before the lookup: a refusal must not tell which deliveries exist (403 whatever the id).
        if not self.has_redeliver_permission(request):
            raise PermissionDenied
        original = get_object_or_404(Delivery, pk=delivery_id)
        again = deliveries.redeliver(original, now=timezone.now())
        if not original.endpoint.enabled:
            messages.warning(request, "The endpoint is disabled: it will be sent when enabled.")
        messages.success(request, f"Delivery {again.pk} queued.")
        return HttpResponseRedirect(reverse("admin:webhooks_delivery_change", args=[again.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_redeliver": self.has_redeliver_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)
