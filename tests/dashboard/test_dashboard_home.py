"""The staff home page: usage and billed revenue over time, top customers, the ingestion rate,
events for unknown customers and the rollup lag."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing_site import dashboard
from events.queries import pending_batch_stats
from meters.rollups import roll_up_all_pending
from products.billing import close_period
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_meter, make_product, subscribe


@pytest.fixture
def billed(db):
    """A daily plan at 2.00 a day plus 1 cent per call: three closed days for Ada, one for Bob."""
    now = timezone.now()
    start = now - timedelta(days=3, hours=1)
    meter = make_meter("Calls", "api.call", now=start)
    product = make_product(
        [(meter, "1", 0)], now=start, interval="Day", fixed_price=200, name="Daily"
    )
    ada = subscribe(product, now=start, customer=make_customer(name="Ada"))
    bob = subscribe(
        product,
        now=now - timedelta(days=1, hours=1),
        # An id the admin's URL quoting would misread if links were not quoted ("_3E" is ">").
        customer=make_customer(name="Bob", email="b@x", customer_id="cus_3E_2Fbob"),
    )
    ingest_events(
        [
            event(f"ada-{i}", ada.customer_id, "api.call", timestamp=start + timedelta(hours=i))
            for i in range(30)
        ],
        now=start + timedelta(hours=30),
    )
    ingest_events(
        [event("bob-1", bob.customer_id, "api.call", timestamp=now - timedelta(hours=20))]
    )
    invoices = []
    for subscription in (ada, ada, ada, bob):
        invoices.append(close_period(subscription.subscription_id, now=now))
    return {"now": now, "meter": meter, "ada": ada, "bob": bob, "invoices": invoices}


def test_revenue_by_day_sums_invoices_by_issue_day(billed):
    now = billed["now"]
    days = dashboard.revenue_by_day(start=now - timedelta(days=30), end=now + timedelta(seconds=1))
    # Every invoice was issued by this run of the cycle, so all on today's date:
    # Ada 3 x 2.00 fixed + 24 + 6 calls; Bob 2.00 + 1 call.
    assert [(d.currency, d.amount_minor) for d in days] == [("USD", 600 + 30 + 200 + 1)]
    traces = dashboard.revenue_traces(days, start=now - timedelta(days=2), end=now)
    assert traces[0]["y"][-1] == "8.31"
    assert traces[0]["y"][:-1] == ["0.00", "0.00"]


def test_top_customers_by_invoiced_amount(billed):
    now = billed["now"]
    top = dashboard.top_customers(start=now - timedelta(days=30), end=now + timedelta(seconds=1))
    assert [(t.name, t.invoices, t.amount_minor, t.display) for t in top] == [
        ("Ada", 3, 630, "6.30 USD"),
        ("Bob", 1, 201, "2.01 USD"),
    ]


def test_unknown_customers_are_counted_with_a_few_ids(db):
    make_customer(customer_id="cus_known")
    ingest_events(
        [event(f"k{i}", "cus_known", "api.call") for i in range(3)]
        + [event(f"x{i}", "cus_stranger", "api.call") for i in range(4)]
        + [event("y", "cus_newcomer", "api.call")]
    )
    unknown = dashboard.unknown_customers()
    assert (unknown.customer_ids, unknown.events) == (2, 5)
    assert unknown.sample == [("cus_stranger", 4), ("cus_newcomer", 1)]


def test_ingestion_rate_counts_events_per_hour_for_24_hours(db):
    now = timezone.now()
    ingest_events([event(f"e{i}", "cus_1", "api.call") for i in range(7)], now=now)
    ingest_events([event("late", "cus_1", "api.call")], now=now - timedelta(hours=2))
    hours = dashboard.ingestion_by_hour(now=now)
    assert len(hours) == 24
    assert hours[-1][1] == 7 and hours[-3][1] == 1
    assert sum(count for _, count in hours) == 8


def test_unmetered_event_names(db):
    now = timezone.now()
    make_meter("Calls", "api.call", now=now)
    ingest_events([event("a", "c", "api.call"), event("b", "c", "api.Call"), event("c", "c", "x")])
    assert dashboard.unmetered_event_names() == ["api.Call", "x"]


def test_home_page_shows_the_panels(billed, staff_client):
    ingest_events([event("stray", "cus_stranger", "api.call")])
    batches, events = pending_batch_stats()
    page = staff_client.get(reverse("staff-dashboard"))
    assert page.status_code == 200
    html = page.content.decode()
    assert page.context["unknown"].sample == [("cus_stranger", 1)]
    assert "cus_stranger" in html
    assert page.context["freshness"].pending_events == events > 0
    assert page.context["usage_traces"][0]["name"] == "Calls"
    usage = sum(Decimal(y) for y in page.context["usage_traces"][0]["y"])
    assert usage == 32
    assert [t.name for t in page.context["top_customers"]] == ["Ada", "Bob"]
    [bob_link] = re.findall(r'href="([^"]+)">Bob</a>', html)
    assert staff_client.get(bob_link).context["original"].customer_id == "cus_3E_2Fbob"
    roll_up_all_pending()
    page = staff_client.get(reverse("staff-dashboard"))
    assert page.context["freshness"].pending_events == 0
    assert 'Rollup lag: <span id="rollup-lag">none</span>' in page.content.decode()


def test_admin_index_links_to_the_dashboard(staff_client):
    html = staff_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("staff-dashboard")}"' in html


def test_each_meter_has_its_own_usage_chart(db, staff_client):
    """Meters count in different units (calls, tokens): one chart each, never one shared axis."""
    now = timezone.now()
    make_meter("Calls", "api.call", now=now - timedelta(days=1))
    make_meter("Tokens", "llm.request", "sum", "tokens", now=now - timedelta(days=1))
    html = staff_client.get(reverse("staff-dashboard")).content.decode()
    charts = re.findall(r'<div id="(usage-chart-\d+)" class="[^"]*usage-chart', html)
    assert charts == ["usage-chart-1", "usage-chart-2"]


def test_the_admin_is_branded_usage_billing(staff_client):
    for url in (reverse("admin:index"), reverse("staff-dashboard")):
        html = staff_client.get(url).content.decode()
        assert "<title>" in html and "Usage billing</title>" in html, url
        assert "Django administration" not in html and "Django site admin" not in html, url
    login = Client().get(reverse("admin:login")).content.decode()
    assert "Usage billing" in login and "Django administration" not in login
