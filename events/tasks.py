"""Celery entry points for the events app; the rule is in events/ingest.py."""

from celery import shared_task
from django.utils import timezone

from events.ingest import prune_refusals


@shared_task(name="events.prune_refused")
def prune_refused() -> int:
    """Forget refused events past REJECTED_EVENTS_RETENTION_DAYS (and past the row cap)."""
    return prune_refusals(now=timezone.now())
