"""Celery entry point for the billing cycle; the rules are in products/billing.py."""

from celery import shared_task
from django.utils import timezone

from products.billing import run_billing_cycle


@shared_task(name="products.bill")
def bill() -> None:
    run_billing_cycle(now=timezone.now())
