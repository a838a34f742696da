"""`manage.py deduct_credits`: convert usage of credit-billed meters into deductions now."""

from django.core.management.base import BaseCommand
from django.utils import timezone

from credits.deduction import run_deductions
from meters import rollups


class Command(BaseCommand):
    help = "Deduct credits for metered usage so far in every open period, then exit."

    def handle(self, *args, **options):
        rollups.roll_up_all_pending()  # cheaper reads; deduction is exact either way
        done = run_deductions(now=timezone.now())
        self.stdout.write(f"Brought {done} credit-billed meters up to date.")
