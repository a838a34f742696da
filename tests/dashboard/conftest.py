"""Staff users and clients for the dashboard tests; for the browser tests, headless Chromium
(Playwright), a page that fails the test on any JavaScript error, and a login through the form."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.dashboard.browser import CHROMIUM

STAFF_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_superuser(
        username="staff", email="staff@example.com", password=STAFF_PASSWORD
    )


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in the tests' thread while it is open, and the
    # ORM calls of the tests (and of their database teardown) are still synchronous. Set only
    # for that time, so it never leaks into the subprocesses of other tests.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


def unexpected(message) -> bool:
    """Console errors that mean a broken page. The browser also logs every 4xx as an error: the
    preview's and the price example's 422 (an invalid draft, shown in the page) and the missing
    favicon are expected."""
    if message.type != "error":
        return False
    url = (message.location or {}).get("url", "")
    if url.endswith("/favicon.ico"):
        return False
    drafts = ("/admin/meters/meter/preview/", "/admin/products/product/pricing-example/")
    return not (url.endswith(drafts) and "422" in message.text)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if unexpected(msg) else None)
    yield page
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


@pytest.fixture
def staff_login(transactional_db):
    get_user_model().objects.create_superuser("staff", "staff@example.com", STAFF_PASSWORD)

    def login(page, live_server, next_path: str) -> None:
        page.goto(f"{live_server.url}/admin/login/?next={next_path}")
        page.fill("#id_username", "staff")
        page.fill("#id_password", STAFF_PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}{next_path}*")

    return login
