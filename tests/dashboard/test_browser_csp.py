"""In a real browser, under the Content-Security-Policy every HTML page is sent with: the staff
home, a meter's analytics, the meter builder, a customer's page, the printable invoice, the
admin and the API docs (Swagger UI) load, charts are drawn, and the browser reports no
violation (no inline script, no eval, nothing from another host)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.admin.utils import quote

from tests.dashboard.browser import skip_without_chromium
from tests.roles.helpers import make_world

skip_without_chromium()

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs before any page script: every violation the browser reports is kept for the test.
LISTEN = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI + " "
    + (event.sourceFile || "") + ":" + event.lineNumber);
});
"""


@pytest.fixture
def world(transactional_db):
    return make_world()


def visit(page, live_server, path: str) -> list[str]:
    response = page.goto(f"{live_server.url}{path}")
    assert response.status == 200, path
    assert response.headers["content-security-policy"] == settings.CONTENT_SECURITY_POLICY
    page.wait_for_load_state("networkidle")
    return page.evaluate("window.__cspViolations")


def charts_drawn(page, count: int) -> None:
    # A locator (or a wait_for_function given a function, "() => ..."): Playwright compiles a
    # bare expression string with eval in the page, which the policy refuses, rightly.
    expect(page.locator("[data-rendered=true] svg.main-svg").nth(count - 1)).to_be_attached()


def test_staff_pages_work_under_the_policy(live_server, page, staff_login, world):
    page.add_init_script(LISTEN)
    violations = []
    staff_login(page, live_server, "/admin/")
    violations += visit(page, live_server, "/admin/")

    violations += visit(page, live_server, "/admin/dashboard/")
    charts_drawn(page, 3)  # usage of the meter, revenue, ingestion

    meter = quote(world.meter.pk)
    violations += visit(page, live_server, f"/admin/meters/meter/{meter}/analytics/")
    charts_drawn(page, 1)
    page.click("#tab-link-events")  # the tabs are script too
    expect(page.locator("#tab-events")).to_be_visible()

    violations += visit(page, live_server, f"/admin/meters/meter/{meter}/change/")
    expect(page.locator("#filter-builder .fb-group")).to_have_count(1)
    expect(page.locator("#preview")).to_have_attribute("data-state", "ready")  # fetch allowed

    customer = quote(world.subscription.customer_id)
    violations += visit(page, live_server, f"/admin/products/customer/{customer}/change/")
    charts_drawn(page, 1)

    violations += visit(page, live_server, f"/admin/products/invoice/{world.invoice.pk}/print/")
    expect(page.locator("#print-button")).to_be_visible()

    violations += visit(page, live_server, "/admin/meters/meter/")
    violations += visit(page, live_server, "/admin/events/event/")
    assert violations == []


def test_the_login_page_and_the_api_docs_work_under_the_policy(live_server, page, world):
    page.add_init_script(LISTEN)
    violations = visit(page, live_server, "/admin/login/")
    violations += visit(page, live_server, "/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Usage billing API")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    assert violations == []
