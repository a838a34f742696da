"""`manage.py collect_payments [--as-of ISO-TIME]`: make every payment attempt due by now (or by
--as-of, like `bill --as-of`), then look up refunds whose provider answer was lost."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing_site.api.fields import parse_datetime_value
from products import payments


class Command(BaseCommand):
    help = "Charge every payment that is due (by now, or by --as-of): first attempts and retries."

    def add_arguments(self, parser):
        parser.add_argument("--as-of", dest="as_of", help="ISO 8601 time, e.g. 2026-02-01T00:00Z")

    def handle(self, *args, as_of: str | None = None, **options):
        if as_of:
            try:
                now = parse_datetime_value(as_of)
            except ValueError:
                raise CommandError(f"--as-of {as_of!r} is not an ISO 8601 time") from None
        else:
            now = timezone.now()
        if not payments.provider_enabled():
            self.stdout.write("PAYMENT_PROVIDER=none: nothing to collect.")
            return
        attempted = payments.collect_due(now=now, limit=10_000)
        payments.settle_pending_refunds(now=now)
        self.stdout.write(f"Attempted {attempted} payments as of {now.isoformat()}.")
