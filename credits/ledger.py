"""Every change to a credit balance: grant, deduct (oldest grant first), expire, roll over,
settle overage. Each writes ledger entries with the balance and overage before and after.

Callers hold the balance row lock (`locked_balance`) for the whole change, inside one
transaction, so concurrent deductions, grants and manual entries serialize per customer and
entitlement, and the balance always equals the sum of its ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from django.db import IntegrityError, transaction

from audit import log as audit_log
from audit.models import Action
from billing_site.errors import Conflict, DomainError, InvalidInput
from billing_site.periods import BillingInterval, add_interval
from credits import webhook_events
from credits.models import (
    CreditBalance,
    CreditEntitlement,
    CreditGrant,
    GrantSource,
    LedgerEntry,
    OverageBehavior,
    ProductCreditEntitlement,
    TransactionType,
)

ZERO = Decimal(0)


class InsufficientBalance(DomainError):
    status = 400
    code = "INSUFFICIENT_BALANCE"


class IdempotencyKeyReused(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"


@dataclass(frozen=True)
class CreditRules:
    """An entitlement's settings with a product's overrides applied."""

    precision: int
    overage_enabled: bool
    overage_limit: Decimal | None
    overage_behavior: str
    price_per_unit: Decimal | None
    expires_after_days: int | None
    rollover_enabled: bool
    rollover_percentage: int
    rollover_timeframe: BillingInterval | None
    max_rollover_count: int | None

    @classmethod
    def of(
        cls, entitlement: CreditEntitlement, link: ProductCreditEntitlement | None = None
    ) -> CreditRules:
        def pick(field: str):
            override = getattr(link, field, None) if link is not None else None
            return override if override is not None else getattr(entitlement, field)

        timeframe_count = pick("rollover_timeframe_count")
        timeframe_unit = pick("rollover_timeframe_interval")
        return cls(
            precision=entitlement.precision,
            overage_enabled=bool(pick("overage_enabled")),
            overage_limit=pick("overage_limit"),
            overage_behavior=pick("overage_behavior") or OverageBehavior.FORGIVE_AT_RESET,
            price_per_unit=pick("price_per_unit"),
            expires_after_days=pick("expires_after_days"),
            rollover_enabled=bool(pick("rollover_enabled")),
            rollover_percentage=pick("rollover_percentage") or 0,
            rollover_timeframe=(
                BillingInterval(timeframe_unit, timeframe_count)
                if timeframe_count and timeframe_unit
                else None
            ),
            max_rollover_count=pick("max_rollover_count"),
        )

    def quantize(self, amount: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
        return amount.quantize(Decimal(1).scaleb(-self.precision), rounding=rounding)


def locked_balance(entitlement_id: str, customer_id: str, *, now: datetime) -> CreditBalance:
    """The customer's balance row for the entitlement, created if needed, locked FOR UPDATE."""
    try:
        with transaction.atomic():
            CreditBalance.objects.get_or_create(
                credit_entitlement_id=entitlement_id,
                customer_id=customer_id,
                defaults={"created_at": now, "updated_at": now},
            )
    except IntegrityError:
        pass  # created by a concurrent transaction: fine, lock it below
    return CreditBalance.objects.select_for_update().get(
        credit_entitlement_id=entitlement_id, customer_id=customer_id
    )


def _record(
    balance: CreditBalance,
    *,
    transaction_type: str,
    amount: Decimal,
    balance_change: Decimal,
    overage_change: Decimal = ZERO,
    now: datetime,
    grant: CreditGrant | None = None,
    reference: tuple[str, str] | None = None,
    description: str | None = None,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
    created_by: str | None = None,
) -> LedgerEntry:
    before, overage_before = balance.balance, balance.overage
    balance.balance = before + balance_change
    balance.overage = overage_before + overage_change
    # Entries can be stamped earlier than the last one (a new period's grant carries the
    # period's start; the close that writes it runs later): the latest moment stays.
    balance.last_transaction_at = max(now, balance.last_transaction_at or now)
    balance.updated_at = now
    balance.save(update_fields=["balance", "overage", "last_transaction_at", "updated_at"])
    try:
        with transaction.atomic():
            entry = LedgerEntry.objects.create(
                balance=balance,
                transaction_type=transaction_type,
                is_credit=balance_change > 0 or (balance_change == 0 and overage_change < 0),
                amount=amount,
                balance_change=balance_change,
                overage_change=overage_change,
                balance_before=before,
                balance_after=balance.balance,
                overage_before=overage_before,
                overage_after=balance.overage,
                grant=grant,
                reference_type=reference[0] if reference else None,
                reference_id=reference[1] if reference else None,
                description=description,
                idempotency_key=idempotency_key,
                metadata=metadata or {},
                created_by=created_by,
                created_at=now,
            )
    except IntegrityError:
        raise IdempotencyKeyReused(
            f"The idempotency key {idempotency_key!r} was already used for this balance."
        ) from None
    _audit_entry(entry)
    webhook_events.ledger_entry_recorded(entry)  # in this transaction: sent only if it commits
    return entry


def _audit_entry(entry: LedgerEntry) -> None:
    """One audit row per ledger entry, in its transaction: the balance and overage before and
    after. Written here because this module is the only writer of ledger entries."""
    balance = entry.balance
    audit_log.record(
        object_type="credits.creditbalance",
        object_id=f"{balance.credit_entitlement_id}/{balance.customer_id}",
        action=Action.BALANCE_CHANGED,
        before={"balance": entry.balance_before, "overage": entry.overage_before},
        after={"balance": entry.balance_after, "overage": entry.overage_after},
        details={
            "ledger_entry_id": entry.pk,
            "transaction_type": entry.transaction_type,
            "amount": entry.amount,
            "balance_change": entry.balance_change,
            "overage_change": entry.overage_change,
            "description": entry.description,
            "created_by": entry.created_by,
            "grant_id": entry.grant_id,
            "reference": [entry.reference_type, entry.reference_id]
            if entry.reference_type
            else None,
            "idempotency_key": entry.idempotency_key,
        },
    )


def _check_key(balance: CreditBalance, idempotency_key: str | None) -> None:
    if idempotency_key and balance.entries.filter(idempotency_key=idempotency_key).exists():
        raise IdempotencyKeyReused(
            f"The idempotency key {idempotency_key!r} was already used for this balance."
        )


def grant(
    balance: CreditBalance,
    amount: Decimal,
    *,
    rules: CreditRules,
    now: datetime,
    source_type: str,
    source_id: str | None = None,
    expires_at: datetime | None = None,
    transaction_type: str = TransactionType.CREDIT_ADDED,
    description: str | None = None,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
    created_by: str | None = None,
    reference: tuple[str, str] | None = None,
) -> LedgerEntry:
    """Add a grant. Under carry_deficit_auto_repay new credits first pay back the overage."""
    _check_key(balance, idempotency_key)
    if amount <= 0:
        raise InvalidInput("amount must be greater than 0.", errors=[_field("amount")])
    new_grant = CreditGrant.objects.create(
        balance=balance,
        initial_amount=amount,
        remaining_amount=amount,
        source_type=source_type,
        source_id=source_id,
        expires_at=expires_at,
        metadata=metadata,
        created_at=now,
        updated_at=now,
    )
    entry = _record(
        balance,
        transaction_type=transaction_type,
        amount=amount,
        balance_change=amount,
        now=now,
        grant=new_grant,
        description=description,
        idempotency_key=idempotency_key,
        metadata=metadata,
        created_by=created_by,
        reference=reference or ((source_type, source_id) if source_id else None),
    )
    if rules.overage_behavior == OverageBehavior.CARRY_DEFICIT_AUTO_REPAY and balance.overage > 0:
        repay = min(balance.overage, amount)
        _take_from_grants(balance, repay, now=now)
        _record(
            balance,
            transaction_type=TransactionType.CREDIT_DEDUCTED,
            amount=repay,
            balance_change=-repay,
            overage_change=-repay,
            now=now,
            description="New credits repay the carried deficit.",
            reference=("grant", str(new_grant.pk)),
        )
    return entry


def _field(name: str, message: str = "Invalid value.") -> dict:
    return {"field": name, "message": message}


def _take_from_grants(
    balance: CreditBalance, amount: Decimal, *, now: datetime
) -> list[tuple[CreditGrant, Decimal]]:
    """Take `amount` from live grants, oldest first; returns what came from each grant."""
    taken = []
    remaining = amount
    grants = balance.grants.filter(is_expired=False, remaining_amount__gt=0).order_by(
        "created_at", "id"
    )
    for live in grants:
        if remaining <= 0:
            break
        part = min(live.remaining_amount, remaining)
        live.remaining_amount -= part
        live.updated_at = now
        live.save(update_fields=["remaining_amount", "updated_at"])
        taken.append((live, part))
        remaining -= part
    if remaining > 0:
        raise AssertionError("grants do not cover the balance")  # the invariant is broken
    return taken


@dataclass(frozen=True)
class Deduction:
    from_balance: Decimal
    to_overage: Decimal
    blocked: Decimal


def deduct(
    balance: CreditBalance,
    amount: Decimal,
    *,
    rules: CreditRules,
    now: datetime,
    transaction_type: str = TransactionType.CREDIT_DEDUCTED,
    allow_overage: bool = True,
    description: str | None = None,
    reference: tuple[str, str] | None = None,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
    created_by: str | None = None,
) -> Deduction:
    """Deduct from the balance (oldest grant first); what it cannot cover becomes overage up to
    the limit when overage is enabled, and is `blocked` beyond that."""
    _check_key(balance, idempotency_key)
    balance_before = balance.balance
    from_balance = min(max(balance.balance, ZERO), amount)
    rest = amount - from_balance
    to_overage = ZERO
    if rest > 0 and allow_overage and rules.overage_enabled:
        headroom = rest if rules.overage_limit is None else rules.overage_limit - balance.overage
        to_overage = max(min(rest, headroom), ZERO)
    blocked = rest - to_overage
    common: dict[str, Any] = {
        "now": now,
        "description": description,
        "reference": reference,
        "metadata": metadata,
        "created_by": created_by,
    }
    for grant_used, part in _take_from_grants(balance, from_balance, now=now):
        _record(
            balance,
            transaction_type=transaction_type,
            amount=part,
            balance_change=-part,
            grant=grant_used,
            idempotency_key=idempotency_key,
            **common,
        )
        idempotency_key = None  # the key marks the first entry of the operation
    if to_overage > 0:
        _record(
            balance,
            transaction_type=transaction_type,
            amount=to_overage,
            balance_change=ZERO,
            overage_change=to_overage,
            idempotency_key=idempotency_key,
            **common,
        )
    webhook_events.balance_deducted(balance, balance_before=balance_before)
    return Deduction(from_balance, to_overage, blocked)


def manual_entry(
    balance: CreditBalance,
    *,
    entry_type: str,
    amount: Decimal,
    rules: CreditRules,
    now: datetime,
    reason: str | None = None,
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
    created_by: str | None = None,
) -> list[LedgerEntry]:
    """A credit (a new grant) or a debit (oldest grants first, never beyond the balance)."""
    if rules.quantize(amount) != amount:
        raise InvalidInput(
            f"amount has more than {rules.precision} decimal places.",
            errors=[_field("amount", f"At most {rules.precision} decimal places.")],
        )
    # A retry of an entry that was made is answered "key reused" before anything else, even
    # when the balance could not take the debit again.
    _check_key(balance, idempotency_key)
    first_new = LedgerEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
    if entry_type == "credit":
        grant(
            balance,
            amount,
            rules=rules,
            now=now,
            source_type=GrantSource.API,
            expires_at=expires_at,
            transaction_type=TransactionType.MANUAL_ADJUSTMENT,
            description=reason,
            idempotency_key=idempotency_key,
            metadata=metadata,
            created_by=created_by,
        )
    else:
        if amount <= 0:
            raise InvalidInput("amount must be greater than 0.", errors=[_field("amount")])
        if amount > balance.balance:
            raise InsufficientBalance(
                f"The balance is {balance.balance}; a debit of {amount} would exceed it."
            )
        deduct(
            balance,
            amount,
            rules=rules,
            now=now,
            transaction_type=TransactionType.MANUAL_ADJUSTMENT,
            allow_overage=False,
            description=reason,
            idempotency_key=idempotency_key,
            metadata=metadata,
            created_by=created_by,
        )
    return list(balance.entries.filter(id__gt=first_new).order_by("id"))


def expire_grants(balance: CreditBalance, *, rules: CreditRules, as_of: datetime) -> None:
    """Expire grants whose time has come; with rollover on, a percentage moves to a new grant
    (until `max_rollover_count` consecutive rollovers, after which it is forfeited)."""
    due = balance.grants.filter(is_expired=False, expires_at__isnull=False, expires_at__lte=as_of)
    for old in due.order_by("expires_at", "id"):
        assert old.expires_at is not None  # the query keeps dated grants only
        remaining = old.remaining_amount
        old.is_expired = True
        old.remaining_amount = ZERO
        old.updated_at = as_of
        old.save(update_fields=["is_expired", "remaining_amount", "updated_at"])
        if remaining <= 0:
            continue
        can_roll = rules.rollover_enabled and (
            rules.max_rollover_count is None or old.rollover_count < rules.max_rollover_count
        )
        if rules.rollover_enabled and not can_roll:
            _record(
                balance,
                transaction_type=TransactionType.ROLLOVER_FORFEITED,
                amount=remaining,
                balance_change=-remaining,
                now=as_of,
                grant=old,
                description=f"Forfeited after {old.rollover_count} rollovers.",
            )
            continue
        rolled = (
            rules.quantize(remaining * rules.rollover_percentage / 100, ROUND_DOWN)
            if can_roll
            else ZERO
        )
        expired = remaining - rolled
        if expired > 0:
            _record(
                balance,
                transaction_type=TransactionType.CREDIT_EXPIRED,
                amount=expired,
                balance_change=-expired,
                now=as_of,
                grant=old,
            )
        if rolled > 0:
            successor = CreditGrant.objects.create(
                balance=balance,
                initial_amount=rolled,
                remaining_amount=rolled,
                source_type=GrantSource.ROLLOVER,
                source_id=old.source_id,
                parent_grant=old,
                rollover_count=old.rollover_count + 1,
                expires_at=_rollover_expiry(old.expires_at, rules),
                created_at=as_of,
                updated_at=as_of,
            )
            old.is_rolled_over = True
            old.save(update_fields=["is_rolled_over"])
            # The credits move from one grant to the other: the balance does not change.
            _record(
                balance,
                transaction_type=TransactionType.CREDIT_ROLLED_OVER,
                amount=rolled,
                balance_change=ZERO,
                now=as_of,
                grant=successor,
                description=f"{rules.rollover_percentage}% of {remaining} rolled over.",
            )


def _rollover_expiry(expired_at: datetime, rules: CreditRules) -> datetime | None:
    if rules.rollover_timeframe is not None:
        return add_interval(expired_at, rules.rollover_timeframe)
    if rules.expires_after_days is not None:
        return expired_at + timedelta(days=rules.expires_after_days)
    return None


def settle_overage(
    balance: CreditBalance, *, rules: CreditRules, now: datetime, reference: tuple[str, str]
) -> Decimal:
    """At a cycle's end: forgive or invoice the overage, or carry it. Returns the credits to
    invoice (only for invoice_at_billing)."""
    overage = balance.overage
    if overage <= 0 or rules.overage_behavior in (
        OverageBehavior.CARRY_DEFICIT,
        OverageBehavior.CARRY_DEFICIT_AUTO_REPAY,
    ):
        return ZERO
    charged = rules.overage_behavior == OverageBehavior.INVOICE_AT_BILLING
    _record(
        balance,
        transaction_type=(
            TransactionType.OVERAGE_CHARGED if charged else TransactionType.OVERAGE_RESET
        ),
        amount=overage,
        balance_change=ZERO,
        overage_change=-overage,
        now=now,
        reference=reference,
        description="Overage invoiced." if charged else "Overage forgiven at reset.",
    )
    return overage if charged else ZERO
