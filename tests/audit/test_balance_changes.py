"""Every change to a credit balance is in the audit log, from the ledger entry that made it: the
grant of a new period, a manual adjustment (the API key, or the staff user in the admin), an
automatic deduction (system). A refused or rolled-back change logs nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.urls import reverse

from audit.context import Actor, acting_as
from audit.models import AuditEntry
from credits import ledger
from credits.deduction import run_deductions
from credits.ledger import CreditRules
from tests.audit.helpers import SYSTEM, actor, api_key_actor, logged, user_actor
from tests.credits.factories import balance_of, credit_product, make_entitlement, subscribe
from tests.products.factories import make_meter, send_usage

START = datetime(2026, 6, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    entitlement = make_entitlement(now=START)
    calls = make_meter("Calls", "api.call", now=START)
    product = credit_product(entitlement, calls, credits_amount="100.25", now=START)
    subscription = subscribe(product, now=START)
    balance = balance_of(entitlement, subscription)
    return entitlement, subscription, balance


def balance_rows(balance) -> list[AuditEntry]:
    return logged("credits.creditbalance", f"{balance.credit_entitlement_id}/{balance.customer_id}")


def test_the_period_grant_is_logged(setup):
    _, _, balance = setup
    [granted] = balance_rows(balance)
    assert (granted.action, actor(granted)) == ("balance_changed", SYSTEM)
    assert granted.before == {"balance": 0, "overage": 0}
    assert granted.after == {"balance": Decimal("100.25"), "overage": 0}
    assert granted.details["transaction_type"] == "credit_added"
    assert granted.details["amount"] == Decimal("100.25")


def test_a_manual_adjustment_through_the_api_is_logged_with_its_key(api, setup):
    entitlement, subscription, balance = setup
    url = (
        f"/api/credit-entitlements/{entitlement.id}/balances/{subscription.customer_id}"
        "/ledger-entries"
    )
    body = {"entry_type": "debit", "amount": "0.25", "reason": "correction"}
    assert api.post(url, body, format="json").status_code == 201

    adjusted = balance_rows(balance)[-1]
    assert actor(adjusted) == api_key_actor()
    assert adjusted.before["balance"] == Decimal("100.25")
    assert adjusted.after["balance"] == 100
    assert adjusted.details["transaction_type"] == "manual_adjustment"
    assert adjusted.details["description"] == "correction"

    too_much = {"entry_type": "debit", "amount": "1000", "reason": "x"}
    assert api.post(url, too_much, format="json").status_code == 400
    reused = {**body, "idempotency_key": "k1"}
    assert api.post(url, reused, format="json").status_code == 201
    assert api.post(url, reused, format="json").status_code == 409
    assert len(balance_rows(balance)) == 3  # grant, adjustment, the keyed adjustment


def test_a_manual_adjustment_in_the_admin_is_logged_with_the_staff_user(
    setup, staff_client, staff_user
):
    _, _, balance = setup
    url = reverse("admin:credits_creditbalance_adjust", args=[balance.pk])
    response = staff_client.post(url, {"entry_type": "credit", "amount": "5", "reason": "gift"})
    assert response.status_code == 302
    adjusted = balance_rows(balance)[-1]
    assert actor(adjusted) == user_actor(staff_user)
    assert (adjusted.before["balance"], adjusted.after["balance"]) == (
        Decimal("100.25"),
        Decimal("105.25"),
    )
    assert adjusted.details["created_by"] == staff_user.username

    refused = staff_client.post(url, {"entry_type": "debit", "amount": "999", "reason": "x"})
    assert refused.status_code == 200  # the form again, with the error
    assert len(balance_rows(balance)) == 2


def test_an_automatic_deduction_is_logged_as_system(setup):
    _, subscription, balance = setup
    send_usage(subscription, "api.call", [{}] * 30, start=START + timedelta(hours=1), prefix="u")
    run_deductions(now=START + timedelta(days=1))

    deducted = balance_rows(balance)[-1]
    assert actor(deducted) == SYSTEM
    assert deducted.details["transaction_type"] == "credit_deducted"
    assert (deducted.before["balance"], deducted.after["balance"]) == (
        Decimal("100.25"),
        Decimal("70.25"),
    )


def test_a_rolled_back_change_leaves_no_audit_row(setup):
    entitlement, _, balance = setup

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        with acting_as(Actor("user", "1", "someone")):
            locked = ledger.locked_balance(entitlement.id, balance.customer_id, now=START)
            ledger.manual_entry(
                locked,
                entry_type="credit",
                amount=Decimal("7"),
                rules=CreditRules.of(entitlement),
                now=START,
                reason="rolled back",
            )
            assert len(balance_rows(balance)) == 2  # written inside the transaction...
        raise Abort
    assert len(balance_rows(balance)) == 1  # ...and gone with it
    assert not AuditEntry.objects.filter(actor_name="someone").exists()
