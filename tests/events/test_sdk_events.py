"""The official `dodopayments` SDK drives customers and events against the real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dodopayments import NotFoundError

from events.models import Event


@pytest.mark.django_db(transaction=True)
def test_sdk_customer_and_event_flow(sdk):
    customer = sdk.customers.create(email="ada@example.com", name="Ada Lovelace")
    assert customer.customer_id.startswith("cus_")
    assert sdk.customers.retrieve(customer.customer_id).email == "ada@example.com"

    base = datetime.now(UTC) - timedelta(hours=3)
    events = [
        {
            "event_id": f"sdk-{i}",
            "customer_id": customer.customer_id if i % 3 else "cus_other",
            "event_name": "api.call" if i % 2 else "image.generated",
            "timestamp": (base + timedelta(minutes=i)).isoformat(),
            "metadata": {"tokens": i, "model": "m1", "cached": i % 4 == 0},
        }
        for i in range(25)
    ]
    assert sdk.usage_events.ingest(events=events).ingested_count == 25

    def ids(**filters):
        return {e.event_id for e in sdk.usage_events.list(page_size=100, **filters).items}

    expected_customer = {e["event_id"] for e in events if e["customer_id"] == customer.customer_id}
    assert ids(customer_id=customer.customer_id) == expected_customer
    assert ids(event_name="api.call") == {
        e["event_id"] for e in events if e["event_name"] == "api.call"
    }
    start, end = base + timedelta(minutes=5), base + timedelta(minutes=10)
    assert ids(start=start, end=end) == {f"sdk-{i}" for i in range(5, 10)}

    # Paging: 0-based pages of 10, newest first, then an empty page past the end.
    pages = [sdk.usage_events.list(page_size=10, page_number=n).items for n in range(4)]
    assert [len(p) for p in pages] == [10, 10, 5, 0]
    listed = [e.event_id for page in pages for e in page]
    assert listed == [f"sdk-{i}" for i in reversed(range(25))]

    one = sdk.usage_events.retrieve("sdk-7")
    assert one.customer_id == customer.customer_id
    assert one.metadata == {"tokens": 7, "model": "m1", "cached": False}
    assert one.timestamp == base + timedelta(minutes=7)
    with pytest.raises(NotFoundError):
        sdk.usage_events.retrieve("missing")

    # The same batch again: nothing new, nothing doubled.
    assert sdk.usage_events.ingest(events=events).ingested_count == 0
    assert Event.objects.count() == 25


@pytest.mark.django_db(transaction=True)
def test_sdk_customer_list_filters_and_update(sdk):
    for name in ("Ada", "Grace", "Adele"):
        sdk.customers.create(email=f"{name.lower()}@example.com", name=name)
    names = {c.name for c in sdk.customers.list(name="ad").items}
    assert names == {"Ada", "Adele"}
    grace = sdk.customers.list(email="grace@example.com").items
    assert [c.name for c in grace] == ["Grace"]
    updated = sdk.customers.update(grace[0].customer_id, name="Grace Hopper")
    assert updated.name == "Grace Hopper"
    future = datetime.now(UTC) + timedelta(days=1)
    assert sdk.customers.list(created_at_gte=future).items == []
