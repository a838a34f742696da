"""Celery entry points for webhook deliveries; the rules are in webhooks/delivery.py."""

from celery import shared_task
from django.utils import timezone

from webhooks import delivery


@shared_task(name="webhooks.deliver")
def deliver(delivery_id: int) -> None:
    delivery.deliver(delivery_id, now=timezone.now())


@shared_task(name="webhooks.deliver_due")
def deliver_due() -> None:
    delivery.deliver_due(now=timezone.now())
