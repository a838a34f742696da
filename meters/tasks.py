"""Celery entry points for rollups; the work itself is in meters/rollups.py."""

from celery import shared_task

from meters import rollups

# A run stops taking new work after this many seconds, well inside the beat interval's overlap
# tolerance; whatever is left is picked up by the next run or by another worker.
ROLLUP_TIME_BUDGET_SECONDS = 20


@shared_task(name="meters.roll_up")
def roll_up() -> None:
    rollups.run_rollups(time_budget=ROLLUP_TIME_BUDGET_SECONDS)
