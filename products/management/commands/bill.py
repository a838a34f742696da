"""`manage.py bill [--as-of ISO-TIME]`: run the billing cycle now, or as if at that time.

`--as-of` works like a test clock: it closes every period that has ended by then, so operators
and tests can close periods deterministically.
"""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing_site.api.fields import parse_datetime_value
from products.billing import run_billing_cycle


class Command(BaseCommand):
    help = "Invoice every subscription period that has ended (by now, or by --as-of)."

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
        invoices = run_billing_cycle(now=now)
        self.stdout.write(f"Issued {len(invoices)} invoices as of {now.isoformat()}.")
