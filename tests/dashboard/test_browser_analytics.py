"""In a real browser: the meter analytics page's three tabs and the staff home page. The chart's
data points, the listed events and the per-customer usage and charge are checked against
expectations computed here from the events this test sent."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.contrib.admin.utils import quote
from django.utils import timezone

from tests.dashboard.browser import screenshot, skip_without_chromium
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_meter, make_product, subscribe

skip_without_chromium()

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PRICE = Decimal("0.5")  # cents per token
FREE = 100
EU = {"conjunction": "and", "clauses": [{"key": "region", "operator": "equals", "value": "eu"}]}


@pytest.fixture
def usage(transactional_db):
    """Tokens (sum over region eu) priced per unit after a free threshold; two subscribers, one
    customer id with no customer, and events the meter must not count."""
    now = timezone.now()
    meter = make_meter("Tokens", "llm.request", "sum", "tokens", EU, now=now - timedelta(days=20))
    product = make_product([(meter, str(PRICE), FREE)], now=now - timedelta(days=20), name="Pro")
    ada = subscribe(product, now=now - timedelta(days=10), customer=make_customer(name="Ada"))
    bob = subscribe(
        product, now=now - timedelta(days=10), customer=make_customer(name="Bob", email="b@x.io")
    )
    plan = [  # (event id, customer, hours ago, metadata)
        ("a-1", ada.customer_id, 2, {"region": "eu", "tokens": 40}),
        ("a-2", ada.customer_id, 30, {"region": "eu", "tokens": 75}),
        ("a-3", ada.customer_id, 31, {"region": "us", "tokens": 999}),
        ("a-4", ada.customer_id, 80, {"region": "eu", "tokens": "12"}),
        ("a-5", ada.customer_id, 100, {"region": "eu", "tokens": 33}),
        ("b-1", bob.customer_id, 5, {"region": "eu", "tokens": 150}),
        ("b-2", bob.customer_id, 52, {"region": "eu", "tokens": 151}),
        ("b-3", bob.customer_id, 140, {"region": "eu"}),
        ("u-1", "cus_not_yet", 8, {"region": "eu", "tokens": 9}),
        ("old", ada.customer_id, 24 * 9, {"region": "eu", "tokens": 5000}),
    ]
    ingest_events(
        [
            event(eid, cid, "llm.request", timestamp=now - timedelta(hours=h), metadata=md)
            for eid, cid, h, md in plan
        ]
        + [event("other", ada.customer_id, "llm.response", metadata={"region": "eu", "tokens": 1})],
        now=now,
    )
    return {
        "now": now,
        "meter": meter,
        "ada": ada.customer_id,
        "bob": bob.customer_id,
        "plan": plan,
    }


def matched(usage, days: int = 7) -> list[tuple]:
    """The plan's events the meter matches in the last `days`, newest first (plain Python)."""
    rows = [row for row in usage["plan"] if row[2] < 24 * days and row[3].get("region") == "eu"]
    return sorted(rows, key=lambda row: row[2])


def tokens(metadata: dict) -> Decimal | None:
    value = metadata.get("tokens")
    return Decimal(value) if isinstance(value, int) and not isinstance(value, bool) else None


def test_three_tabs_show_the_chart_events_and_customers(live_server, page, staff_login, usage):
    meter, now = usage["meter"], usage["now"]
    expected_events = matched(usage)
    by_day: dict[str, Decimal] = defaultdict(Decimal)
    by_customer: dict[str, Decimal] = defaultdict(Decimal)
    for _, customer_id, hours_ago, metadata in expected_events:
        if tokens(metadata) is not None:
            moment = now - timedelta(hours=hours_ago)
            day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
            by_day[day.isoformat()] += tokens(metadata)
            by_customer[customer_id] += tokens(metadata)

    staff_login(page, live_server, "/admin/meters/meter/")
    page.get_by_role("link", name="Analytics").click()  # linked from the meter list
    page.wait_for_url(f"**/admin/meters/meter/{quote(meter.pk)}/analytics/")
    page.get_by_role("link", name="7d", exact=True).click()
    page.wait_for_url("**range=7d*")

    # Overview: the chart has one point per day of the range, our daily sums and zeros elsewhere.
    page.wait_for_function("() => document.getElementById('usage-chart').data !== undefined")
    chart = page.evaluate(
        "() => { const t = document.getElementById('usage-chart').data[0];"
        " return {x: Array.from(t.x), y: Array.from(t.y), type: t.type}; }"
    )
    assert chart["type"] == "bar"
    assert len(chart["x"]) in (7, 8)
    points = dict(zip(chart["x"], chart["y"], strict=True))
    assert {x: y for x, y in points.items() if y} == {x: float(y) for x, y in by_day.items()}
    expect(page.locator("#total-usage")).to_have_text(str(sum(by_customer.values())))
    expect(page.locator("#product-charges")).to_contain_text("Pro")
    expect(page.locator("#as-of")).to_contain_text("Rollup lag")
    screenshot(page, "analytics-overview")

    # Events: exactly the matched events, newest first.
    page.click("#tab-link-events")
    expect(page.locator("#tab-events")).to_be_visible()
    expect(page.locator("#tab-overview")).to_be_hidden()
    listed = page.locator("#events-table tbody td.event-id").all_inner_texts()
    assert listed == [row[0] for row in expected_events]
    expect(page.locator("#events-table tbody tr.skipped")).to_have_count(2)  # "12" and no tokens
    screenshot(page, "analytics-events")

    page.fill("#events-customer", usage["bob"])
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**customer=*")
    listed = page.locator("#events-table tbody td.event-id").all_inner_texts()
    assert listed == [row[0] for row in expected_events if row[1] == usage["bob"]]

    # Customers: usage and the charge at current prices, computed here from the plan.
    page.click("#tab-link-customers")
    rows = page.locator("#customers-table tbody tr")
    shown = {
        row.get_attribute("data-customer"): (
            row.locator("td.usage").inner_text(),
            row.locator("td.charge").inner_text(),
        )
        for row in rows.all()
    }
    expected_rows = {}
    for customer_id, quantity in by_customer.items():
        charge = "—"
        if customer_id != "cus_not_yet":  # no subscription, so nothing to charge
            amount = (max(quantity - FREE, 0) * PRICE).quantize(Decimal(1), ROUND_HALF_UP)
            charge = f"{amount / 100:.2f} USD"
        expected_rows[customer_id] = (str(quantity), charge)
    assert shown == expected_rows
    assert list(shown) == sorted(by_customer, key=lambda c: -by_customer[c])  # by usage
    page.locator("#customers-table thead a[data-sort=usage]").click()
    page.wait_for_url("**sort=*")
    order = page.locator("#customers-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.customer)"
    )
    assert order == sorted(by_customer, key=lambda c: by_customer[c])  # flipped to ascending
    screenshot(page, "analytics-customers")


def test_staff_home_page(live_server, page, staff_login, usage):
    staff_login(page, live_server, "/admin/")
    page.locator("#staff-dashboard-link").click()
    page.wait_for_url("**/admin/dashboard/")
    page.wait_for_function("() => document.getElementById('ingestion-chart').data !== undefined")
    hourly = page.evaluate("() => Array.from(document.getElementById('ingestion-chart').data[0].y)")
    assert len(hourly) == 24 and sum(hourly) == len(usage["plan"]) + 1
    expect(page.locator("#unknown-customers")).to_contain_text("cus_not_yet")
    expect(page.locator("#unknown-events")).to_have_text("1")
    usage_chart = page.evaluate(
        "() => document.getElementById('usage-chart-1').data.map(t => t.name)"
    )
    assert usage_chart == ["Tokens"]
    screenshot(page, "dashboard-home")


def test_staff_home_draws_each_meter_on_its_own_axis(live_server, page, staff_login, usage):
    """Tokens in the thousands must not flatten a meter counting a few calls to zero: each meter
    gets its own chart, y axis in its own unit and scaled to its own values."""
    now = usage["now"]
    calls = make_meter("Calls", "api.call", now=now - timedelta(days=5))
    big = make_meter("Big tokens", "llm.big", "sum", "tokens", now=now - timedelta(days=5))
    # The three calls fall on one UTC day whatever the time of day, so the daily maximum is 3.
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first_call = max(day_start, now - timedelta(hours=1))
    ingest_events(
        [
            event(f"c{i}", usage["ada"], "api.call", timestamp=first_call + timedelta(seconds=i))
            for i in range(3)
        ]
        + [
            event(
                "t1",
                usage["ada"],
                "llm.big",
                timestamp=now - timedelta(hours=2),
                metadata={"tokens": 5_000_000},
            )
        ],
        now=now,
    )
    staff_login(page, live_server, "/admin/dashboard/")
    page.wait_for_function(
        "() => document.querySelectorAll('.usage-chart').length === 3 && "
        "Array.from(document.querySelectorAll('.usage-chart')).every(n => n._fullLayout)"
    )
    charts = page.evaluate(
        """() => Array.from(document.querySelectorAll('.usage-chart')).map(n => ({
            names: n.data.map(t => t.name),
            max: Math.max(...Array.from(n.data[0].y)),
            top: n._fullLayout.yaxis.range[1],
            title: n._fullLayout.yaxis.title.text,
        }))"""
    )
    by_name = {chart["names"][0]: chart for chart in charts}
    assert all(len(chart["names"]) == 1 for chart in charts)
    assert set(by_name) == {"Tokens", "Calls", "Big tokens"}
    assert by_name["Calls"]["max"] == 3
    for chart in charts:  # each axis fits its own values, not the largest meter's
        assert chart["max"] <= chart["top"] <= 2 * max(chart["max"], 1), chart
        assert chart["title"] == "units"
    assert calls.measurement_unit == big.measurement_unit == "units"
    screenshot(page, "dashboard-home-per-meter")
