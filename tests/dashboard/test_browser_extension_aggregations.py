"""In a real browser: the meter builder offers unique_count and min, shows the key field for both
(it hides it for count only), and its live preview shows the distinct values a unique_count
meter would count, typed (checked against plain Python over the events this test sent)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing_site.jsonutil import exact_dumps
from meters.models import Meter
from products.billing import ingest_events as ingest
from tests.dashboard.browser import screenshot, skip_without_chromium
from tests.factories import event
from tests.meters.oracle import typed_value

skip_without_chromium()

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NAME = "app.opened"
USERS = [1, Decimal("1.0"), "1", True, "ann", "ann", None, "bo", Decimal("2.50"), 2.5]


@pytest.fixture
def events(transactional_db):
    now = timezone.now()
    batch = [
        event(
            f"evt-{i}",
            f"cus_{i % 3}",
            NAME,
            timestamp=now - timedelta(hours=i + 1),
            metadata={} if user is None else {"user_id": user, "latency": i},
        )
        for i, user in enumerate(USERS)
    ]
    ingest(exact_dumps({"events": batch}, default=_decimal).encode(), now=now)


def _decimal(value):
    if isinstance(value, float):
        return Decimal(repr(value))
    raise TypeError(value)


def test_builder_offers_unique_count_and_min_and_previews_distinct_values(
    live_server, page, staff_login, events
):
    distinct = len({typed_value(user) for user in USERS if user is not None})
    assert distinct == 6  # 1 (= 1.0), "1", true, "ann", "bo", 2.5 (= 2.50)

    staff_login(page, live_server, "/admin/meters/meter/add/")
    options = page.locator("#id_aggregation_type option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    assert {"unique_count", "min"} <= set(options)
    page.fill("#id_name", "Active users")
    page.fill("#id_event_name", NAME)
    page.fill("#id_measurement_unit", "users")
    expect(page.locator(".field-aggregation_key")).to_be_hidden()
    expect(page.locator("#preview-distinct-stat")).to_be_hidden()

    page.select_option("#id_aggregation_type", "min")
    expect(page.locator(".field-aggregation_key")).to_be_visible()
    page.fill("#id_aggregation_key", "latency")
    expect(page.locator("#preview")).to_have_attribute("data-state", "ready")
    expect(page.locator("#preview-skipped-missing")).to_have_text("1")
    expect(page.locator("#preview-distinct-stat")).to_be_hidden()

    page.select_option("#id_aggregation_type", "unique_count")
    expect(page.locator(".field-aggregation_key")).to_be_visible()
    page.fill("#id_aggregation_key", "user_id")
    expect(page.locator("#preview")).to_have_attribute("data-state", "ready")
    expect(page.locator("#preview-distinct-stat")).to_be_visible()
    expect(page.locator("#preview-distinct")).to_have_text(str(distinct))
    expect(page.locator("#preview-contributing")).to_have_text(str(len(USERS) - 1))
    expect(page.locator("#preview-skipped-missing")).to_have_text("1")
    # The sample shows each value as JSON: the string "1" is not the number 1.
    values = page.locator("#preview-sample tbody td.value").all_inner_texts()
    assert values[:4] == ["1", "1.0", '"1"', "true"]
    screenshot(page, "meter-builder-unique-count")

    page.click("input[name=_save]")
    page.wait_for_url("**/analytics/")
    meter = Meter.objects.get(name="Active users")
    assert (meter.aggregation_type, meter.aggregation_key) == ("unique_count", "user_id")
