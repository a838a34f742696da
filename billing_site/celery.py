"""The Celery app and its beat schedule: the one place that says what runs when."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")

app = Celery("billing_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every task is idempotent and safe on several workers at once, so overlapping runs are harmless.
app.conf.beat_schedule = {
    "roll-up-usage": {"task": "meters.roll_up", "schedule": 5.0, "options": {"expires": 30}},
    "billing-cycle": {"task": "products.bill", "schedule": 60.0, "options": {"expires": 120}},
    "deduct-credits": {"task": "credits.deduct", "schedule": 60.0, "options": {"expires": 120}},
    # Dunning retries and payments whose task was lost (products/payments.py).
    "collect-payments": {
        "task": "products.collect_due_payments",
        "schedule": 30.0,
        "options": {"expires": 60},
    },
    # Refused events are kept REJECTED_EVENTS_RETENTION_DAYS for /events/{id}/explain.
    "prune-refused-events": {
        "task": "events.prune_refused",
        "schedule": 3600.0,
        "options": {"expires": 3600},
    },
    # Monthly events partitions exist months ahead; rows stranded in the default partition
    # get their month's partition (events/partitions.py).
    "create-event-partitions": {
        "task": "events.create_partitions",
        "schedule": 3600.0,
        "options": {"expires": 3600},
    },
    # Every invoice line recomputed from the raw events, the result kept for the staff home.
    "verify-invoices": {
        "task": "products.verify_invoices",
        "schedule": 86400.0,
        "options": {"expires": 3600},
    },
    # Portal sessions dead for 30 days are deleted (portal/sessions.py).
    "forget-portal-sessions": {
        "task": "portal.forget_old_sessions",
        "schedule": 3600.0,
        "options": {"expires": 3600},
    },
    # Webhook retries and any first attempt whose queued task was lost (webhooks/delivery.py).
    "deliver-webhooks": {
        "task": "webhooks.deliver_due",
        "schedule": 10.0,
        "options": {"expires": 30},
    },
}
