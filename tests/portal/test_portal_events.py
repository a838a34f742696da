"""The events behind a meter: a chosen range of UTC days, 50 a page, the whole range as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import ingest_events
from tests.portal.helpers import portal_client
from tests.products.factories import make_meter, make_product, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture
def account():
    now = datetime.now(UTC).replace(microsecond=0)
    day = (now - timedelta(days=3)).replace(hour=12, minute=0, second=0)
    meter = make_meter("Tokens", "llm", "sum", "tokens", now=day - timedelta(days=1))
    product = make_product([(meter, "0.1", 0)], now=day - timedelta(days=1))
    subscription = subscribe(product, now=day - timedelta(days=1))
    events = [
        {
            "event_id": f"ev-{i:03d}",
            "customer_id": subscription.customer_id,
            "event_name": "llm",
            "timestamp": (day + timedelta(minutes=i)).isoformat(),
            "metadata": {"tokens": i},
        }
        for i in range(60)
    ]
    events.append(
        {
            "event_id": "=HYPERLINK(1)",
            "customer_id": subscription.customer_id,
            "event_name": "llm",
            "timestamp": (day + timedelta(days=1)).isoformat(),
            "metadata": {"tokens": 5},
        }
    )
    ingest_events(events, now=now)
    return subscription, meter, day


def test_pages_of_fifty_newest_first(account):
    subscription, meter, day = account
    client = portal_client(subscription.customer)
    query = f"?meter={meter.pk}&start={day:%Y-%m-%d}&end={day:%Y-%m-%d}"
    first = client.get(f"/portal/events/{query}")
    assert [e.event_id for e in first.context["events"]] == [
        f"ev-{i:03d}" for i in range(59, 9, -1)
    ]
    assert first.context["more"] and 'id="older-link"' in first.content.decode()
    second = client.get(f"/portal/events/{query}&page=1")
    assert [e.event_id for e in second.context["events"]] == [
        f"ev-{i:03d}" for i in range(9, -1, -1)
    ]
    assert not second.context["more"]


def test_the_csv_holds_the_whole_range(account):
    subscription, meter, day = account
    client = portal_client(subscription.customer)
    end = day + timedelta(days=1)
    response = client.get(
        f"/portal/events.csv?meter={meter.pk}&start={day:%Y-%m-%d}&end={end:%Y-%m-%d}"
    )
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["event_id", "timestamp", "event_name", "value", "skipped", "metadata"]
    assert len(rows) == 1 + 61
    assert sum(int(row[3]) for row in rows[1:]) == sum(range(60)) + 5
    # A cell a spreadsheet would run as a formula is quoted.
    assert rows[1][0] == "'=HYPERLINK(1)"


def test_a_range_outside_the_events_is_empty(account):
    subscription, meter, day = account
    client = portal_client(subscription.customer)
    before = day - timedelta(days=2)
    page = client.get(
        f"/portal/events/?meter={meter.pk}&start={before:%Y-%m-%d}&end={before:%Y-%m-%d}"
    )
    assert page.context["events"] == []
    # Nonsense in the form falls back to the default range rather than failing.
    assert client.get("/portal/events/?start=nope&end=9999-99-99&page=x").status_code == 200
