"""Shared fixtures: API keys, an authenticated client, the official SDK against a live server."""

from __future__ import annotations

import os

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from billing_site.models import ApiKey

# The suite's billing tests were written for invoices that are final when the period ends: they
# run with no grace period (tests/products/test_grace_period.py sets its own), and so do the
# Celery workers and servers the fault tests start (they inherit the environment).
os.environ["BILLING_GRACE_PERIOD_MINUTES"] = "0"


def pytest_configure(config) -> None:
    """The portal's .mo files are build output: compile them, so a plain `pytest` has them."""
    from portal.management.commands.compile_translations import compile_translations

    compile_translations()


@pytest.fixture(autouse=True)
def _no_grace_period():
    with override_settings(BILLING_GRACE_PERIOD_MINUTES=0):
        yield


# The fixture keys get limits no test reaches, so the default 40/s (shared through Redis when
# REDIS_URL is set) never interferes; tests/billing_site/test_rate_limits.py tests the limits.
UNLIMITED = {"rate_limit_per_second": 1_000_000, "rate_limit_per_minute": 1_000_000}


@pytest.fixture
def api_key(db) -> str:
    _, raw_key = ApiKey.create(name="tests", **UNLIMITED)
    return raw_key


@pytest.fixture
def api(api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


@pytest.fixture
def live_api_key(transactional_db) -> str:
    _, raw_key = ApiKey.create(name="live tests", **UNLIMITED)
    return raw_key


@pytest.fixture
def sdk(live_server, live_api_key):
    """The official `dodopayments` client pointed at this server, as a user would configure it."""
    from dodopayments import DodoPayments

    client = DodoPayments(
        bearer_token=live_api_key,
        base_url=f"{live_server.url}/api",
        max_retries=0,
        _strict_response_validation=True,
    )
    yield client
    client.close()
