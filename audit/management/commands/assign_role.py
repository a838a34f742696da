"""`manage.py assign_role USERNAME viewer|billing_admin`: give a staff member a role.

`--remove` takes the staff roles away (the user stays staff but sees nothing); superusers
need no role. Thin: the rules are in audit/roles.py.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from audit import roles


class Command(BaseCommand):
    help = "Give a user a staff role (viewer or billing_admin); the user becomes staff."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", nargs="?", help="viewer or billing_admin")
        parser.add_argument("--remove", action="store_true", help="Remove every staff role.")

    def handle(self, *args, username: str, role: str | None, remove: bool, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}; add the user in the admin first.")
        if remove:
            user.groups.remove(*Group.objects.filter(name__in=roles.ROLES.values()))
            self.stdout.write(f"{username} has no staff role now.")
            return
        if role is None:
            raise CommandError(f"Name a role: {', '.join(roles.ROLES)}.")
        try:
            roles.assign_role(user, role)
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{username} is now a {roles.role_name(role)}.")
