"""Staff adjust a balance in the admin: a ledger entry with the reason and who made it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.admin.utils import quote

from credits.models import CreditBalance, LedgerEntry
from tests.credits.factories import credit_product, make_entitlement, subscribe
from tests.products.factories import make_meter

NOW = datetime(2026, 7, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture
def balance() -> CreditBalance:
    entitlement = make_entitlement(now=NOW)
    meter = make_meter("Calls", "api.call", now=NOW)
    subscribe(credit_product(entitlement, meter, credits_amount=100, now=NOW), now=NOW)
    return CreditBalance.objects.get()


def test_staff_add_and_remove_credits_with_a_reason(admin_client, admin_user, balance):
    url = f"/admin/credits/creditbalance/{balance.pk}/adjust/"
    added = admin_client.post(url, {"entry_type": "credit", "amount": "25.5", "reason": "goodwill"})
    assert added.status_code == 302
    removed = admin_client.post(
        url, {"entry_type": "debit", "amount": "10", "reason": "correction"}
    )
    assert removed.status_code == 302
    balance.refresh_from_db()
    assert balance.balance == 100 + 25.5 - 10
    entries = LedgerEntry.objects.filter(transaction_type="manual_adjustment").order_by("id")
    assert [(e.description, e.created_by) for e in entries] == [
        ("goodwill", admin_user.username),
        ("correction", admin_user.username),
    ]
    page = admin_client.get(f"/admin/credits/creditbalance/{quote(balance.pk)}/change/")
    assert "goodwill" in page.content.decode()


def test_a_debit_beyond_the_balance_is_refused_on_the_form(admin_client, balance):
    url = f"/admin/credits/creditbalance/{balance.pk}/adjust/"
    response = admin_client.post(url, {"entry_type": "debit", "amount": "1000", "reason": "x"})
    assert response.status_code == 200
    assert "would exceed it" in response.content.decode()
    balance.refresh_from_db()
    assert balance.balance == 100
