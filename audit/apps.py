"""Keeps the staff roles in step with the models after every migrate."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from audit import receivers

        # The roles follow the models: after every migrate (and every test flush), each role
        # gets the permissions of the models that exist now.
        post_migrate.connect(
            receivers.sync_roles_after_migrate, sender=self, dispatch_uid="audit.sync_roles"
        )
