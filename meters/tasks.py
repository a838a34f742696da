"""Celery entry points for rollups; the work itself is in meters/rollups.py."""

from celery import shared_task
from django.utils import timezone

from meters import rollups
from portal.alerts import check_usage_alerts

# A run stops taking new work after this many seconds, well inside the beat interval's overlap
# tolerance; whatever is left is picked up by the next run or by another worker.
ROLLUP_TIME_BUDGET_SECONDS = 20


@shared_task(name="meters.roll_up")
def roll_up() -> None:
    rollups.run_rollups(time_budget=ROLLUP_TIME_BUDGET_SECONDS)
    # Usage alerts ride on the rollup beat (every few seconds): fresh buckets make the check cheap.
    check_usage_alerts(now=timezone.now())
