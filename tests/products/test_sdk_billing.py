"""The official SDK: product with meters, subscription, usage, `bill --as-of`, usage history."""

from __future__ import annotations

import io
from datetime import timedelta

import httpx
import pytest
from django.core.management import call_command


@pytest.mark.django_db(transaction=True)
def test_sdk_product_subscription_usage_and_history(sdk, live_server, live_api_key):
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
        name="API plan",
        tax_category="saas",
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 2000,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Month",
            "subscription_period_count": 1,
            "subscription_period_interval": "Year",
            "meters": [
                {"meter_id": calls.id, "price_per_unit": "0.1", "free_threshold": 100},
                {"meter_id": tokens.id, "price_per_unit": "0.002", "free_threshold": 0},
            ],
        },
    )
    assert product.price.type == "usage_based_price"
    assert [m.name for m in product.price.meters] == ["API calls", "Tokens"]

    customer = sdk.customers.create(email="lin@example.com", name="Lin")
    created = sdk.subscriptions.create(
        billing={"country": "US"},
        customer={"customer_id": customer.customer_id},
        product_id=product.product_id,
        quantity=1,
    )
    subscription = sdk.subscriptions.retrieve(created.subscription_id)
    assert subscription.status == "active"
    assert [m.meter_id for m in subscription.meters] == [calls.id, tokens.id]

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

    open_period = sdk.subscriptions.retrieve_usage_history(created.subscription_id).items
    assert len(open_period) == 1
    assert {m.id: m.consumed_units for m in open_period[0].meters} == {
        calls.id: "250",
        tokens.id: "12340",
    }

    as_of = subscription.next_billing_date + timedelta(minutes=1)
    call_command("bill", as_of=as_of.isoformat(), stdout=io.StringIO())

    history = sdk.subscriptions.retrieve_usage_history(created.subscription_id).items
    assert len(history) == 2  # the new open period, then the invoiced one
    invoiced = history[1]
    assert invoiced.start_date == subscription.previous_billing_date
    assert invoiced.end_date == subscription.next_billing_date
    by_meter = {m.id: m for m in invoiced.meters}
    # 250 calls - 100 free = 150 x 0.1 cent = 15 cents
    assert (by_meter[calls.id].chargeable_units, by_meter[calls.id].total_price) == ("150", 15)
    # 12,340 tokens x 0.002 cent = 24.68 -> 25 cents (half-up, once)
    assert by_meter[tokens.id].total_price == 25
    assert history[0].meters[0].consumed_units == "0"

    renewed = sdk.subscriptions.retrieve(created.subscription_id)
    assert renewed.previous_billing_date == subscription.next_billing_date

    invoices = httpx.get(
        f"{live_server.url}/api/invoices",
        params={"subscription_id": created.subscription_id},
        headers={"Authorization": f"Bearer {live_api_key}"},
    ).json()["items"]
    assert [i["total"] for i in invoices] == [2000 + 15 + 25]
    assert [line["kind"] for line in invoices[0]["lines"]] == ["fixed_fee", "usage", "usage"]
