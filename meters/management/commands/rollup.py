"""`manage.py rollup`: apply all pending rollup work now and return when it is done."""

from django.core.management.base import BaseCommand

from events.queries import pending_batch_stats
from meters import rollups


class Command(BaseCommand):
    help = "Roll up every pending ingest batch and finish every meter backfill, then exit."

    def handle(self, *args, **options):
        batches, events = pending_batch_stats()
        backfills = rollups.meters_needing_backfill()
        rollups.run_rollups()
        self.stdout.write(
            f"Rolled up {events} events from {batches} batches; backfilled {len(backfills)} meters."
        )
