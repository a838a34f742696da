"""In a real browser: the product prices page updates each meter's example ("12,500 units cost
...") as the user types, priced by the server's rule (checked against hand computations), and
shows what is wrong with a draft instead."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.admin.utils import quote

from products import services
from tests.dashboard.browser import screenshot, skip_without_chromium
from tests.products.factories import make_meter

skip_without_chromium()

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
NOW = datetime(2026, 4, 1, tzinfo=UTC)


def test_the_example_follows_the_typing(live_server, page, staff_login):
    calls = make_meter("Calls", "api.call", now=NOW)
    product = services.create_product(
        name="Calls plan",
        now=NOW,
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "payment_frequency_interval": "Month",
            "meters": [{"meter_id": calls.id, "price_per_unit": "0.5", "free_threshold": 100}],
        },
    )
    staff_login(page, live_server, f"/admin/products/product/{quote(product.pk)}/pricing/")
    result = page.locator(".example-result")
    # 12,400 chargeable x 0.5 = 6,200.
    expect(result).to_have_text("12,500 units (12,400 after 100 free) cost 62.00 USD")

    page.fill("#id_meter0-price_per_unit", "0")
    page.select_option("#id_meter0-tier_mode", "graduated")
    page.fill("#id_meter0-tiers", "10000 0.1\n5000 0.05")
    expect(result).to_have_attribute("data-state", "invalid")
    expect(result).to_contain_text("tiers[1].up_to")

    page.fill("#id_meter0-tiers", "10000 0.1\n* 0.05")
    # 10,000 x 0.1 + 2,400 x 0.05 = 1,120.
    expect(result).to_contain_text("12,500 units (12,400 after 100 free) cost 11.20 USD")
    page.fill("#id_meter0-example-units", "20100")
    # 10,000 x 0.1 + 10,000 x 0.05 = 1,500, then held at a 1,300 maximum.
    expect(result).to_contain_text("cost 15.00 USD")
    page.fill("#id_meter0-maximum_amount", "1300")
    expect(result).to_contain_text("cost 13.00 USD (maximum_amount applied; 15.00 USD)")
    screenshot(page, "product-prices-live-example")
