"""In a real browser: Plotly reads chart labels as pseudo-HTML, so a meter named with markup
would draw a link or bold text in legends, hovers and axis titles. Every chart (staff home,
meter analytics, customer page) shows the name and unit exactly as typed, and draws no link."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.utils import quote
from django.utils import timezone

from meters import services as meter_services
from tests.dashboard.browser import skip_without_chromium
from tests.factories import event, ingest_events, make_customer
from tests.products.factories import make_product, subscribe

skip_without_chromium()

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NAME = '<a href="https://evil.example/">Evil</a> <b>bold</b>'
UNIT = "<i>tok</i> &amp; co"


@pytest.fixture
def evil(transactional_db):
    now = timezone.now()
    meter = meter_services.create_meter(
        name=NAME,
        event_name="llm.request",
        measurement_unit=UNIT,
        aggregation={"type": "count", "key": None},
        filter=None,
        now=now - timedelta(days=3),
    )
    product = make_product([(meter, "1", 0)], now=now - timedelta(days=3), name="Pro")
    customer = make_customer(name="Ada")
    subscribe(product, now=now - timedelta(days=2), customer=customer)
    ingest_events(
        [
            event(f"e{i}", customer.customer_id, "llm.request", timestamp=now - timedelta(hours=i))
            for i in range(1, 4)
        ],
        now=now,
    )
    return {"meter": meter, "customer": customer}


LABELS = """() => {
  const MARKUP = 'svg tspan[style*="bold"], svg tspan[style*="italic"]';
  const charts = Array.from(document.querySelectorAll('.js-plotly-plot'));
  let hoverLinks = 0;
  const hovers = charts.map(node => {
    const trace = node.data.findIndex(t => Array.from(t.y).some(y => y));
    if (trace < 0) return '';
    const point = Array.from(node.data[trace].y).findIndex(y => y);
    window.Plotly.Fx.hover(node, [{curveNumber: trace, pointNumber: point}]);
    const layer = node.querySelector('.hoverlayer');
    const text = layer.textContent;
    hoverLinks += layer.querySelectorAll('a, tspan[style*="bold"]').length;
    window.Plotly.Fx.unhover(node);
    return text;
  });
  const texts = selector => charts.flatMap(
    node => Array.from(node.querySelectorAll(selector)).map(n => n.textContent));
  return {
    charts: charts.length,
    links: hoverLinks + charts.reduce((n, node) => n + node.querySelectorAll('svg a').length, 0),
    markup: charts.reduce((n, node) => n + node.querySelectorAll(MARKUP).length, 0),
    titles: texts('.ytitle'),
    legends: texts('.legendtext'),
    hovers: hovers,
  };
}"""


def labels_on(page, live_server, path: str) -> dict:
    page.goto(f"{live_server.url}{path}")
    page.wait_for_function(
        "() => document.querySelectorAll('.js-plotly-plot').length > 0 && "
        "Array.from(document.querySelectorAll('.js-plotly-plot')).every(n => n.data)"
    )
    return page.evaluate(LABELS)


def test_markup_in_meter_names_and_units_is_shown_as_typed(live_server, page, staff_login, evil):
    staff_login(page, live_server, "/admin/")
    meter, customer = evil["meter"], evil["customer"]
    pages = {
        "home": "/admin/dashboard/",
        "analytics": f"/admin/meters/meter/{quote(meter.pk)}/analytics/?range=7d",
        "customer": f"/admin/products/customer/{quote(customer.customer_id)}/change/",
    }
    for name, path in pages.items():
        found = labels_on(page, live_server, path)
        assert found["links"] == 0, (name, found)
        assert found["markup"] == 0, (name, found)
        assert UNIT in found["titles"] or any(UNIT in t for t in found["titles"]), (name, found)
        meter_hovers = [text for text in found["hovers"] if UNIT in text]
        assert meter_hovers, (name, found)
        for text in found["legends"]:
            assert "<" not in text or NAME in text, (name, found)
    home = labels_on(page, live_server, pages["home"])
    assert any(NAME in text for text in home["hovers"] + home["legends"]), home
