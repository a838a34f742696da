"""unique_count and min in the staff pages: the meter form offers and saves them, the live
preview counts distinct values (typed) and skips as usage does, and the analytics tabs, chart
and CSV exports show distinct counts and the values that made them."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing_site.jsonutil import exact_dumps
from meters import analytics, preview
from meters.models import Meter
from products.billing import ingest_events as ingest
from tests.factories import event, make_customer
from tests.products.factories import make_meter, make_product, subscribe

pytestmark = pytest.mark.django_db

NAME = "app.opened"
# user_id typed: 7 and 7.0 one user, "7" another, true another; two events without one.
USERS = [7, Decimal("7.0"), "7", True, "ann", "ann", None, "bo", None, Decimal("0.5")]
DISTINCT_USERS = 6  # n:7, s:7, b:true, s:ann, s:bo, n:0.5
# For min: latency with strings and booleans skipped as not numbers.
LATENCY = [Decimal("12.50"), "3", 40, True, None, Decimal("0.75"), 9, None, "x", 2]


@pytest.fixture
def events(db):
    now = timezone.now()
    batch = []
    for i, (user, latency) in enumerate(zip(USERS, LATENCY, strict=True)):
        metadata = {}
        if user is not None:
            metadata["user_id"] = user
        if latency is not None:
            metadata["latency"] = latency
        when = now - timedelta(hours=i)
        batch.append(event(f"e{i}", f"cus_{i % 2}", NAME, timestamp=when, metadata=metadata))
    ingest(exact_dumps({"events": batch}).encode(), now=now)
    return now


def draft(kind: str, key: str) -> preview.Draft:
    return preview.parse_draft(
        {"event_name": NAME, "aggregation": {"type": kind, "key": key}, "filter": None}
    )


def test_preview_counts_distinct_values_and_shows_each_value_with_its_type(events):
    result = preview.preview(draft("unique_count", "user_id"), now=events, sample_size=20)
    assert (result.matched, result.skipped_missing_key, result.skipped_not_a_number) == (10, 2, 0)
    assert result.distinct_values == DISTINCT_USERS
    values = {s.event_id: (s.value, s.skip_reason) for s in result.sample}
    assert values["e0"] == ("7", None)
    assert values["e1"] == ("7.0", None)
    assert values["e2"] == ('"7"', None)  # the string, quoted as JSON: not the number
    assert values["e3"] == ("true", None)
    assert values["e6"] == (None, preview.SKIP_MISSING_KEY)


def test_preview_of_min_skips_non_numbers_like_max(events):
    result = preview.preview(draft("min", "latency"), now=events, sample_size=20)
    # missing: e4, e7; not numbers: "3", true, "x"
    assert (result.skipped_missing_key, result.skipped_not_a_number) == (2, 3)
    assert result.distinct_values is None
    assert {s.event_id: s.value for s in result.sample}["e5"] == Decimal("0.75")


def test_preview_endpoint_answers_the_distinct_count(events, staff_client):
    body = {"event_name": NAME, "aggregation": {"type": "unique_count", "key": "user_id"}}
    answer = staff_client.post(
        reverse("admin:meters_meter_preview"), body, content_type="application/json"
    ).json()
    assert (answer["distinct_values"], answer["contributing"]) == (DISTINCT_USERS, 8)
    body["aggregation"] = {"type": "sum", "key": "latency"}
    answer = staff_client.post(
        reverse("admin:meters_meter_preview"), body, content_type="application/json"
    ).json()
    assert answer["distinct_values"] is None
    body["aggregation"] = {"type": "unique_count"}
    response = staff_client.post(
        reverse("admin:meters_meter_preview"), body, content_type="application/json"
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["aggregation.key"]


def test_the_form_offers_both_and_saves_them_through_the_meter_service(staff_client):
    html = staff_client.get(reverse("admin:meters_meter_add")).content.decode()
    assert '<option value="unique_count">' in html
    assert '<option value="min">' in html
    for kind, key in (("unique_count", "user_id"), ("min", "latency")):
        response = staff_client.post(
            reverse("admin:meters_meter_add"),
            {
                "name": f"{kind} meter",
                "description": "",
                "event_name": NAME,
                "aggregation_type": kind,
                "aggregation_key": key,
                "measurement_unit": "units",
                "filter": "",
            },
        )
        assert response.status_code == 302, response.content
        meter = Meter.objects.get(name=f"{kind} meter")
        assert (meter.aggregation_type, meter.aggregation_key) == (kind, key)


def test_the_form_refuses_unique_count_without_a_key_next_to_the_key_field(staff_client):
    response = staff_client.post(
        reverse("admin:meters_meter_add"),
        {
            "name": "Users",
            "event_name": NAME,
            "aggregation_type": "unique_count",
            "aggregation_key": "",
            "measurement_unit": "users",
            "filter": "",
        },
    )
    assert response.status_code == 200
    assert response.context["form"].errors["aggregation_key"]
    assert not Meter.objects.exists()


def read_csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_analytics_tabs_chart_and_exports_of_a_unique_count_meter(events, staff_client):
    now = events
    meter = make_meter("Users", NAME, "unique_count", "user_id", now=now - timedelta(days=20))
    product = make_product([(meter, "100", 1)], now=now - timedelta(days=20))
    customer = make_customer(customer_id="cus_0")
    subscribe(product, now=now - timedelta(days=10), customer=customer)
    # cus_0 has e0, e2, e4, e6, e8: 7, "7", "ann", then two without a user_id -> 3 users
    # cus_1 has e1, e3, e5, e7, e9: 7.0, true, "ann", "bo", 0.5 -> 5 users
    url = reverse("admin:meters_meter_analytics", args=[meter.pk])
    page = staff_client.get(url, {"range": "7d", "tab": "customers"})
    assert page.status_code == 200
    usage = {row.customer_id: row.usage for row in page.context["customers"]}
    assert {c: (u.quantity, u.event_count, u.skipped_count) for c, u in usage.items()} == {
        "cus_0": (3, 3, 2),
        "cus_1": (5, 5, 0),
    }
    [charge] = next(r for r in page.context["customers"] if r.customer_id == "cus_0").charges
    assert (charge.chargeable_units, charge.amount_minor) == (2, 200)  # 3 users - 1 free
    assert page.context["overview"].total_quantity == 8  # the sum of each customer's count
    assert "sum of each customer's distinct count" in page.content.decode()

    # The chart: bars, a 0 for hours without events; each hour counts its own users.
    points = analytics.usage_series(meter, now - timedelta(hours=12), now, "hour")
    assert analytics.plotly_series(meter, points)["kind"] == "bar"
    assert all(point.quantity is not None for point in points)
    day = analytics.usage_series(meter, now - timedelta(days=2), now + timedelta(hours=1), "month")
    assert sum(point.quantity for point in day) == DISTINCT_USERS

    rows = read_csv(staff_client.get(reverse("admin:meters_meter_events_csv", args=[meter.pk])))
    values = {row["event_id"]: (row["value"], row["skipped"]) for row in rows}
    assert values["e0"] == ("7", "")
    assert values["e2"] == ('"7"', "")
    assert values["e3"] == ("true", "")
    assert values["e6"] == ("", preview.SKIP_MISSING_KEY)
    rows = read_csv(staff_client.get(reverse("admin:meters_meter_customers_csv", args=[meter.pk])))
    assert {(r["customer_id"], r["usage"], r["charge_minor"]) for r in rows} == {
        ("cus_0", "3", "200"),
        ("cus_1", "5", ""),
    }


def test_series_of_a_min_meter_leaves_gaps_where_nothing_was_measured(events):
    now = events
    meter = make_meter("Fastest", NAME, "min", "latency", now=now - timedelta(days=20))
    points = analytics.usage_series(meter, now - timedelta(days=2), now + timedelta(hours=1), "day")
    assert analytics.plotly_series(meter, points)["kind"] == "line"
    assert min(p.quantity for p in points if p.quantity is not None) == Decimal("0.75")
    far = analytics.usage_series(meter, now - timedelta(days=40), now - timedelta(days=30), "day")
    assert all(point.quantity is None for point in far)
