"""`manage.py archive_events --before YYYY-MM [--dump DIR] [--as-of ISO-TIME]`: detach every
whole month of events before that month, once all its billing is final (products/archive.py).

With `--dump` each month is written to DIR/events_event_pYYYY_MM.csv (COPY, with a header) and
its table dropped; without it the detached table stays as events_archive_YYYY_MM.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing_site.api.fields import parse_datetime_value
from events.partitions import Month
from products.archive import ArchiveRefused, archive_events


class Command(BaseCommand):
    help = "Detach (and optionally dump) the events partitions of months whose billing is final."

    def add_arguments(self, parser):
        parser.add_argument("--before", required=True, help="First month kept, YYYY-MM.")
        parser.add_argument("--dump", help="Directory to COPY each archived month to (CSV).")
        parser.add_argument("--as-of", dest="as_of", help="ISO 8601 time taken as now.")

    def handle(
        self, *args, before: str, dump: str | None = None, as_of: str | None = None, **options
    ):
        try:
            month = Month.parse(before)
        except ValueError as exc:
            raise CommandError(f"--before: {exc}") from None
        try:
            now = parse_datetime_value(as_of) if as_of else timezone.now()
        except ValueError:
            raise CommandError(f"--as-of {as_of!r} is not an ISO 8601 time") from None
        try:
            archived = archive_events(before=month, now=now, dump_dir=Path(dump) if dump else None)
        except ArchiveRefused as refused:
            raise CommandError(refused.message) from None
        for part in archived:
            where = (
                f"dumped to {part.dump}"
                if part.dump
                else f"kept as events_archive_{part.month.year:04d}_{part.month.month:02d}"
            )
            self.stdout.write(f"{part.month}: {part.rows:,} events detached, {where}.")
        self.stdout.write(f"Archived {len(archived)} months before {month}.")
