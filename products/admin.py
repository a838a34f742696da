from django.contrib import admin

from products.models import Customer


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["customer_id", "name", "email", "created_at"]
    search_fields = ["=customer_id", "email", "name"]
    readonly_fields = ["customer_id", "created_at"]
