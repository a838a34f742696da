"""Meter ids the admin's URL quoting would misread: the admin writes `_` as `_5F` in its URLs and
reads `_3F` back as `?`, `_24` as `$`, `_3E` as `>`. Every link to a meter (the list's Analytics
link, the CSV buttons, the builder's links, the redirect after saving, the staff home and the
customer page) quotes the id, so each of these meters opens, never a 404."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone

from meters.models import Meter
from tests.dashboard.test_meter_form import form_data
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_product, subscribe

pytestmark = pytest.mark.django_db

IDS = ["mtr_3Fcalls", "mtr_24tokens", "mtr_3E_5Fmixed_2F"]


@pytest.fixture
def meters(db) -> list[Meter]:
    now = timezone.now()
    meters = [
        Meter.objects.create(
            id=meter_id,
            name=f"Meter {index}",
            event_name="api.call",
            measurement_unit="calls",
            aggregation_type="count",
            created_at=now - timedelta(days=2),
            updated_at=now - timedelta(days=2),
        )
        for index, meter_id in enumerate(IDS)
    ]
    product = make_product([(m, "1", 0) for m in meters], now=now - timedelta(days=2))
    customer = make_customer(customer_id="cus_quoted")
    subscribe(product, now=now - timedelta(days=1), customer=customer)
    ingest_events([event("e1", "cus_quoted", "api.call")], now=now)
    return meters


def hrefs(response, pattern: str) -> list[str]:
    html = response.content.decode()
    return [unescape(href) for href in re.findall(rf'href="({pattern}[^"]*)"', html)]


def opens(client, url: str, meter: Meter) -> None:
    response = client.get(url)
    assert response.status_code == 200, url
    if response.streaming:
        assert meter.pk in response["Content-Disposition"], url
    else:
        assert response.context["meter"].pk == meter.pk, url


def test_the_meter_list_links_open_each_meter(meters, staff_client):
    page = staff_client.get(reverse("admin:meters_meter_changelist"))
    links = [h for h in hrefs(page, "/admin/meters/meter/") if h.endswith("/analytics/")]
    assert len(links) == len(meters)
    for link in links:
        meter_id = next(m for m in meters if quote(m.pk) in link)
        opens(staff_client, link, meter_id)


def test_analytics_csv_buttons_and_builder_links_open_the_meter(meters, staff_client):
    for meter in meters:
        analytics = staff_client.get(
            reverse("admin:meters_meter_analytics", args=[quote(meter.pk)])
        )
        csv_links = [h for h in hrefs(analytics, "/admin/meters/meter/") if ".csv" in h]
        assert len(csv_links) == 2
        for link in csv_links:
            opens(staff_client, link, meter)
        builder = staff_client.get(reverse("admin:meters_meter_change", args=[quote(meter.pk)]))
        links = [h for h in hrefs(builder, "/admin/meters/meter/") if quote(meter.pk) in h]
        analytics_links = [h for h in links if h.endswith("/analytics/")]
        assert analytics_links
        for link in analytics_links:
            opens(staff_client, link, meter)
        [history] = [h for h in links if h.endswith("/history/")]
        assert staff_client.get(history).context["object"].pk == meter.pk


def test_saving_a_meter_redirects_to_its_analytics(meters, staff_client):
    meter = meters[0]
    edit = reverse("admin:meters_meter_change", args=[quote(meter.pk)])
    response = staff_client.post(edit, form_data(name="Renamed", event_name="api.call"))
    assert response.status_code == 302
    opens(staff_client, response["Location"], meter)


def test_the_staff_home_and_the_customer_page_link_to_each_meter(meters, staff_client):
    home = staff_client.get(reverse("staff-dashboard"))
    customer = staff_client.get(
        reverse("admin:products_customer_change", args=[quote("cus_quoted")])
    )
    for page in (home, customer):
        links = [h for h in hrefs(page, "/admin/meters/meter/") if "/analytics/" in h]
        assert len(links) == len(meters)
        for meter in meters:
            [link] = [h for h in links if quote(meter.pk) in h]
            opens(staff_client, link, meter)
    [link] = [h for h in hrefs(customer, "/admin/meters/meter/") if quote(IDS[0]) in h]
    assert staff_client.get(link).context["customer"] == "cus_quoted"
