"""The meter analytics page: usage for a range (total, per customer, as a series), the charge at
current prices via products.billing.usage_charge, the matched events (filtered, paged, CSV)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone

from meters import analytics
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_meter, make_product, subscribe

EU = {"conjunction": "and", "clauses": [{"key": "region", "operator": "equals", "value": "eu"}]}


@pytest.fixture
def setup(db):
    """Tokens (sum, region eu) priced 0.5 per unit after 100 free, two subscribers and an
    unknown customer id."""
    now = timezone.now()
    meter = make_meter("Tokens", "llm.request", "sum", "tokens", EU, now=now - timedelta(days=20))
    product = make_product([(meter, "0.5", 100)], now=now - timedelta(days=20), name="Pro")
    ada = subscribe(product, now=now - timedelta(days=10), customer=make_customer(name="Ada"))
    bob = subscribe(
        product, now=now - timedelta(days=10), customer=make_customer(name="Bob", email="b@x.io")
    )
    a, b = ada.customer_id, bob.customer_id
    hours = lambda n: now - timedelta(hours=n)  # noqa: E731
    ingest_events(
        [
            event(
                "a1",
                a,
                "llm.request",
                timestamp=hours(26),
                metadata={"region": "eu", "tokens": 100},
            ),
            event(
                "a2", a, "llm.request", timestamp=hours(50), metadata={"region": "eu", "tokens": 50}
            ),
            event(
                "a3", a, "llm.request", timestamp=hours(30), metadata={"region": "us", "tokens": 9}
            ),
            event(
                "a4",
                a,
                "llm.request",
                timestamp=hours(40),
                metadata={"region": "eu", "tokens": "x"},
            ),
            event(
                "b1", b, "llm.request", timestamp=hours(3), metadata={"region": "eu", "tokens": 301}
            ),
            event(
                "u1",
                "cus_unknown",
                "llm.request",
                timestamp=hours(5),
                metadata={"region": "eu", "tokens": 7},
            ),
            event(
                "old",
                a,
                "llm.request",
                timestamp=now - timedelta(days=9),
                metadata={"region": "eu", "tokens": 1000},
            ),
        ],
        now=now,
    )
    return {"now": now, "meter": meter, "product": product, "a": a, "b": b}


def test_usage_and_charges_per_customer(setup):
    meter, now = setup["meter"], setup["now"]
    rows = {
        row.customer_id: row
        for row in analytics.customer_usage(meter, now - timedelta(days=7), now)
    }
    assert {cid: row.usage.quantity for cid, row in rows.items()} == {
        setup["a"]: 150,
        setup["b"]: 301,
        "cus_unknown": 7,
    }
    assert rows[setup["a"]].usage.skipped_count == 1
    # (150 - 100) x 0.5 = 25; (301 - 100) x 0.5 = 100.5, rounded half-up once to 101.
    assert [c.amount_minor for c in rows[setup["a"]].charges] == [25]
    assert [c.amount_minor for c in rows[setup["b"]].charges] == [101]
    assert rows["cus_unknown"].charges == [] and rows["cus_unknown"].customer_name is None

    overview = analytics.overview(meter, list(rows.values()))
    assert (overview.total_quantity, overview.event_count, overview.skipped_count) == (458, 4, 1)
    [total] = overview.product_totals
    assert (total.customers, total.amount_minor, total.display) == (2, 126, "1.26 USD")


def test_series_has_every_period_of_the_range_with_zeros_for_sums(setup):
    meter = setup["meter"]
    start = datetime(2030, 1, 1, 10, 30, tzinfo=UTC)
    points = analytics.usage_series(meter, start, start + timedelta(days=3), "day")
    assert [p.period_start.day for p in points] == [1, 2, 3, 4]
    assert all(p.quantity == 0 for p in points)
    now = setup["now"]
    points = analytics.usage_series(meter, now - timedelta(days=7), now, "day")
    by_day = {p.period_start: p.quantity for p in points if p.quantity}
    expected: dict[datetime, Decimal] = {}
    for hours_ago, tokens in ((26, 100), (50, 50), (3, 301), (5, 7)):
        day = analytics.period_floor(now - timedelta(hours=hours_ago), "day")
        expected[day] = expected.get(day, Decimal(0)) + tokens
    assert by_day == expected


def test_period_floor_matches_postgres_weeks_and_months():
    moment = datetime(2024, 2, 29, 13, 45, tzinfo=UTC)  # a Thursday
    assert analytics.period_floor(moment, "week") == datetime(2024, 2, 26, tzinfo=UTC)
    assert analytics.period_floor(moment, "month") == datetime(2024, 2, 1, tzinfo=UTC)
    assert analytics.next_period(datetime(2024, 2, 1, tzinfo=UTC), "month") == datetime(
        2024, 3, 1, tzinfo=UTC
    )


def test_granularity_coarsens_when_the_chart_would_be_unreadable():
    start = datetime(2020, 1, 1, tzinfo=UTC)
    assert analytics.fitting_granularity(start, start + timedelta(days=90), "hour") == "day"
    assert analytics.fitting_granularity(start, start + timedelta(days=30), "hour") == "hour"
    assert analytics.fitting_granularity(start, start + timedelta(days=5000), "day") == "week"


def test_matched_events_are_paged_newest_first_and_filter_by_customer(setup):
    meter, now = setup["meter"], setup["now"]
    start = now - timedelta(days=7)
    first, more = analytics.matched_events(meter, start, now, page=0, page_size=2)
    second, more_again = analytics.matched_events(meter, start, now, page=1, page_size=2)
    third, last = analytics.matched_events(meter, start, now, page=2, page_size=2)
    assert [e.event_id for e in first + second + third] == ["b1", "u1", "a1", "a4", "a2"]
    assert (more, more_again, last) == (True, True, False)
    assert second[1].skip_reason == "not a number" and second[1].value is None
    only_a, _ = analytics.matched_events(meter, start, now, customer_id=setup["a"])
    assert [e.event_id for e in only_a] == ["a1", "a4", "a2"]


def test_export_reads_in_keyset_batches(setup, monkeypatch):
    monkeypatch.setattr(analytics, "CSV_BATCH", 2)
    meter, now = setup["meter"], setup["now"]
    events = analytics.iter_matched_events(meter, now - timedelta(days=30), now)
    assert [e.event_id for e in events] == ["b1", "u1", "a1", "a4", "a2", "old"]


def test_page_shows_three_tabs_with_the_range_figures(setup, staff_client):
    url = reverse("admin:meters_meter_analytics", args=[quote(setup["meter"].pk)])
    page = staff_client.get(url, {"range": "7d"})
    assert page.status_code == 200
    html = page.content.decode()
    for panel in ("tab-overview", "tab-events", "tab-customers"):
        assert f'id="{panel}"' in html
    assert "Charges at current prices for this range" in html
    assert page.context["overview"].total_quantity == 458
    assert [row.customer_id for row in page.context["customers"]] == [
        setup["b"],
        setup["a"],
        "cus_unknown",
    ]
    assert [e.event_id for e in page.context["events"]] == ["b1", "u1", "a1", "a4", "a2"]


def test_range_presets_and_customer_filter(setup, staff_client):
    url = reverse("admin:meters_meter_analytics", args=[quote(setup["meter"].pk)])
    day = staff_client.get(url, {"range": "24h"})
    assert day.context["granularity"] == "hour"
    assert day.context["overview"].total_quantity == 308
    events = staff_client.get(url, {"range": "7d", "tab": "events", "customer": setup["a"]})
    assert [e.event_id for e in events.context["events"]] == ["a1", "a4", "a2"]
    assert events.context["tab"] == "events"


def test_custom_range(setup, staff_client):
    now = setup["now"]
    url = reverse("admin:meters_meter_analytics", args=[quote(setup["meter"].pk)])
    start = (now - timedelta(hours=27)).strftime("%Y-%m-%dT%H:%M")
    end = (now - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M")
    page = staff_client.get(url, {"start": start, "end": end})
    assert page.context["preset"] == "custom"
    assert page.context["overview"].total_quantity == 107  # a1 (100) and u1 (7)


def test_customers_sort_by_any_column(setup, staff_client):
    url = reverse("admin:meters_meter_analytics", args=[quote(setup["meter"].pk)])
    page = staff_client.get(url, {"range": "7d", "sort": "charge"})
    assert [row.customer_id for row in page.context["customers"]] == [
        "cus_unknown",
        setup["a"],
        setup["b"],
    ]


def read_csv(response) -> list[dict]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_events_csv_lists_the_matched_events(setup, staff_client):
    url = reverse("admin:meters_meter_events_csv", args=[quote(setup["meter"].pk)])
    response = staff_client.get(url, {"range": "7d"})
    assert response["Content-Type"].startswith("text/csv")
    rows = read_csv(response)
    assert [(r["event_id"], r["value"], r["skipped"]) for r in rows] == [
        ("b1", "301", ""),
        ("u1", "7", ""),
        ("a1", "100", ""),
        ("a4", "", "not a number"),
        ("a2", "50", ""),
    ]
    assert rows[0]["metadata"] == '{"region":"eu","tokens":301}'


def test_customers_csv_has_usage_and_charge(setup, staff_client):
    url = reverse("admin:meters_meter_customers_csv", args=[quote(setup["meter"].pk)])
    rows = read_csv(staff_client.get(url, {"range": "7d"}))
    assert [(r["customer_id"], r["usage"], r["charge_minor"], r["currency"]) for r in rows] == [
        (setup["b"], "301", "101", "USD"),
        (setup["a"], "150", "25", "USD"),
        ("cus_unknown", "7", "", ""),
    ]


def test_csv_cells_from_clients_cannot_be_formulas(db, staff_client):
    now = timezone.now()
    meter = make_meter("Calls", "api.call", now=now)
    ingest_events([event("=HYPERLINK(1)", "cus_1", "api.call")], now=now)
    url = reverse("admin:meters_meter_events_csv", args=[quote(meter.pk)])
    [row] = read_csv(staff_client.get(url))
    assert row["event_id"] == "'=HYPERLINK(1)"


def is_number(cell: str) -> bool:
    try:
        Decimal(cell)
    except ArithmeticError:
        return False
    return True


def test_no_csv_cell_can_be_a_formula_whatever_staff_or_clients_named(db, staff_client):
    """The meter's unit, the product names in the charges column, customer names and event
    fields are all text someone typed: none may start a formula in either export."""
    from meters import services as meter_services

    now = timezone.now()
    meter = meter_services.create_meter(
        name="=Tokens",
        event_name="@llm",
        measurement_unit='=HYPERLINK("http://evil.example","x")',
        aggregation={"type": "sum", "key": "tokens"},
        filter=None,
        now=now - timedelta(days=2),
    )
    product = make_product(
        [(meter, "1", 0)], now=now - timedelta(days=2), name="+cmd|' /C calc'!A0"
    )
    customer = make_customer(name="-2+3", customer_id="cus_plain")
    subscribe(product, now=now - timedelta(days=1), customer=customer)
    ingest_events(
        [
            event(
                "=1+1",
                "cus_plain",
                "@llm",
                timestamp=now - timedelta(hours=1),
                metadata={"tokens": -5, "note": "=x"},
            ),
            event(
                "e2", "@unknown", "@llm", timestamp=now - timedelta(hours=2), metadata={"tokens": 3}
            ),
        ],
        now=now,
    )
    for name in ("admin:meters_meter_events_csv", "admin:meters_meter_customers_csv"):
        response = staff_client.get(reverse(name, args=[meter.pk]), {"range": "7d"})
        text = b"".join(response.streaming_content).decode()
        cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
        assert cells, name
        formulas = [
            c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and not is_number(c)
        ]
        assert formulas == [], name
    rows = read_csv(
        staff_client.get(reverse("admin:meters_meter_customers_csv", args=[quote(meter.pk)]))
    )
    by_id = {row["customer_id"]: row for row in rows}
    assert by_id["cus_plain"]["unit"] == '\'=HYPERLINK("http://evil.example","x")'
    assert by_id["cus_plain"]["charges"].startswith("'+cmd|")
    assert by_id["cus_plain"]["usage"] == "-5"  # a number stays a number
    assert by_id["'@unknown"]["usage"] == "3"
