"""Wires the audit log to the credit ledger and the staff roles to migrations."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate, post_save


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from audit import receivers
        from credits.models import LedgerEntry

        # credits/ledger.py writes every balance change with LedgerEntry.objects.create, and is
        # the one place that does: a receiver here audits all of them without touching it.
        post_save.connect(
            receivers.record_balance_change,
            sender=LedgerEntry,
            dispatch_uid="audit.record_balance_change",
        )
        # The roles follow the models: after every migrate (and every test flush), each role
        # gets the permissions of the models that exist now.
        post_migrate.connect(
            receivers.sync_roles_after_migrate, sender=self, dispatch_uid="audit.sync_roles"
        )
