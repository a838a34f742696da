"""Credits API through the authenticated client: entitlement CRUD with soft delete, balances,
ledger entries (grants, oldest-first debits, idempotency, precision), ledger and grant lists,
the customer view and a subscription's credit usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction

from credits import ledger
from credits.deduction import run_deductions
from credits.ledger import CreditRules
from credits.models import CreditBalance, CreditEntitlement, CreditGrant, LedgerEntry
from products.billing import run_billing_cycle
from tests.credits.factories import credit_product, make_entitlement, subscribe
from tests.factories import make_customer
from tests.products.factories import make_meter, send_usage

START = datetime(2026, 6, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db

BASE = {"name": "API credits", "unit": "calls", "precision": 2, "rollover_enabled": False}


def create(api, **fields):
    body = {**BASE, "overage_enabled": False, **fields}
    return api.post("/api/credit-entitlements", body, format="json")


def fields_named(response) -> set[str]:
    return {error["field"] for error in response.json()["errors"]}


def entries_url(entitlement_id: str, customer_id: str) -> str:
    return f"/api/credit-entitlements/{entitlement_id}/balances/{customer_id}/ledger-entries"


def post_entry(api, entitlement_id: str, customer_id: str, **body):
    return api.post(entries_url(entitlement_id, customer_id), body, format="json")


def at(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


# --- entitlements ------------------------------------------------------------------------------


def test_create_answers_201_with_the_entitlement(api):
    response = create(
        api,
        description="Calls to the API",
        overage_enabled=True,
        price_per_unit="0.25",
        currency="USD",
        overage_limit=500,
        overage_behavior="invoice_at_billing",
        expires_after_days=30,
        rollover_enabled=True,
        rollover_percentage=75,
        rollover_timeframe_count=1,
        rollover_timeframe_interval="Month",
        max_rollover_count=2,
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("cde_")
    assert {
        k: body[k] for k in body if k not in ("id", "business_id", "created_at", "updated_at")
    } == {
        "name": "API credits",
        "description": "Calls to the API",
        "unit": "calls",
        "precision": 2,
        "currency": "USD",
        "price_per_unit": "0.25",
        "overage_enabled": True,
        "overage_limit": 500,
        "overage_behavior": "invoice_at_billing",
        "expires_after_days": 30,
        "rollover_enabled": True,
        "rollover_percentage": 75,
        "rollover_timeframe_count": 1,
        "rollover_timeframe_interval": "Month",
        "max_rollover_count": 2,
    }
    assert api.get(f"/api/credit-entitlements/{body['id']}").json() == body


def test_create_defaults_overage_behavior_and_leaves_optional_settings_null(api):
    body = create(api).json()
    assert body["overage_behavior"] == "forgive_at_reset"
    assert [body[k] for k in ("price_per_unit", "overage_limit", "expires_after_days")] == [
        None,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"overage_enabled": True}, "price_per_unit"),
        ({"price_per_unit": "1"}, "currency"),
        ({"precision": 11}, "precision"),
        ({"rollover_percentage": 101}, "rollover_percentage"),
        ({"rollover_timeframe_count": 2}, "rollover_timeframe_count"),
        ({"overage_behavior": "forgive"}, "overage_behavior"),
        ({"price_per_unit": "-1", "currency": "USD"}, "price_per_unit"),
        ({"currency": "ZZZ"}, "currency"),
        ({"name": ""}, "name"),
    ],
)
def test_create_refuses_bad_settings_naming_the_field(api, fields, named):
    response = create(api, **fields)
    assert response.status_code == 422, response.content
    assert named in fields_named(response)
    assert not CreditEntitlement.objects.exists()


def test_a_name_in_use_is_refused_with_409(api):
    assert create(api).status_code == 201
    clash = create(api, unit="other")
    assert clash.status_code == 409
    assert clash.json()["code"] == "CREDIT_ENTITLEMENT_NAME_ALREADY_EXISTS"
    assert CreditEntitlement.objects.count() == 1


def test_list_is_newest_first_paged_and_hides_deleted(api):
    ids = [create(api, name=f"E{i}").json()["id"] for i in range(3)]
    api.delete(f"/api/credit-entitlements/{ids[1]}")

    listed = api.get("/api/credit-entitlements").json()["items"]
    assert [e["id"] for e in listed] == [ids[2], ids[0]]
    deleted = api.get("/api/credit-entitlements", {"deleted": "true"}).json()["items"]
    assert [e["id"] for e in deleted] == [ids[1]]
    page = api.get("/api/credit-entitlements", {"page_size": 1, "page_number": 1})
    assert [e["id"] for e in page.json()["items"]] == [ids[0]]
    past_end = api.get("/api/credit-entitlements", {"page_size": 1, "page_number": 5})
    assert past_end.json() == {"items": []}


def test_retrieve_of_an_unknown_entitlement_is_404(api):
    response = api.get("/api/credit-entitlements/cde_nope")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_patch_changes_fields_and_explicit_null_clears_them(api):
    created = create(
        api, description="d", expires_after_days=30, price_per_unit="2", currency="USD"
    ).json()
    url = f"/api/credit-entitlements/{created['id']}"
    response = api.patch(
        url, {"unit": "tokens", "expires_after_days": None, "description": None}, format="json"
    )
    assert response.status_code == 200, response.content
    now = api.get(url).json()
    assert (now["unit"], now["expires_after_days"], now["description"]) == ("tokens", None, None)
    assert (now["price_per_unit"], now["currency"]) == ("2", "USD")  # omitted: unchanged
    assert now["name"] == "API credits"


def test_patch_refuses_precision(api):
    created = create(api).json()
    response = api.patch(
        f"/api/credit-entitlements/{created['id']}", {"precision": 3}, format="json"
    )
    assert response.status_code == 422
    assert "precision" in fields_named(response)
    assert CreditEntitlement.objects.get(pk=created["id"]).precision == 2


def test_patch_validates_the_merged_state(api):
    created = create(api).json()
    url = f"/api/credit-entitlements/{created['id']}"
    refused = api.patch(url, {"overage_enabled": True}, format="json")
    assert refused.status_code == 422
    assert "price_per_unit" in fields_named(refused)
    assert api.get(url).json()["overage_enabled"] is False

    # With a price already set, the same change is fine; clearing the price then is not.
    assert (
        api.patch(url, {"price_per_unit": "3", "currency": "EUR"}, format="json").status_code == 200
    )
    assert api.patch(url, {"overage_enabled": True}, format="json").status_code == 200
    cleared = api.patch(url, {"price_per_unit": None}, format="json")
    assert cleared.status_code == 422
    assert "price_per_unit" in fields_named(cleared)
    assert api.get(url).json()["price_per_unit"] == "3"


def test_patch_to_a_name_in_use_is_409(api):
    create(api, name="First")
    second = create(api, name="Second").json()
    response = api.patch(
        f"/api/credit-entitlements/{second['id']}", {"name": "First"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "CREDIT_ENTITLEMENT_NAME_ALREADY_EXISTS"


def test_delete_is_soft_and_undelete_restores(api):
    created = create(api).json()
    url = f"/api/credit-entitlements/{created['id']}"
    assert api.delete(url).status_code == 200  # Dodo: 200 with no body
    again = api.delete(url)
    assert (again.status_code, again.json()["code"]) == (410, "GONE")  # "already deleted"
    assert api.get(url).status_code == 404
    assert api.patch(url, {"unit": "x"}, format="json").status_code == 404
    assert CreditEntitlement.objects.filter(pk=created["id"]).exists()  # kept
    deleted = api.get("/api/credit-entitlements", {"deleted": "true"}).json()["items"]
    assert [e["id"] for e in deleted] == [created["id"]]

    assert api.post(f"{url}/undelete").status_code == 200
    assert api.get(url).json() == created
    assert api.get("/api/credit-entitlements", {"deleted": "true"}).json()["items"] == []
    not_deleted = api.post(f"{url}/undelete")
    assert not_deleted.status_code == 422  # Dodo answers 500 here; a 4xx says what is wrong


def test_a_deleted_name_can_be_reused_and_then_the_old_one_cannot_come_back(api):
    old = create(api).json()
    api.delete(f"/api/credit-entitlements/{old['id']}")
    assert create(api).status_code == 201
    response = api.post(f"/api/credit-entitlements/{old['id']}/undelete")
    assert response.status_code == 409
    assert response.json()["code"] == "CREDIT_ENTITLEMENT_NAME_ALREADY_EXISTS"


# --- balances and ledger entries ---------------------------------------------------------------


@pytest.fixture
def entitlement():
    return make_entitlement(now=START)


@pytest.fixture
def customer():
    return make_customer()


def test_balances_404_until_the_customer_has_one(api, entitlement, customer):
    url = f"/api/credit-entitlements/{entitlement.id}/balances"
    assert api.get(f"{url}/{customer.customer_id}").status_code == 404
    assert api.get(url).json() == {"items": []}
    assert api.get("/api/credit-entitlements/cde_nope/balances").status_code == 404

    post_entry(api, entitlement.id, customer.customer_id, entry_type="credit", amount="12.50")
    other = make_customer(email="bo@example.com")
    post_entry(api, entitlement.id, other.customer_id, entry_type="credit", amount="3")

    one = api.get(f"{url}/{customer.customer_id}").json()
    assert (one["customer_id"], one["credit_entitlement_id"]) == (
        customer.customer_id,
        entitlement.id,
    )
    assert (Decimal(one["balance"]), Decimal(one["overage"])) == (Decimal("12.5"), 0)
    assert one["last_transaction_at"] is not None
    everyone = api.get(url).json()["items"]
    assert {b["customer_id"]: Decimal(b["balance"]) for b in everyone} == {
        customer.customer_id: Decimal("12.5"),
        other.customer_id: Decimal(3),
    }
    filtered = api.get(url, {"customer_id": other.customer_id}).json()["items"]
    assert [b["customer_id"] for b in filtered] == [other.customer_id]


def test_a_credit_makes_a_grant_and_reports_the_balance(api, entitlement, customer):
    expires = START + timedelta(days=400)
    response = post_entry(
        api,
        entitlement.id,
        customer.customer_id,
        entry_type="credit",
        amount="40",
        reason="Welcome bonus",
        expires_at=at(expires),
        metadata={"campaign": "spring"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["entry_type"] == "credit" and body["is_credit"] is True
    assert (Decimal(body["balance_before"]), Decimal(body["balance_after"])) == (0, 40)
    assert Decimal(body["amount"]) == 40
    assert (body["reason"], body["metadata"]) == ("Welcome bonus", {"campaign": "spring"})
    grant = CreditGrant.objects.get(pk=body["grant_id"])
    assert (grant.initial_amount, grant.remaining_amount) == (40, 40)
    assert (grant.source_type, grant.expires_at) == ("api", expires)

    second = post_entry(api, entitlement.id, customer.customer_id, entry_type="credit", amount="2")
    assert (Decimal(second.json()["balance_before"]), Decimal(second.json()["balance_after"])) == (
        40,
        42,
    )
    assert second.json()["grant_id"] != body["grant_id"]


def test_a_debit_takes_the_oldest_grants_first(api, entitlement, customer):
    grant_ids = [
        post_entry(api, entitlement.id, customer.customer_id, entry_type="credit", amount=a).json()[
            "grant_id"
        ]
        for a in ("30", "20", "10")
    ]
    response = post_entry(
        api, entitlement.id, customer.customer_id, entry_type="debit", amount="35.5"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["entry_type"] == "debit" and body["is_credit"] is False
    assert (Decimal(body["balance_before"]), Decimal(body["balance_after"])) == (
        60,
        Decimal("24.5"),
    )
    remaining = {
        str(g.pk): g.remaining_amount for g in CreditGrant.objects.filter(pk__in=grant_ids)
    }
    assert [remaining[g] for g in grant_ids] == [0, Decimal("14.5"), 10]
    ledger_body = api.get(
        f"/api/credit-entitlements/{entitlement.id}/balances/{customer.customer_id}/ledger",
        {"transaction_type": "manual_adjustment"},
    ).json()
    debits = [e for e in ledger_body["items"] if not e["is_credit"]]
    assert sorted((e["grant_id"], Decimal(e["amount"])) for e in debits) == sorted(
        [(grant_ids[0], Decimal(30)), (grant_ids[1], Decimal("5.5"))]
    )


def test_a_debit_beyond_the_balance_is_refused_and_changes_nothing(api, entitlement, customer):
    post_entry(api, entitlement.id, customer.customer_id, entry_type="credit", amount="10")
    response = post_entry(
        api, entitlement.id, customer.customer_id, entry_type="debit", amount="10.01"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "INSUFFICIENT_BALANCE"
    balance = CreditBalance.objects.get(credit_entitlement=entitlement, customer=customer)
    assert balance.balance == 10
    assert balance.entries.count() == 1
    exact = post_entry(api, entitlement.id, customer.customer_id, entry_type="debit", amount="10")
    assert exact.status_code == 201
    assert Decimal(exact.json()["balance_after"]) == 0


def test_a_debit_before_any_credit_is_refused(api, entitlement, customer):
    response = post_entry(api, entitlement.id, customer.customer_id, entry_type="debit", amount="1")
    assert response.status_code == 400
    assert response.json()["code"] == "INSUFFICIENT_BALANCE"
    assert not LedgerEntry.objects.exists()


def test_a_reused_idempotency_key_is_409_and_writes_nothing(api, entitlement, customer):
    first = post_entry(
        api,
        entitlement.id,
        customer.customer_id,
        entry_type="credit",
        amount="25",
        idempotency_key="k1",
    )
    assert first.status_code == 201
    for body in (
        {"entry_type": "credit", "amount": "25"},
        {"entry_type": "credit", "amount": "99"},
        {"entry_type": "debit", "amount": "5"},
    ):
        again = post_entry(api, entitlement.id, customer.customer_id, idempotency_key="k1", **body)
        assert again.status_code == 409, body
    debit = post_entry(
        api,
        entitlement.id,
        customer.customer_id,
        entry_type="debit",
        amount="20",
        idempotency_key="d1",
    )
    assert debit.status_code == 201
    # A retry of that debit is still "key reused", although the balance (5) could not take it.
    retry = post_entry(
        api,
        entitlement.id,
        customer.customer_id,
        entry_type="debit",
        amount="20",
        idempotency_key="d1",
    )
    assert retry.status_code == 409
    balance = CreditBalance.objects.get(credit_entitlement=entitlement, customer=customer)
    assert balance.balance == 5
    assert balance.entries.count() == 2
    # Keys are per balance: another customer may use the same one.
    other = make_customer(email="bo@example.com")
    elsewhere = post_entry(
        api,
        entitlement.id,
        other.customer_id,
        entry_type="credit",
        amount="1",
        idempotency_key="k1",
    )
    assert elsewhere.status_code == 201


@pytest.mark.parametrize(
    ("precision", "amount", "ok"),
    [(2, "1.234", False), (2, "1.23", True), (2, "1.230", True), (0, "1.5", False), (0, "7", True)],
)
def test_amounts_finer_than_the_precision_are_422(api, customer, precision, amount, ok):
    entitlement = make_entitlement(now=START, precision=precision)
    response = post_entry(
        api, entitlement.id, customer.customer_id, entry_type="credit", amount=amount
    )
    if ok:
        assert response.status_code == 201
        assert Decimal(response.json()["balance_after"]) == Decimal(amount)
    else:
        assert response.status_code == 422
        assert "amount" in fields_named(response)
        assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "", None, True, "NaN"])
def test_amounts_that_are_not_positive_decimals_are_422(api, entitlement, customer, amount):
    response = post_entry(
        api, entitlement.id, customer.customer_id, entry_type="credit", amount=amount
    )
    assert response.status_code == 422
    assert "amount" in fields_named(response)


def test_unknown_customer_or_entitlement_is_404(api, entitlement, customer):
    body = {"entry_type": "credit", "amount": "1"}
    assert post_entry(api, entitlement.id, "cus_nope", **body).status_code == 404
    assert post_entry(api, "cde_nope", customer.customer_id, **body).status_code == 404
    api.delete(f"/api/credit-entitlements/{entitlement.id}")
    assert post_entry(api, entitlement.id, customer.customer_id, **body).status_code == 404
    assert not CreditBalance.objects.exists()


def test_entry_type_must_be_credit_or_debit(api, entitlement, customer):
    response = post_entry(
        api, entitlement.id, customer.customer_id, entry_type="refund", amount="1"
    )
    assert response.status_code == 422
    assert "entry_type" in fields_named(response)


# --- ledger and grants lists -------------------------------------------------------------------


def history(entitlement, customer):
    """Credits of 100 at day 0, 50 at day 2 (expiring day 5), a debit of 120 at day 3, and the
    expiry run at day 6: grant 1 depleted, grant 2 expired with 30 left, grant 3 active."""
    rules = CreditRules.of(entitlement)
    day = timedelta(days=1)

    def entry(when, entry_type, amount, expires_at=None):
        with transaction.atomic():
            balance = ledger.locked_balance(entitlement.id, customer.customer_id, now=when)
            ledger.manual_entry(
                balance,
                entry_type=entry_type,
                amount=Decimal(amount),
                rules=rules,
                now=when,
                expires_at=expires_at,
            )

    entry(START, "credit", "100")
    entry(START + 2 * day, "credit", "50", expires_at=START + 5 * day)
    entry(START + 3 * day, "debit", "120")
    with transaction.atomic():
        balance = ledger.locked_balance(entitlement.id, customer.customer_id, now=START + 6 * day)
        ledger.expire_grants(balance, rules=rules, as_of=START + 6 * day)
    entry(START + 7 * day, "credit", "5")


def test_ledger_lists_newest_first_with_type_and_date_filters(api, entitlement, customer):
    history(entitlement, customer)
    url = f"/api/credit-entitlements/{entitlement.id}/balances/{customer.customer_id}/ledger"

    items = api.get(url).json()["items"]
    summary = [
        (e["transaction_type"], Decimal(e["amount"]), Decimal(e["balance_after"])) for e in items
    ]
    assert summary == [
        ("manual_adjustment", 5, 5),
        ("credit_expired", 30, 0),
        ("manual_adjustment", 20, 30),  # the debit's part from the second grant
        ("manual_adjustment", 100, 50),  # ... and from the first, oldest
        ("manual_adjustment", 50, 150),
        ("manual_adjustment", 100, 100),
    ]
    for entry in items:
        assert Decimal(entry["balance_after"]) - Decimal(entry["balance_before"]) == (
            Decimal(entry["amount"]) * (1 if entry["is_credit"] else -1)
        )
        assert (entry["overage_before"], entry["overage_after"]) == ("0", "0")
        assert entry["credit_entitlement_id"] == entitlement.id
        assert entry["customer_id"] == customer.customer_id

    expired = api.get(url, {"transaction_type": "credit_expired"}).json()["items"]
    assert [(e["transaction_type"], Decimal(e["amount"])) for e in expired] == [
        ("credit_expired", 30)
    ]
    assert api.get(url, {"transaction_type": "overage_reset"}).json() == {"items": []}

    window = {
        "start_date": at(START + timedelta(days=2)),
        "end_date": at(START + timedelta(days=3)),
    }
    dated = api.get(url, window).json()["items"]
    assert [Decimal(e["balance_after"]) for e in dated] == [30, 50, 150]  # both ends included
    since = api.get(url, {"start_date": at(START + timedelta(days=6))}).json()["items"]
    assert [e["transaction_type"] for e in since] == ["manual_adjustment", "credit_expired"]
    bad = api.get(url, {"start_date": "yesterday"})
    assert bad.status_code == 422

    page = api.get(url, {"page_size": 2, "page_number": 1}).json()["items"]
    assert [Decimal(e["balance_after"]) for e in page] == [30, 50]


def test_the_ledger_lists_changes_in_the_order_they_were_made(api):
    """The cycle ran five hours after the period ended: its final deduction is dated then, the
    expiry, rollover and next grant at the period's end. Newest first still means the order of
    the changes, so the first entry's balance_after is the balance and each entry follows the
    one listed after it."""
    entitlement = make_entitlement(
        now=START, rollover_enabled=True, rollover_percentage=50, expires_after_days=7
    )
    meter = make_meter("Calls", "api.call", now=START)
    subscription = subscribe(
        credit_product(entitlement, meter, credits_amount=100, now=START), now=START
    )
    send_usage(subscription, "api.call", [{}] * 30, start=START, prefix="u")
    run_billing_cycle(now=START + timedelta(days=7, hours=5))

    url = f"/api/credit-entitlements/{entitlement.id}/balances/{subscription.customer_id}/ledger"
    items = api.get(url).json()["items"]
    # 100 - 30 used = 70 left: 35 roll over, 35 expire, then 100 new credits.
    assert [(e["transaction_type"], Decimal(e["balance_after"])) for e in items] == [
        ("credit_added", 135),
        ("credit_rolled_over", 35),
        ("credit_expired", 35),
        ("credit_deducted", 70),
        ("credit_added", 100),
    ]
    for newer, older in zip(items, items[1:], strict=False):
        assert newer["balance_before"] == older["balance_after"]


def test_grants_list_filters_by_status(api, entitlement, customer):
    history(entitlement, customer)
    url = f"/api/credit-entitlements/{entitlement.id}/balances/{customer.customer_id}/grants"

    def listed(**params):
        items = api.get(url, params).json()["items"]
        return [(Decimal(g["initial_amount"]), Decimal(g["remaining_amount"])) for g in items]

    assert listed() == [(5, 5), (50, 0), (100, 0)]  # newest first
    assert listed(status="active") == [(5, 5)]
    assert listed(status="depleted") == [(100, 0)]
    assert listed(status="expired") == [(50, 0)]
    [expired] = api.get(url, {"status": "expired"}).json()["items"]
    assert expired["is_expired"] is True
    assert expired["expires_at"] is not None
    assert expired["source_type"] == "api"
    assert api.get(url, {"status": "gone"}).status_code == 422
    other = make_customer(email="bo@example.com")
    missing = f"/api/credit-entitlements/{entitlement.id}/balances/{other.customer_id}/grants"
    assert api.get(missing).status_code == 404


# --- the customer's view and a subscription's credit usage ------------------------------------


def test_customer_credit_entitlements_lists_each_balance(api, customer):
    calls = make_entitlement(now=START, name="Calls", unit="calls", description="API calls")
    tokens = make_entitlement(now=START, name="Tokens", unit="tokens")
    post_entry(api, calls.id, customer.customer_id, entry_type="credit", amount="12")
    post_entry(api, tokens.id, customer.customer_id, entry_type="credit", amount="3.5")
    post_entry(api, tokens.id, customer.customer_id, entry_type="debit", amount="1")

    response = api.get(f"/api/customers/{customer.customer_id}/credit-entitlements")
    assert response.status_code == 200
    items = sorted(response.json()["items"], key=lambda i: i["name"])
    assert [
        (i["credit_entitlement_id"], i["name"], i["unit"], i["description"]) for i in items
    ] == [(calls.id, "Calls", "calls", "API calls"), (tokens.id, "Tokens", "tokens", None)]
    assert [(Decimal(i["balance"]), Decimal(i["overage"])) for i in items] == [
        (12, 0),
        (Decimal("2.5"), 0),
    ]
    assert api.get("/api/customers/cus_nope/credit-entitlements").status_code == 404
    lonely = make_customer(email="lonely@example.com")
    assert api.get(f"/api/customers/{lonely.customer_id}/credit-entitlements").json() == {
        "items": []
    }


def usage_subscription(calls: int, **settings):
    entitlement = make_entitlement(now=START, **settings)
    meter = make_meter("Calls", "api.call", now=START)
    subscription = subscribe(
        credit_product(entitlement, meter, credits_amount=100, now=START), now=START
    )
    send_usage(subscription, "api.call", [{}] * calls, start=START, prefix="u")
    run_deductions(now=START + timedelta(days=1))
    return entitlement, subscription


LIMITED = {
    "overage_enabled": True,
    "overage_limit": 30,
    "price_per_unit": "10",
    "currency": "USD",
}


@pytest.mark.parametrize(
    ("calls", "balance", "overage", "reached", "headroom"),
    [
        (60, "40", "0", False, "30"),  # credits cover it
        (110, "0", "10", False, "20"),  # 10 into overage
        (150, "0", "30", True, "0"),  # 50 needed, 30 allowed, 20 blocked
    ],
)
def test_credit_usage_with_an_overage_limit(api, calls, balance, overage, reached, headroom):
    entitlement, subscription = usage_subscription(calls, name="Limited", **LIMITED)
    response = api.get(f"/api/subscriptions/{subscription.subscription_id}/credit-usage")
    assert response.status_code == 200
    body = response.json()
    assert body["subscription_id"] == subscription.subscription_id
    [item] = body["items"]
    assert (item["credit_entitlement_id"], item["credit_entitlement_name"], item["unit"]) == (
        entitlement.id,
        "Limited",
        "credits",
    )
    assert (Decimal(item["balance"]), Decimal(item["overage"])) == (
        Decimal(balance),
        Decimal(overage),
    )
    assert item["overage_enabled"] is True
    assert Decimal(item["overage_limit"]) == 30
    assert item["limit_reached"] is reached
    assert Decimal(item["remaining_headroom"]) == Decimal(headroom)


@pytest.mark.parametrize(
    ("settings", "overage", "enabled"),
    [
        ({"overage_enabled": True, "price_per_unit": "10", "currency": "USD"}, "50", True),
        ({}, "0", False),
    ],
)
def test_credit_usage_without_a_limit_has_no_headroom(api, settings, overage, enabled):
    _, subscription = usage_subscription(150, **settings)
    [item] = api.get(f"/api/subscriptions/{subscription.subscription_id}/credit-usage").json()[
        "items"
    ]
    assert (Decimal(item["balance"]), Decimal(item["overage"])) == (0, Decimal(overage))
    assert item["overage_enabled"] is enabled
    assert item["remaining_headroom"] is None
    assert item["limit_reached"] is False
    if enabled:
        assert item["overage_limit"] is None


def test_credit_usage_of_an_unknown_subscription_is_404(api):
    assert api.get("/api/subscriptions/sub_nope/credit-usage").status_code == 404


@pytest.mark.parametrize(("amount", "ok"), [("100.5", False), ("0.4", False), ("150", True)])
def test_a_product_cannot_grant_credits_finer_than_the_precision(api, amount, ok):
    """Credits a product grants are granted as they are, so they must fit the precision: 100.5
    of a whole-credit entitlement would otherwise become 101 (or 0.4 nothing at all)."""
    entitlement = make_entitlement(now=START, precision=0)
    meter = make_meter("Calls", "api.call", now=START)
    response = api.post(
        "/api/products",
        {
            "name": "Plan",
            "tax_category": "saas",
            "credit_entitlements": [
                {"credit_entitlement_id": entitlement.id, "credits_amount": amount}
            ],
            "price": {
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 0,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "subscription_period_count": 1,
                "subscription_period_interval": "Year",
                "meters": [
                    {
                        "meter_id": meter.id,
                        "credit_entitlement_id": entitlement.id,
                        "meter_units_per_credit": "1",
                        "free_threshold": 0,
                    }
                ],
            },
        },
        format="json",
    )
    if ok:
        assert response.status_code == 200, response.content
    else:
        assert response.status_code == 422
        assert "credit_entitlements[0].credits_amount" in fields_named(response)
