"""Celery entry points for the events app; the rules are in events/ingest.py and
events/partitions.py."""

from celery import shared_task
from django.utils import timezone

from events.ingest import prune_refusals
from events.partitions import ensure_partitions


@shared_task(name="events.prune_refused")
def prune_refused() -> int:
    """Forget refused events past REJECTED_EVENTS_RETENTION_DAYS (and past the row cap)."""
    return prune_refusals(now=timezone.now())


@shared_task(name="events.create_partitions")
def create_partitions() -> list[str]:
    """Create the events partitions of this month and the next MONTHS_AHEAD (and of any month
    with rows in the default partition, moving them); returns the months created."""
    return [str(month) for month in ensure_partitions(now=timezone.now())]
