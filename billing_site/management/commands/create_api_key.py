"""`manage.py create_api_key NAME`: prints the new key once, alone on the last line."""

from django.core.management.base import BaseCommand

from billing_site.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key; the key is printed once and only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name: str, **options):
        api_key, raw_key = ApiKey.create(name=name)
        self.stderr.write(
            f"Created API key {api_key.name!r} ({api_key.key_prefix}…). Store it now:"
        )
        self.stdout.write(raw_key)
