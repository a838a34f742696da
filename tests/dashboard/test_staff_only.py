"""Every dashboard page and JSON endpoint is for staff: a logged-out visitor and a logged-in user
who is not staff are sent to the login page and see no data; staff without a role (no view
permissions) are refused every page, the dashboard home and Plotly's script included."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.factories import event, ingest_events
from tests.products.factories import make_meter

SECRET_EVENT = "evt-only-staff-may-see"


@pytest.fixture
def meter(db):
    now = timezone.now()
    ingest_events([event(SECRET_EVENT, "cus_secret", "api.call")], now=now)
    return make_meter("Calls", "api.call", now=now)


def pages(meter) -> list[tuple[str, str]]:
    """(method, url) of every staff page and endpoint this dashboard adds."""
    return [
        ("get", reverse("staff-dashboard")),
        ("get", reverse("staff-plotly-js")),
        ("get", reverse("admin:meters_meter_changelist")),
        ("get", reverse("admin:meters_meter_add")),
        ("post", reverse("admin:meters_meter_add")),
        ("get", reverse("admin:meters_meter_change", args=[quote(meter.pk)])),
        ("post", reverse("admin:meters_meter_preview")),
        ("get", reverse("admin:meters_meter_analytics", args=[quote(meter.pk)])),
        ("get", reverse("admin:meters_meter_events_csv", args=[quote(meter.pk)])),
        ("get", reverse("admin:meters_meter_customers_csv", args=[quote(meter.pk)])),
    ]


PREVIEW_BODY = '{"event_name": "api.call", "aggregation": {"type": "count"}, "filter": null}'


def request(client: Client, method: str, url: str):
    if method == "post":
        return client.post(url, PREVIEW_BODY, content_type="application/json")
    return client.get(url)


def body(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def assert_sent_to_login(response, url: str) -> None:
    assert response.status_code == 302, url
    assert response["Location"].startswith(reverse("admin:login")), url
    assert SECRET_EVENT.encode() not in body(response)


def test_logged_out_visitors_reach_nothing(meter):
    client = Client()
    for method, url in pages(meter):
        assert_sent_to_login(request(client, method, url), url)


def test_users_who_are_not_staff_reach_nothing(meter):
    user = get_user_model().objects.create_user(username="customer", password="pw-123456789")
    # Even with every meter permission: the admin lets in staff only.
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="meters"))
    client = Client()
    client.force_login(user)
    for method, url in pages(meter):
        assert_sent_to_login(request(client, method, url), url)
    assert not get_user_model().objects.get(pk=user.pk).is_staff


def test_staff_without_a_role_are_refused_every_page(meter):
    user = get_user_model().objects.create_user(
        username="support", password="pw-123456789", is_staff=True
    )
    client = Client()
    client.force_login(user)
    for method, url in pages(meter):
        response = request(client, method, url)
        assert response.status_code == 403, url
        assert SECRET_EVENT.encode() not in body(response)


def test_staff_reach_every_page(meter, staff_client):
    for method, url in pages(meter):
        response = request(staff_client, method, url)
        if method == "post" and url == reverse("admin:meters_meter_add"):
            assert response.status_code == 200  # the form again, with its errors
        else:
            assert response.status_code == 200, url
