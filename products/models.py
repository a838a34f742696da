"""The catalogue and who buys it: customers, products, subscriptions and invoices."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from billing_site.ids import new_customer_id


class Customer(models.Model):
    customer_id = models.CharField(
        primary_key=True, max_length=64, default=new_customer_id, editable=False
    )
    email = models.CharField(max_length=254, db_index=True)
    name = models.CharField(max_length=255)
    phone_number = models.CharField(max_length=32, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    class Meta:
        ordering = ["-created_at", "customer_id"]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"
