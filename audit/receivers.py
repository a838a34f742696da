"""Signal receivers: keeping the staff roles in step with the models after migrations.

Business rules stay out of signals (STYLE.md). Balance changes are audited by credits/ledger.py
itself, the single writer of ledger entries, in the entry's own transaction.
"""

from __future__ import annotations

from audit import roles


def sync_roles_after_migrate(sender, using: str = "default", **kwargs) -> None:
    """Give the roles the permissions of models added since (and rebuild them after a flush)."""
    roles.sync_roles(using=using)
