"""Usage alerts in the admin (billing admins add and remove them; the crossings are history), and
the portal sessions handed out, which staff may end."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils import timezone

from billing_site.errors import DomainError
from portal import alerts, sessions
from portal.models import PortalSession, UsageAlert, UsageAlertCrossing


class UsageAlertForm(forms.ModelForm):
    class Meta:
        model = UsageAlert
        fields = ["subscription", "meter", "threshold_kind", "threshold"]

    def clean(self):
        """The API's rules (the meter is on the product, amounts are whole minor units)."""
        data = super().clean()
        subscription, meter = data.get("subscription"), data.get("meter")
        if self.errors or subscription is None or meter is None:
            return data
        try:
            self.instance = alerts.validated_alert(
                subscription.pk,
                meter_id=meter.pk,
                threshold_kind=data.get("threshold_kind"),
                threshold=str(data.get("threshold")),
            )
        except DomainError as refused:
            raise forms.ValidationError(refused.message) from None
        return data


class CrossingInline(admin.TabularInline):
    model = UsageAlertCrossing
    extra = 0
    can_delete = False
    fields = ["period_start", "period_end", "consumed_units", "amount_minor", "reached_at"]
    readonly_fields = ["period_start", "period_end", "consumed_units", "amount_minor", "reached_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(UsageAlert)
class UsageAlertAdmin(admin.ModelAdmin):
    form = UsageAlertForm
    list_display = ["id", "subscription", "meter", "threshold_kind", "threshold", "created_at"]
    list_filter = ["threshold_kind"]
    search_fields = ["id", "subscription__subscription_id", "subscription__customer__email"]
    raw_id_fields = ["subscription", "meter"]
    inlines = [CrossingInline]

    def get_readonly_fields(self, request, obj=None):
        # An alert is replaced, not edited: its crossings belong to the threshold they crossed.
        return ["subscription", "meter", "threshold_kind", "threshold"] if obj else []

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            saved = alerts.create_alert(
                obj.subscription_id,
                meter_id=obj.meter_id,
                threshold_kind=obj.threshold_kind,
                threshold=str(obj.threshold),
                now=timezone.now(),
            )
            obj.pk = saved.pk

    def delete_model(self, request, obj) -> None:
        alerts.delete_alert(obj)

    def delete_queryset(self, request, queryset) -> None:
        for alert in queryset:
            alerts.delete_alert(alert)


@admin.register(PortalSession)
class PortalSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "customer", "created_at", "expires_at", "ended_at"]
    search_fields = ["id", "customer__customer_id", "customer__email"]
    fields = ["id", "customer", "return_url", "created_at", "expires_at", "ended_at"]
    readonly_fields = ["id", "customer", "return_url", "created_at", "expires_at", "ended_at"]
    actions = ["end_sessions"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="End the selected sessions (their links stop working)")
    def end_sessions(self, request, queryset) -> None:
        for session in queryset:
            sessions.end_session(session, now=timezone.now())
