"""The portal in Chromium, in English and German, on a desktop and a phone: every page loads
under the Content-Security-Policy with no violation and no script error, the usage charts are
drawn by Plotly from this server, tables fit the phone's width; screenshots go to artifacts/."""

from __future__ import annotations

import pytest
from django.conf import settings

from products.models import Customer
from tests.dashboard.browser import screenshot, skip_without_chromium
from tests.portal.helpers import make_world, portal_link

skip_without_chromium()

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LISTEN = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""
PAGES = ["", "history/", "invoices/", "credits/", "events/"]
PHONE = {"width": 390, "height": 844}


def _visit(page, url: str) -> None:
    response = page.goto(url)
    assert response.status == 200, url
    assert response.headers["content-security-policy"] == settings.CONTENT_SECURITY_POLICY
    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => window.__cspViolations") == []


def _requests_stay_here(page, live_server) -> list[str]:
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda request: (
            elsewhere.append(request.url)
            if not request.url.startswith((live_server.url, "data:"))
            else None
        ),
    )
    return elsewhere


@pytest.mark.parametrize(("language", "heading"), [("en", "Subscriptions"), ("de", "Abonnements")])
def test_every_portal_page(live_server, page, language, heading):
    world = make_world()
    Customer.objects.filter(pk=world.ada.customer.pk).update(preferred_locale=language)
    page.add_init_script(LISTEN)
    elsewhere = _requests_stay_here(page, live_server)
    link = portal_link(world.ada.customer, return_url="https://app.example.com/account")
    _visit(page, f"{live_server.url}{link}")
    assert page.url == f"{live_server.url}/portal/"
    expect(page.locator("h1").first).to_have_text(heading)
    # Two open periods, one daily chart each, drawn by the Plotly this server serves.
    expect(page.locator(".portal-chart[data-rendered=true] svg.main-svg").nth(1)).to_be_attached()
    expect(page.locator("#return-link")).to_have_attribute(
        "href", "https://app.example.com/account"
    )
    screenshot(page, f"portal-{language}-home")
    for path in PAGES[1:]:
        _visit(page, f"{live_server.url}/portal/{path}")
        screenshot(page, f"portal-{language}-{path.strip('/')}")
    _visit(page, f"{live_server.url}/portal/invoices/")
    page.locator("#invoices a").first.click()
    page.wait_for_load_state("networkidle")
    expect(page.locator("#invoice-total")).to_be_visible()
    screenshot(page, f"portal-{language}-invoice")
    assert elsewhere == []


@pytest.mark.parametrize("language", ["en", "de"])
def test_usable_on_a_phone(live_server, browser, language):
    world = make_world()
    Customer.objects.filter(pk=world.ada.customer.pk).update(preferred_locale=language)
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live_server.url}{portal_link(world.ada.customer)}")
        page.wait_for_load_state("networkidle")
        expect(
            page.locator(".portal-chart[data-rendered=true] svg.main-svg").first
        ).to_be_attached()
        for path in PAGES:
            page.goto(f"{live_server.url}/portal/{path}")
            page.wait_for_load_state("networkidle")
            # Nothing wider than the screen: wide tables scroll inside their own box.
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (path, width)
            screenshot(page, f"portal-{language}-phone-{path.strip('/') or 'home'}")
        assert errors == []
    finally:
        context.close()


def test_logging_out_in_the_browser_ends_the_link(live_server, browser):
    world = make_world()
    link = f"{live_server.url}{portal_link(world.bob.customer)}"
    # Its own page: the refused link's 403 is the expected end, not a broken page.
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(link)
        page.get_by_role("button", name="Log out").click()
        expect(page.locator("h1")).to_have_text("Logged out")
        response = page.goto(link)
        assert response.status == 403
        expect(page.locator("h1")).to_have_text("This link does not work")
        screenshot(page, "portal-en-refused")
    finally:
        context.close()
