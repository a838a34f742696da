"""The official SDK end to end with credits: an entitlement, a product granting it and billing two
meters in it, usage, `deduct_credits`, manual ledger entries, `bill --as-of` with expiry and
rollover, then balances, grants and the ledger read back through the SDK."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import dodopayments
import pytest
from django.core.management import call_command

from products.models import Invoice


def total(entries) -> Decimal:
    return sum((Decimal(e.amount) for e in entries), Decimal(0))


@pytest.mark.django_db(transaction=True)
def test_sdk_credits_from_entitlement_to_renewal(sdk):
    entitlement = sdk.credit_entitlements.create(
        name="API credits",
        unit="credits",
        precision=2,
        rollover_enabled=True,
        rollover_percentage=50,
        expires_after_days=7,
        overage_enabled=False,
        description="Credits for calls and tokens",
    )
    assert entitlement.id.startswith("cde_")
    assert (entitlement.precision, entitlement.rollover_percentage) == (2, 50)
    assert entitlement.overage_behavior == "forgive_at_reset"
    assert [e.id for e in sdk.credit_entitlements.list().items] == [entitlement.id]

    calls = sdk.meters.create(
        name="API calls",
        event_name="api.call",
        measurement_unit="calls",
        aggregation={"type": "count"},
    )
    tokens = sdk.meters.create(
        name="Tokens",
        event_name="tokens.used",
        measurement_unit="tokens",
        aggregation={"type": "sum", "key": "tokens"},
    )
    product = sdk.products.create(
        name="Credits plan",
        tax_category="saas",
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 500,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Week",
            "subscription_period_count": 1,
            "subscription_period_interval": "Year",
            "meters": [
                {
                    "meter_id": calls.id,
                    "credit_entitlement_id": entitlement.id,
                    "meter_units_per_credit": "4",
                    "free_threshold": 100,
                },
                {
                    "meter_id": tokens.id,
                    "credit_entitlement_id": entitlement.id,
                    "meter_units_per_credit": "1000",
                    "free_threshold": 0,
                },
            ],
        },
        credit_entitlements=[{"credit_entitlement_id": entitlement.id, "credits_amount": "200"}],
    )
    customer = sdk.customers.create(email="kai@example.com", name="Kai")
    created = sdk.subscriptions.create(
        billing={"country": "US"},
        customer={"customer_id": customer.customer_id},
        product_id=product.product_id,
        quantity=1,
    )
    subscription = sdk.subscriptions.retrieve(created.subscription_id)
    balances = sdk.credit_entitlements.balances
    ids = {"credit_entitlement_id": entitlement.id}

    # Period 0 starts with its grant of 200.
    start = balances.retrieve(customer.customer_id, **ids)
    assert (Decimal(start.balance), Decimal(start.overage)) == (200, 0)
    [first_grant] = balances.list_grants(customer.customer_id, **ids).items
    assert (first_grant.source_type, Decimal(first_grant.remaining_amount)) == ("subscription", 200)
    assert first_grant.expires_at == subscription.next_billing_date  # 7 days = one period

    events = [
        {"event_id": f"c{i}", "customer_id": customer.customer_id, "event_name": "api.call"}
        for i in range(250)
    ] + [
        {
            "event_id": f"t{i}",
            "customer_id": customer.customer_id,
            "event_name": "tokens.used",
            "metadata": {"tokens": 1234},
        }
        for i in range(10)
    ]
    assert sdk.usage_events.ingest(events=events).ingested_count == 260
    call_command("deduct_credits", stdout=io.StringIO())
    call_command("deduct_credits", stdout=io.StringIO())  # again: nothing more
    # (250 - 100 free) / 4 = 37.5 credits; 12,340 tokens / 1,000 = 12.34 credits
    after_usage = balances.retrieve(customer.customer_id, **ids)
    assert Decimal(after_usage.balance) == 200 - Decimal("37.5") - Decimal("12.34")
    deducted = balances.list_ledger(
        customer.customer_id, transaction_type="credit_deducted", **ids
    ).items
    assert total(deducted) == Decimal("49.84")

    # Staff add 25 (a grant of its own, never expiring) and take 10.16 (oldest grant first).
    added = balances.create_ledger_entry(
        customer.customer_id,
        amount="25",
        entry_type="credit",
        idempotency_key="bonus-1",
        reason="Launch bonus",
        **ids,
    )
    assert (added.is_credit, added.entry_type, added.reason) == (True, "credit", "Launch bonus")
    assert (Decimal(added.balance_before), Decimal(added.balance_after)) == (
        Decimal("150.16"),
        Decimal("175.16"),
    )
    with pytest.raises(dodopayments.ConflictError):
        balances.create_ledger_entry(
            customer.customer_id,
            amount="25",
            entry_type="credit",
            idempotency_key="bonus-1",
            **ids,
        )
    taken = balances.create_ledger_entry(
        customer.customer_id, amount="10.16", entry_type="debit", **ids
    )
    assert taken.grant_id == first_grant.id
    assert Decimal(taken.balance_after) == 165
    with pytest.raises(dodopayments.BadRequestError):
        balances.create_ledger_entry(
            customer.customer_id, amount="165.01", entry_type="debit", **ids
        )
    with pytest.raises(dodopayments.UnprocessableEntityError):
        balances.create_ledger_entry(
            customer.customer_id, amount="1.001", entry_type="credit", **ids
        )
    grants = {g.id: g for g in balances.list_grants(customer.customer_id, **ids).items}
    assert Decimal(grants[first_grant.id].remaining_amount) == 140  # 200 - 49.84 - 10.16
    assert Decimal(grants[added.grant_id].remaining_amount) == 25

    # More calls before the period ends: 300 more, so (550 - 100) / 4 = 112.5 in all.
    more = [
        {"event_id": f"m{i}", "customer_id": customer.customer_id, "event_name": "api.call"}
        for i in range(300)
    ]
    assert sdk.usage_events.ingest(events=more).ingested_count == 300
    as_of = subscription.next_billing_date + timedelta(minutes=1)
    call_command("bill", as_of=as_of.isoformat(), stdout=io.StringIO())

    # The close deducted the other 75 (first grant 140 -> 65); at expiry 50% of the 65 rolled
    # over (32.50) and 32.50 expired; the new period granted 200. 32.50 + 25 + 200 = 257.50.
    renewed = balances.retrieve(customer.customer_id, **ids)
    assert (Decimal(renewed.balance), Decimal(renewed.overage)) == (Decimal("257.5"), 0)
    [listed] = balances.list(entitlement.id, customer_id=customer.customer_id).items
    assert Decimal(listed.balance) == Decimal("257.5")

    all_deducted = balances.list_ledger(
        customer.customer_id, transaction_type="credit_deducted", page_size=100, **ids
    ).items
    assert total(all_deducted) == Decimal("112.5") + Decimal("12.34")
    rolled = balances.list_ledger(
        customer.customer_id, transaction_type="credit_rolled_over", **ids
    ).items
    expired = balances.list_ledger(
        customer.customer_id, transaction_type="credit_expired", **ids
    ).items
    assert (total(rolled), total(expired)) == (Decimal("32.5"), Decimal("32.5"))
    ledger = balances.list_ledger(customer.customer_id, page_size=100, **ids).items
    assert Decimal(ledger[0].balance_after) == Decimal("257.5")  # newest first
    assert sum(
        (Decimal(e.balance_after) - Decimal(e.balance_before) for e in ledger), Decimal(0)
    ) == Decimal("257.5")

    active = balances.list_grants(customer.customer_id, status="active", **ids).items
    assert sorted((g.source_type, Decimal(g.remaining_amount)) for g in active) == [
        ("api", 25),
        ("rollover", Decimal("32.5")),
        ("subscription", 200),
    ]
    [rollover] = [g for g in active if g.source_type == "rollover"]
    assert (rollover.parent_grant_id, rollover.rollover_count) == (first_grant.id, 1)
    [gone] = balances.list_grants(customer.customer_id, status="expired", **ids).items
    assert (gone.id, gone.is_expired, gone.is_rolled_over) == (first_grant.id, True, True)
    assert balances.list_grants(customer.customer_id, status="depleted", **ids).items == []

    usage = sdk.subscriptions.retrieve_credit_usage(created.subscription_id)
    [item] = usage.items
    assert (item.credit_entitlement_id, Decimal(item.balance), item.overage_enabled) == (
        entitlement.id,
        Decimal("257.5"),
        False,
    )
    assert (item.remaining_headroom, item.limit_reached) == (None, False)
    [mine] = sdk.customers.list_credit_entitlements(customer.customer_id).items
    assert (mine.name, Decimal(mine.balance)) == ("API credits", Decimal("257.5"))

    [invoice] = Invoice.objects.filter(subscription_id=created.subscription_id)
    assert invoice.total_minor == 500  # the fixed fee; usage was paid in credits
    applied = dict(invoice.lines.filter(kind="usage").values_list("meter_id", "credits_applied"))
    assert applied == {calls.id: Decimal("112.5"), tokens.id: Decimal("12.34")}


@pytest.mark.django_db(transaction=True)
def test_sdk_entitlement_update_delete_and_undelete(sdk):
    entitlement = sdk.credit_entitlements.create(
        name="Tokens",
        unit="tokens",
        precision=0,
        rollover_enabled=False,
        overage_enabled=False,
        expires_after_days=30,
    )
    sdk.credit_entitlements.update(entitlement.id, expires_after_days=None, unit="tok")
    updated = sdk.credit_entitlements.retrieve(entitlement.id)
    assert (updated.unit, updated.expires_after_days, updated.precision) == ("tok", None, 0)
    with pytest.raises(dodopayments.UnprocessableEntityError):
        sdk.credit_entitlements.update(entitlement.id, overage_enabled=True)

    sdk.credit_entitlements.delete(entitlement.id)
    with pytest.raises(dodopayments.NotFoundError):
        sdk.credit_entitlements.retrieve(entitlement.id)
    assert [e.id for e in sdk.credit_entitlements.list(deleted=True).items] == [entitlement.id]
    sdk.credit_entitlements.undelete(entitlement.id)
    assert sdk.credit_entitlements.retrieve(entitlement.id).name == "Tokens"
