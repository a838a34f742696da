"""`manage.py create_api_key NAME [--scope SCOPE] [--rate-limit-per-second N] [...]`.

Prints the new key once, alone on the last line.
"""

from django.core.management.base import BaseCommand, CommandError

from billing_site.models import ApiKey


def _limit(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Create an API key; the key is printed once and only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--scope",
            choices=ApiKey.Scope.values,
            default=ApiKey.Scope.FULL,
            help="full (default), read_only (GET/HEAD/OPTIONS only) or ingest_only "
            "(POST /api/events/ingest only)",
        )
        parser.add_argument(
            "--rate-limit-per-second",
            type=_limit,
            default=None,
            metavar="N",
            help="requests per second for this key (default: API_RATE_LIMIT_PER_SECOND; 0: none)",
        )
        parser.add_argument(
            "--rate-limit-per-minute",
            type=_limit,
            default=None,
            metavar="N",
            help="requests per minute for this key (default: API_RATE_LIMIT_PER_MINUTE; 0: none)",
        )

    def handle(self, *args, name: str, scope: str, **options):
        if scope not in ApiKey.Scope.values:  # call_command does not apply argparse choices
            raise CommandError(f"--scope must be one of {', '.join(ApiKey.Scope.values)}")
        api_key, raw_key = ApiKey.create(
            name=name,
            scope=scope,
            rate_limit_per_second=options["rate_limit_per_second"],
            rate_limit_per_minute=options["rate_limit_per_minute"],
        )
        self.stderr.write(
            f"Created API key {api_key.name!r} ({api_key.key_prefix}…, scope {api_key.scope}). "
            "Store it now:"
        )
        self.stdout.write(raw_key)
