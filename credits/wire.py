"""Credit entitlements, balances, ledger entries and grants as the API shows them.

The credits API and the credit.* webhook payloads both build from here.
"""

from __future__ import annotations

from django.conf import settings

from billing_site.wire import decimal_text, timestamp_text
from credits.models import CreditBalance, CreditEntitlement, CreditGrant, LedgerEntry


def entitlement_data(entitlement: CreditEntitlement) -> dict:
    return {
        "id": entitlement.id,
        "business_id": settings.BUSINESS_ID,
        "name": entitlement.name,
        "description": entitlement.description,
        "unit": entitlement.unit,
        "precision": entitlement.precision,
        "currency": entitlement.currency,
        "price_per_unit": decimal_text(entitlement.price_per_unit),
        "overage_enabled": entitlement.overage_enabled,
        "overage_limit": (
            None if entitlement.overage_limit is None else int(entitlement.overage_limit)
        ),
        "overage_behavior": entitlement.overage_behavior,
        "expires_after_days": entitlement.expires_after_days,
        "rollover_enabled": entitlement.rollover_enabled,
        "rollover_percentage": entitlement.rollover_percentage,
        "rollover_timeframe_count": entitlement.rollover_timeframe_count,
        "rollover_timeframe_interval": entitlement.rollover_timeframe_interval,
        "max_rollover_count": entitlement.max_rollover_count,
        "created_at": timestamp_text(entitlement.created_at),
        "updated_at": timestamp_text(entitlement.updated_at),
    }


def balance_data(balance: CreditBalance) -> dict:
    return {
        "id": str(balance.pk),
        "credit_entitlement_id": balance.credit_entitlement_id,
        "customer_id": balance.customer_id,
        "balance": decimal_text(balance.balance),
        "overage": decimal_text(balance.overage),
        "created_at": timestamp_text(balance.created_at),
        "updated_at": timestamp_text(balance.updated_at),
        "last_transaction_at": timestamp_text(balance.last_transaction_at),
    }


def entry_data(entry: LedgerEntry) -> dict:
    return {
        "id": str(entry.pk),
        "business_id": settings.BUSINESS_ID,
        "brand_id": settings.BUSINESS_ID,
        "credit_entitlement_id": entry.balance.credit_entitlement_id,
        "customer_id": entry.balance.customer_id,
        "transaction_type": entry.transaction_type,
        "entry_type": "credit" if entry.is_credit else "debit",
        "is_credit": entry.is_credit,
        "amount": decimal_text(entry.amount),
        "balance_before": decimal_text(entry.balance_before),
        "balance_after": decimal_text(entry.balance_after),
        "overage_before": decimal_text(entry.overage_before),
        "overage_after": decimal_text(entry.overage_after),
        "grant_id": None if entry.grant_id is None else str(entry.grant_id),
        "reference_type": entry.reference_type,
        "reference_id": entry.reference_id,
        "description": entry.description,
        "reason": entry.description,
        "metadata": entry.metadata,
        "created_at": timestamp_text(entry.created_at),
    }


def grant_data(grant: CreditGrant) -> dict:
    return {
        "id": str(grant.pk),
        "credit_entitlement_id": grant.balance.credit_entitlement_id,
        "customer_id": grant.balance.customer_id,
        "initial_amount": decimal_text(grant.initial_amount),
        "remaining_amount": decimal_text(grant.remaining_amount),
        "is_expired": grant.is_expired,
        "is_rolled_over": grant.is_rolled_over,
        "rollover_count": grant.rollover_count,
        "source_type": grant.source_type,
        "source_id": grant.source_id,
        "parent_grant_id": None if grant.parent_grant_id is None else str(grant.parent_grant_id),
        "expires_at": timestamp_text(grant.expires_at),
        "metadata": grant.metadata,
        "created_at": timestamp_text(grant.created_at),
        "updated_at": timestamp_text(grant.updated_at),
    }
