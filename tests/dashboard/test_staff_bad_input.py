"""Staff pages answer bad input with a 4xx (or a clamped value), never a 500: dates at the ends
of the calendar, huge ranges and page numbers, NUL characters in any admin query parameter and
NUL or lone surrogates in the meter preview. A walk over every admin list and the custom pages."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_meter, make_product, subscribe

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"
NUL = "\x00"


@pytest.fixture
def client(db) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-12345678")
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.fixture
def meter(db):
    now = timezone.now()
    meter = make_meter("Tokens", "llm.request", "sum", "tokens", now=now - timedelta(days=3))
    product = make_product([(meter, "1", 0)], now=now - timedelta(days=3))
    customer = subscribe(product, now=now - timedelta(days=2), customer=make_customer()).customer
    ingest_events(
        [event("e1", customer.customer_id, "llm.request", metadata={"tokens": 5})], now=now
    )
    return meter


ANALYTICS_QUERIES = [
    {"end": "0001-01-02"},
    {"end": "0001-01-01T00:00"},
    {"start": "0001-01-01", "end": "9999-12-31T23:59", "granularity": "hour"},
    {"start": "0001-01-01", "granularity": "hour"},
    {"start": "9999-12-31T23:59", "granularity": "month"},
    {"end": "9999-12-31T23:59"},
    {"page": HUGE, "tab": "events"},
    {"page": "-1"},
    {"customer": NUL, "tab": "events"},
    {"range": NUL},
    {"sort": NUL},
]


def test_meter_analytics_and_exports_take_any_range_and_page(client, meter):
    for name in (
        "admin:meters_meter_analytics",
        "admin:meters_meter_events_csv",
        "admin:meters_meter_customers_csv",
    ):
        url = reverse(name, args=[quote(meter.pk)])
        for query in ANALYTICS_QUERIES:
            response = client.get(url, query)
            if response.streaming:
                b"".join(response.streaming_content)  # the export's queries run while streaming
            assert response.status_code < 500, (name, query)


def test_a_huge_range_draws_a_bounded_chart(client, meter):
    url = reverse("admin:meters_meter_analytics", args=[quote(meter.pk)])
    response = client.get(url, {"start": "0001-01-01", "end": "9999-12-31", "granularity": "hour"})
    assert response.status_code == 200
    from meters.analytics import MAX_CHART_POINTS

    assert len(response.context["series"]["x"]) <= MAX_CHART_POINTS


def test_a_huge_page_number_is_an_empty_page(client, meter):
    url = reverse("admin:meters_meter_analytics", args=[quote(meter.pk)])
    response = client.get(url, {"page": HUGE, "tab": "events"})
    assert response.status_code == 200
    assert response.context["events"] == []


@pytest.mark.parametrize(
    "draft",
    [
        {"event_name": "llm\x00request", "aggregation": {"type": "count"}},
        {"event_name": "llm\ud800", "aggregation": {"type": "count"}},
        {"event_name": "llm.request", "aggregation": {"type": "sum", "key": "to\x00kens"}},
        {"event_name": "llm.request", "aggregation": {"type": "sum", "key": "\udfff"}},
        {
            "event_name": "llm.request",
            "aggregation": {"type": "count"},
            "filter": {
                "conjunction": "and",
                "clauses": [{"key": "k", "operator": "equals", "value": "a\x00b"}],
            },
        },
    ],
)
def test_the_preview_refuses_unstorable_characters_by_field(client, meter, draft):
    # json.dumps writes "\ud800" as an escape, exactly what a browser's JSON.stringify sends.
    response = client.post(
        reverse("admin:meters_meter_preview"), json.dumps(draft), content_type="application/json"
    )
    assert response.status_code == 422, response.content
    assert response.json()["errors"][0]["field"]


def admin_lists() -> list[tuple[str, admin.ModelAdmin]]:
    return [
        (reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"), model_admin)
        for model, model_admin in admin.site._registry.items()
    ]


def test_every_admin_list_refuses_nul_in_any_query_parameter(client, meter):
    for url, model_admin in admin_lists():
        params = ["q", "p", "o", "e", "_to_field"]
        for spec in model_admin.list_filter:
            field = spec[0] if isinstance(spec, tuple) else spec
            params.append(getattr(field, "parameter_name", None) or f"{field}__exact")
            if isinstance(field, str):
                params.append(field)
        if model_admin.date_hierarchy:
            params.append(f"{model_admin.date_hierarchy}__year")
        for param in params:
            response = client.get(url, {param: NUL})
            assert response.status_code < 500, (url, param)
        assert client.get(url, {"p": HUGE}).status_code < 500, url
        assert client.get(url, {"q": "x" + NUL}).status_code < 500, url


def test_nul_in_an_admin_query_parameter_is_a_400_naming_it(client):
    response = client.get(reverse("admin:events_event_changelist"), {"event_name": NUL})
    assert response.status_code == 400
    assert b"event_name" in response.content


def test_nul_in_an_admin_path_is_a_404(client):
    url = reverse("admin:products_customer_change", args=["cus" + NUL])
    assert client.get(url).status_code == 404
    assert (
        client.get(reverse("admin:meters_meter_analytics", args=["mtr" + NUL])).status_code == 404
    )
