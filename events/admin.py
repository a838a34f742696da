"""Events are history: staff can read and search them, never edit them."""

from django.contrib import admin

from events.models import Event


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["event_id", "customer_id", "event_name", "timestamp", "ingested_at"]
    list_filter = ["event_name"]
    search_fields = ["=event_id", "=customer_id"]
    date_hierarchy = "timestamp"
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
