"""Every usage-billing method of the official SDK that this server implements, called with the
strict client on real objects: each answer must parse into the SDK's own types (a missing
required field, a wrong type or an enum value outside the SDK's raises), with the status code
Dodo's OpenAPI document gives for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

# (SDK method, status) as Dodo's OpenAPI document (1.113) lists them; README "Status codes".
DODO_STATUS = {
    "usage_events.ingest": 200,
    "usage_events.list": 200,
    "usage_events.retrieve": 200,
    "meters.create": 201,
    "meters.retrieve": 200,
    "meters.update": 200,
    "meters.list": 200,
    "meters.archive": 204,
    "meters.unarchive": 200,
    "customers.create": 200,
    "customers.retrieve": 200,
    "customers.update": 200,
    "customers.list": 200,
    "customers.list_credit_entitlements": 200,
    "customers.customer_portal.create": 200,
    "products.create": 200,
    "products.retrieve": 200,
    "products.update": 200,
    "products.list": 200,
    "products.archive": 200,
    "products.unarchive": 200,
    "subscriptions.create": 200,
    "subscriptions.retrieve": 200,
    "subscriptions.update": 200,
    "subscriptions.list": 200,
    "subscriptions.retrieve_usage_history": 200,
    "subscriptions.retrieve_credit_usage": 200,
    "credit_entitlements.create": 201,
    "credit_entitlements.retrieve": 200,
    "credit_entitlements.update": 200,
    "credit_entitlements.list": 200,
    "credit_entitlements.delete": 200,
    "credit_entitlements.undelete": 200,
    "credit_entitlements.balances.list": 200,
    "credit_entitlements.balances.retrieve": 200,
    "credit_entitlements.balances.create_ledger_entry": 201,
    "credit_entitlements.balances.list_ledger": 200,
    "credit_entitlements.balances.list_grants": 200,
}


class Caller:
    """Calls `client.<method>` through `with_raw_response`, checks the status against Dodo's and
    parses the body strictly; remembers which methods were called."""

    def __init__(self, client):
        self.client = client
        self.called: set[str] = set()

    def __call__(self, method: str, *args, **kwargs):
        *path, name = method.split(".")
        resource = self.client
        for part in path:
            resource = getattr(resource, part)
        raw = getattr(resource.with_raw_response, name)(*args, **kwargs)
        assert raw.status_code == DODO_STATUS[method], (method, raw.status_code, raw.text())
        self.called.add(method)
        return raw.parse()


@pytest.mark.django_db(transaction=True)
def test_every_usage_billing_method_parses_strictly(strict):
    call = Caller(strict)
    now = datetime.now(UTC)

    # --- credit entitlements ---------------------------------------------------------------
    credits = call(
        "credit_entitlements.create",
        name="API credits",
        unit="credits",
        precision=2,
        rollover_enabled=False,
        overage_enabled=True,
        overage_behavior="invoice_at_billing",
        overage_limit=100,
        price_per_unit="0.5",
        currency="USD",
        expires_after_days=30,
        description="Prepaid calls",
    )
    spare = call(
        "credit_entitlements.create",
        name="Spare",
        unit="tokens",
        precision=0,
        rollover_enabled=True,
        rollover_percentage=50,
        rollover_timeframe_count=1,
        rollover_timeframe_interval="Month",
        max_rollover_count=2,
        overage_enabled=False,
    )
    assert call("credit_entitlements.retrieve", credits.id).overage_limit == 100
    call("credit_entitlements.update", spare.id, description="Not attached")
    assert call("credit_entitlements.retrieve", spare.id).description == "Not attached"
    call("credit_entitlements.delete", spare.id)
    deleted = call("credit_entitlements.list", deleted=True, page_size=100)
    assert [e.id for e in deleted.items] == [spare.id]
    call("credit_entitlements.undelete", spare.id)
    live = call("credit_entitlements.list", page_number=0, page_size=100)
    assert {e.id for e in live.items} == {credits.id, spare.id}

    # --- meters ----------------------------------------------------------------------------
    calls = call(
        "meters.create",
        name="API calls",
        event_name="api.call",
        measurement_unit="calls",
        aggregation={"type": "count"},
        description="Every request",
    )
    tokens = call(
        "meters.create",
        name="Tokens",
        event_name="tokens.used",
        measurement_unit="tokens",
        aggregation={"type": "sum", "key": "tokens"},
        filter={
            "conjunction": "and",
            "clauses": [{"key": "model", "operator": "equals", "value": "large"}],
        },
    )
    old = call(
        "meters.create",
        name="Old",
        event_name="old",
        measurement_unit="units",
        aggregation={"type": "max", "key": "size"},
    )
    assert call("meters.update", calls.id, description=None).description is None
    assert call("meters.retrieve", tokens.id, locale="fr").filter.conjunction == "and"
    assert call("meters.archive", old.id) is None
    archived = call("meters.list", archived=True)
    assert [m.id for m in archived.items] == [old.id]
    assert call("meters.unarchive", old.id) is None
    active = call("meters.list", archived=False, page_size=50)
    assert {m.id for m in active.items} == {calls.id, tokens.id, old.id}

    # --- products --------------------------------------------------------------------------
    price = {
        "type": "usage_based_price",
        "currency": "USD",
        "fixed_price": 1000,
        "payment_frequency_count": 1,
        "payment_frequency_interval": "Month",
        "subscription_period_count": 1,
        "subscription_period_interval": "Year",
        "tax_inclusive": False,
        "meters": [
            {"meter_id": calls.id, "price_per_unit": "0.1", "free_threshold": 100},
            {
                "meter_id": tokens.id,
                "credit_entitlement_id": credits.id,
                "meter_units_per_credit": "10",
                "free_threshold": 0,
            },
        ],
    }
    product = call(
        "products.create",
        name="API plan",
        tax_category="saas",
        price=price,
        description="Calls and tokens",
        metadata={"tier": "pro"},
        credit_entitlements=[
            {
                "credit_entitlement_id": credits.id,
                "credits_amount": "50",
                "low_balance_threshold_percent": 20,
            }
        ],
    )
    spare_product = call(
        "products.create",
        name="Spare plan",
        tax_category="saas",
        price={**price, "meters": [{"meter_id": old.id, "price_per_unit": "2"}]},
    )
    assert call("products.update", spare_product.product_id, description="Unused") is None
    assert call("products.retrieve", spare_product.product_id).description == "Unused"
    assert call("products.archive", spare_product.product_id) is None
    archived_products = call("products.list", archived=True)
    assert [p.product_id for p in archived_products.items] == [spare_product.product_id]
    assert call("products.unarchive", spare_product.product_id) is None
    listed = call("products.list", recurring=True, page_size=10)
    assert {p.product_id for p in listed.items} == {product.product_id, spare_product.product_id}
    assert call("products.list", recurring=False).items == []

    # --- customers -------------------------------------------------------------------------
    ada = call(
        "customers.create",
        email="ada@example.com",
        name="Ada",
        phone_number="+15550100",
        metadata={"plan": "pro"},
        preferred_locale="fr",
    )
    assert ada.preferred_locale == "fr"
    call("customers.create", email="bob@example.com", name="Bob")
    updated = call("customers.update", ada.customer_id, name="Ada L.", preferred_locale="en")
    assert (updated.name, updated.preferred_locale) == ("Ada L.", "en")
    assert call("customers.retrieve", ada.customer_id).preferred_locale == "en"
    found = call(
        "customers.list",
        email="ada@example.com",
        name="ada",
        created_at_gte=now - timedelta(minutes=5),
        created_at_lte=datetime.now(UTC) + timedelta(minutes=5),
    )
    assert [c.customer_id for c in found.items] == [ada.customer_id]

    # --- subscriptions ---------------------------------------------------------------------
    created = call(
        "subscriptions.create",
        billing={"country": "US", "city": "Boston", "street": "1 Main St", "zipcode": "02101"},
        customer={"customer_id": ada.customer_id},
        product_id=product.product_id,
        quantity=1,
        metadata={"source": "conformance"},
        customer_business_name="Ada Ltd",
    )
    assert isinstance(created.payment_id, str)
    other = call(
        "subscriptions.create",
        billing={"country": "DE"},
        customer={"email": "cleo@example.com", "name": "Cleo"},
        product_id=spare_product.product_id,
        quantity=1,
        trial_period_days=14,
    )
    subscription = call("subscriptions.retrieve", created.subscription_id)
    assert subscription.billing.city == "Boston"
    assert subscription.customer_business_name == "Ada Ltd"
    [cart] = subscription.credit_entitlement_cart
    assert (cart.unit, cart.product_id, cart.remaining_balance) == (
        "credits",
        product.product_id,
        "50.00",
    )
    trial = call("subscriptions.retrieve", other.subscription_id)
    assert trial.trial_period_days == 14
    assert trial.next_billing_date == trial.created_at + timedelta(days=14)

    updated_sub = call(
        "subscriptions.update",
        created.subscription_id,
        metadata={"source": "conformance", "step": 2},
        billing={"country": "US", "state": "MA", "city": "Cambridge"},
        customer_name="Ada Lovelace",
        customer_business_name="Ada Labs",
        cancel_at_next_billing_date=True,
        cancellation_comment="Moving on",
        cancellation_feedback="too_expensive",
    )
    assert updated_sub.billing.city == "Cambridge"
    assert updated_sub.customer.name == "Ada Lovelace"
    assert updated_sub.cancel_at_next_billing_date is True
    assert updated_sub.cancellation_comment == "Moving on"
    subs = call(
        "subscriptions.list",
        customer_id=ada.customer_id,
        product_id=product.product_id,
        status="active",
        cancel_at_next_billing_date=True,
        created_at_gte=now - timedelta(minutes=5),
        created_at_lte=datetime.now(UTC) + timedelta(minutes=5),
        brand_id=subscription.brand_id,
        locale="en",
    )
    assert [s.subscription_id for s in subs.items] == [created.subscription_id]
    assert subs.items[0].discounts == []
    everything = call("subscriptions.list", page_size=100)
    assert len(everything.items) == 2

    # --- events ----------------------------------------------------------------------------
    ingested = call(
        "usage_events.ingest",
        events=[
            {
                "event_id": f"call-{i}",
                "customer_id": ada.customer_id,
                "event_name": "api.call",
                "timestamp": datetime.now(UTC),
            }
            for i in range(3)
        ]
        + [
            {
                "event_id": "tok-1",
                "customer_id": ada.customer_id,
                "event_name": "tokens.used",
                "metadata": {"tokens": 120, "model": "large", "cached": False},
            },
            {
                "event_id": "tok-2",
                "customer_id": ada.customer_id,
                "event_name": "tokens.used",
                "metadata": {"tokens": 7, "model": "small"},
            },
        ],
    )
    assert ingested.ingested_count == 5
    by_meter = call("usage_events.list", meter_id=tokens.id, customer_id=ada.customer_id)
    assert [e.event_id for e in by_meter.items] == ["tok-1"]
    windowed = call(
        "usage_events.list",
        customer_id=ada.customer_id,
        event_name="api.call",
        start=now - timedelta(minutes=5),
        end=datetime.now(UTC) + timedelta(minutes=1),
        page_number=0,
        page_size=2,
    )
    assert len(windowed.items) == 2
    assert call("usage_events.retrieve", "tok-1").metadata["tokens"] == 120

    history = call(
        "subscriptions.retrieve_usage_history",
        created.subscription_id,
        start_date=now - timedelta(days=1),
        end_date=datetime.now(UTC) + timedelta(days=1),
        meter_id=calls.id,
        page_size=5,
    )
    [period] = history.items
    assert [(m.id, m.consumed_units) for m in period.meters] == [(calls.id, "3")]
    usage = call("subscriptions.retrieve_credit_usage", created.subscription_id)
    assert [item.credit_entitlement_id for item in usage.items] == [credits.id]

    # --- balances, ledger, grants ----------------------------------------------------------
    entry = call(
        "credit_entitlements.balances.create_ledger_entry",
        ada.customer_id,
        credit_entitlement_id=credits.id,
        entry_type="credit",
        amount="10",
        reason="Goodwill",
        idempotency_key="goodwill-1",
        metadata={"ticket": "T-1"},
        expires_at=datetime.now(UTC) + timedelta(days=3),
    )
    assert entry.balance_after == "60.00"
    balances = call("credit_entitlements.balances.list", credits.id, customer_id=ada.customer_id)
    assert [b.balance for b in balances.items] == ["60.00"]
    balance = call(
        "credit_entitlements.balances.retrieve", ada.customer_id, credit_entitlement_id=credits.id
    )
    assert balance.balance == "60.00"
    ledger = call(
        "credit_entitlements.balances.list_ledger",
        ada.customer_id,
        credit_entitlement_id=credits.id,
        transaction_type="manual_adjustment",
        start_date=now - timedelta(minutes=5),
        end_date=datetime.now(UTC) + timedelta(minutes=5),
    )
    assert [e.amount for e in ledger.items] == ["10"]
    grants = call(
        "credit_entitlements.balances.list_grants",
        ada.customer_id,
        credit_entitlement_id=credits.id,
        status="active",
        page_size=10,
    )
    assert sorted(g.initial_amount for g in grants.items) == ["10", "50.00"]
    mine = call("customers.list_credit_entitlements", ada.customer_id)
    assert [(i.credit_entitlement_id, i.balance) for i in mine.items] == [(credits.id, "60.00")]
    refreshed = call("subscriptions.retrieve", created.subscription_id)
    assert refreshed.credit_entitlement_cart[0].remaining_balance == "60.00"

    portal = call(
        "customers.customer_portal.create",
        ada.customer_id,
        return_url="https://app.example.com/account",
        send_email=False,
    )
    assert "/portal/session/" in portal.link

    assert call.called == set(DODO_STATUS)
