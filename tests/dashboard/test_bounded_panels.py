"""Staff pages a client can make large: any API key that may ingest can invent customer ids and
event names. The home page's unknown-customer panel is one bounded SQL statement, and the events
list's event-name filter offers a bounded list; neither reads every id or name into Python."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing_site import dashboard
from events import admin as events_admin
from tests.factories import event, ingest_events, make_customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def strangers():
    """30 unknown ids (`cus_u00` has 1 event, `cus_u01` 2, ...) next to two known customers."""
    make_customer(customer_id="cus_a_known")
    make_customer(customer_id="cus_z_known", email="z@example.com")
    plan = {f"cus_u{i:02d}": 1 + i % 7 for i in range(30)}
    events = [event(f"k{i}", "cus_a_known", "api.call") for i in range(40)]
    events += [event(f"z{i}", "cus_z_known", "api.call") for i in range(3)]
    events += [
        event(f"{customer_id}-{n}", customer_id, "api.call")
        for customer_id, count in plan.items()
        for n in range(count)
    ]
    ingest_events(events)
    return plan


def busiest(plan: dict[str, int], n: int) -> list[tuple[str, int]]:
    return sorted(plan.items(), key=lambda item: (-item[1], item[0]))[:n]


def test_the_panel_is_one_query_returning_at_most_the_sample(strangers):
    with CaptureQueriesContext(connection) as queries:
        unknown = dashboard.unknown_customers(sample_size=5)
    assert (unknown.customer_ids, unknown.events) == (30, sum(strangers.values()))
    assert unknown.sample == busiest(strangers, 5)
    assert not unknown.capped and unknown.more == 25
    [query] = queries.captured_queries
    # The totals come from SQL: the statement itself hands back the five rows shown, no more.
    with connection.cursor() as cursor:
        cursor.execute(query["sql"])
        assert len(cursor.fetchall()) == 5


def test_past_the_limit_the_panel_counts_the_first_ids_and_says_there_are_more(strangers):
    unknown = dashboard.unknown_customers(sample_size=5, limit=10)
    first = dict(sorted(strangers.items())[:10])
    assert unknown.capped
    assert (unknown.customer_ids, unknown.events) == (10, sum(first.values()))
    assert unknown.sample == busiest(first, 5)
    exactly = dashboard.unknown_customers(sample_size=5, limit=30)
    assert not exactly.capped and exactly.customer_ids == 30


def test_the_home_page_says_when_there_are_more_unknown_ids(strangers, staff_client, monkeypatch):
    monkeypatch.setattr(dashboard, "UNKNOWN_CUSTOMER_LIMIT", 10)
    page = staff_client.get(reverse("staff-dashboard"))
    html = page.content.decode()
    shown = re.findall(r'\?q=(cus_u\d+)">', html)
    assert len(shown) == dashboard.UNKNOWN_CUSTOMER_SAMPLE
    assert "more than 10 customer ids with no customer" in html
    assert 'id="unknown-capped"' in html


def test_the_event_name_filter_offers_a_bounded_list(db, staff_client, monkeypatch):
    monkeypatch.setattr(events_admin, "EVENT_NAME_FILTER_LIMIT", 50)
    names = [f"name.{i:03d}" for i in range(120)]
    ingest_events([event(f"e{i}", "cus_1", name) for i, name in enumerate(names)])
    url = reverse("admin:events_event_changelist")
    with CaptureQueriesContext(connection) as queries:
        page = staff_client.get(url)
    assert page.status_code == 200
    spec = page.context["cl"].filter_specs[0]
    offered = [choice["display"] for choice in spec.choices(page.context["cl"])][1:]  # "All"
    assert offered == names[:50]
    # No query reads every distinct name (as the admin's default AllValuesFieldListFilter did).
    distinct_names = [
        q["sql"]
        for q in queries.captured_queries
        if 'DISTINCT "events_event"."event_name"' in q["sql"]
    ]
    assert not distinct_names
    # Names past the list are still reachable: by the filter's parameter, and by the search.
    last = staff_client.get(url, {"event_name": names[-1]})
    assert [e.event_id for e in last.context["cl"].result_list] == ["e119"]
    found = staff_client.get(url, {"q": names[-1]})
    assert [e.event_id for e in found.context["cl"].result_list] == ["e119"]
    assert Counter(e.event_name for e in found.context["cl"].result_list) == {names[-1]: 1}


def test_the_event_list_filters_by_date_without_reading_every_events_date(db, staff_client):
    now = timezone.now()
    ingest_events(
        [
            event("recent", "cus_1", "api.call", timestamp=now - timedelta(hours=1)),
            event("old", "cus_1", "api.call", timestamp=now - timedelta(days=20)),
        ]
    )
    url = reverse("admin:events_event_changelist")
    with CaptureQueriesContext(connection) as queries:
        assert staff_client.get(url).status_code == 200
    assert not [q["sql"] for q in queries.captured_queries if "DISTINCT" in q["sql"]]
    week_ago = (now - timedelta(days=7)).date()
    recent = staff_client.get(url, {"timestamp__gte": week_ago.isoformat()})
    assert [e.event_id for e in recent.context["cl"].result_list] == ["recent"]
