"""Signal receivers: the credit ledger's writes, and keeping the staff roles in step with the
models after migrations.

Business rules stay out of signals (STYLE.md); these only observe. The ledger one exists because
credits/ledger.py is the single writer of balance changes and records each with
`LedgerEntry.objects.create`, so post_save sees every one, in the ledger's own transaction.
"""

from __future__ import annotations

from audit import log, roles
from audit.models import Action


def record_balance_change(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """One audit row per ledger entry: the balance and overage before and after."""
    if not created or raw:
        return
    balance = instance.balance
    log.record(
        object_type="credits.creditbalance",
        object_id=f"{balance.credit_entitlement_id}/{balance.customer_id}",
        action=Action.BALANCE_CHANGED,
        before={"balance": instance.balance_before, "overage": instance.overage_before},
        after={"balance": instance.balance_after, "overage": instance.overage_after},
        details={
            "ledger_entry_id": instance.pk,
            "transaction_type": instance.transaction_type,
            "amount": instance.amount,
            "balance_change": instance.balance_change,
            "overage_change": instance.overage_change,
            "description": instance.description,
            "created_by": instance.created_by,
            "grant_id": instance.grant_id,
            "reference": [instance.reference_type, instance.reference_id]
            if instance.reference_type
            else None,
            "idempotency_key": instance.idempotency_key,
        },
    )


def sync_roles_after_migrate(sender, using: str = "default", **kwargs) -> None:
    """Give the roles the permissions of models added since (and rebuild them after a flush)."""
    roles.sync_roles(using=using)
