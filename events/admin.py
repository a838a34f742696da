"""Events are history: staff can read and search them, never edit them."""

from django.contrib import admin
from django.urls import path, reverse
from django.utils.html import format_html

from billing_site.staff import PermittedActionsMixin
from events.models import Event
from events.queries import event_names
from products.explain_admin import event_explain_view

# Any key that may ingest can invent event names: the filter offers this many at most (the
# first by name, read by a skip scan); the search box finds any name exactly.
EVENT_NAME_FILTER_LIMIT = 50


class EventNameFilter(admin.SimpleListFilter):
    title = f"event name (first {EVENT_NAME_FILTER_LIMIT})"
    parameter_name = "event_name"

    def lookups(self, request, model_admin):
        return [(name, name) for name in event_names(EVENT_NAME_FILTER_LIMIT)]

    def queryset(self, request, queryset):
        # Any name, listed or not: links elsewhere (and typed URLs) filter by names past the list.
        if self.value() is not None:
            return queryset.filter(event_name=self.value())
        return queryset


@admin.register(Event)
class EventAdmin(PermittedActionsMixin, admin.ModelAdmin):
    list_display = [
        "event_id",
        "customer_id",
        "event_name",
        "timestamp",
        "ingested_at",
        "explain_link",
    ]
    readonly_fields = ["explain_link"]
    # A date filter, not `date_hierarchy`: that reads the distinct years of every event
    # (`SELECT DISTINCT date_trunc(...)`, a scan of the whole table) on each list page.
    list_filter = [EventNameFilter, ("timestamp", admin.DateFieldListFilter)]
    search_fields = ["=event_id", "=customer_id", "=event_name"]
    search_help_text = "An exact event id, customer id or event name."
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Billed?")
    def explain_link(self, event: Event) -> str:
        url = reverse("admin:events_event_explain", args=[event.event_id])
        return format_html('<a href="{}">Why (not) billed?</a>', url)

    def get_urls(self):
        def explain_view(request, event_id: str):
            return event_explain_view(request, event_id, can_view=self.has_view_permission(request))

        custom = [
            path(
                "explain/<path:event_id>/",
                self.admin_site.admin_view(explain_view),
                name="events_event_explain",
            )
        ]
        return custom + super().get_urls()
