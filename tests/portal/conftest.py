"""The browser fixtures of the dashboard tests (headless Chromium, a page that fails the test on
any JavaScript error), for the portal's browser tests."""

from tests.dashboard.conftest import browser, page  # noqa: F401
