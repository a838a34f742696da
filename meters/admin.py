"""Meters in the admin: the list, plus custom staff views for create/edit (filter builder with live
preview) and analytics. Meters are archived, never deleted: invoices and products refer to them.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing_site.staff import PermittedActionsMixin
from meters import services, views
from meters.models import Meter


@admin.register(Meter)
class MeterAdmin(PermittedActionsMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "event_name",
        "aggregation",
        "measurement_unit",
        "status",
        "rollups",
        "analytics_link",
    ]
    list_filter = [("archived_at", admin.EmptyFieldListFilter), "aggregation_type"]
    search_fields = ["=id", "name", "event_name"]
    actions = ["archive_meters", "unarchive_meters"]

    # --- the list ------------------------------------------------------------------------------

    @admin.display(description="Aggregation")
    def aggregation(self, meter: Meter) -> str:
        if meter.aggregation_key:
            return f"{meter.aggregation_type}({meter.aggregation_key})"
        return meter.aggregation_type

    @admin.display(description="Status", ordering="archived_at")
    def status(self, meter: Meter) -> str:
        return "archived" if meter.is_archived else "active"

    @admin.display(description="Rollups")
    def rollups(self, meter: Meter) -> str:
        if meter.rollups_ready:
            return "ready"
        return f"backfilling {meter.backfill_progress:.0%}"

    @admin.display(description="")
    def analytics_link(self, meter: Meter) -> str:
        url = reverse("admin:meters_meter_analytics", args=[quote(meter.pk)])
        return format_html('<a href="{}">Analytics</a>', url)

    @admin.action(description="Archive selected meters", permissions=["change"])
    def archive_meters(self, request: HttpRequest, queryset: QuerySet[Meter]) -> None:
        now = timezone.now()
        for meter in queryset:
            services.archive_meter(meter, now=now)
            self.log_change(request, meter, "Archived.")
        messages.success(request, "Archived. History and rollups are kept.")

    @admin.action(description="Unarchive selected meters", permissions=["change"])
    def unarchive_meters(self, request: HttpRequest, queryset: QuerySet[Meter]) -> None:
        for meter in queryset:
            services.unarchive_meter(meter)
            self.log_change(request, meter, "Unarchived.")

    def has_delete_permission(self, request: HttpRequest, obj: Meter | None = None) -> bool:
        return False

    # --- custom views --------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        custom = [
            path("preview/", wrap(self.preview_view), name="meters_meter_preview"),
            path(
                "<str:object_id>/analytics/",
                wrap(self.analytics_view),
                name="meters_meter_analytics",
            ),
            path(
                "<str:object_id>/analytics/events.csv",
                wrap(self.events_csv_view),
                name="meters_meter_events_csv",
            ),
            path(
                "<str:object_id>/analytics/customers.csv",
                wrap(self.customers_csv_view),
                name="meters_meter_customers_csv",
            ),
        ]
        return custom + super().get_urls()

    def _meter(self, request: HttpRequest, object_id: str) -> Meter:
        meter = self.get_object(request, unquote(object_id))
        if meter is None:
            raise Http404("No such meter.")
        return meter

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        return views.meter_form(request, self)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        meter = self._meter(request, object_id)
        if not self.has_change_permission(request, meter):
            # Who may only view a meter reads its analytics, and may not post the form.
            if request.method == "GET" and self.has_view_permission(request, meter):
                return self.analytics_view(request, object_id)
            raise PermissionDenied
        return views.meter_form(request, self, meter)

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        return views.preview_json(request)

    def analytics_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        meter = self._meter(request, object_id)
        if not self.has_view_permission(request, meter):
            raise PermissionDenied
        return views.analytics_page(request, self, meter)

    def events_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        meter = self._meter(request, object_id)
        if not self.has_view_permission(request, meter):
            raise PermissionDenied
        return views.events_csv(request, meter)

    def customers_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        meter = self._meter(request, object_id)
        if not self.has_view_permission(request, meter):
            raise PermissionDenied
        return views.customers_csv(request, meter)
