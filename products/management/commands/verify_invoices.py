"""`manage.py verify_invoices [--since ISO-TIME]`: recompute every final usage line from the raw
events (count, digest of ids, consumed units) and print each mismatch; exit 1 if any."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing_site.api.fields import parse_datetime_value
from products.proofs import verify


class Command(BaseCommand):
    help = "Check every final invoice usage line against the raw events it was computed from."

    def add_arguments(self, parser):
        parser.add_argument("--since", help="Only invoices issued since this ISO 8601 time.")

    def handle(self, *args, since: str | None = None, **options):
        start = None
        if since:
            try:
                start = parse_datetime_value(since)
            except ValueError:
                raise CommandError(f"--since {since!r} is not an ISO 8601 time") from None
        began = timezone.now()
        result = verify(start)
        for mismatch in result.mismatches or []:
            self.stdout.write(f"MISMATCH {mismatch}")
        if result.mismatch_count > len(result.mismatches or []):
            self.stdout.write(
                f"... and {result.mismatch_count - len(result.mismatches or [])} more"
            )
        unproven = (
            f" ({result.unproven_lines} finalized before proofs: units checked only)"
            if result.unproven_lines
            else ""
        )
        if result.archived_lines:
            self.stdout.write(
                f"{result.archived_lines:,} lines of periods in archived months not verified: "
                "their raw events were archived (manage.py archive_events)."
            )
        self.stdout.write(
            f"{result.lines_verified:,} invoice lines verified against "
            f"{result.events_verified:,} events{unproven}, {result.mismatch_count} mismatches "
            f"in {(timezone.now() - began).total_seconds():.1f} s."
        )
        if result.mismatch_count:
            raise SystemExit(1)
