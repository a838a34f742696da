"""The fake Stripe (localstripe, from PyPI) for the payment tests: one server per test session on
a free port of 127.0.0.1, emptied before each test; STRIPE_API_BASE points at it. No request
leaves the machine."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.test import override_settings

from tests.dashboard.conftest import browser, page  # noqa: F401 (for the checkout page)
from tests.faults.processes import free_port
from tests.payments.fake_stripe import PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET, FakeStripe

LAUNCHER = Path(__file__).with_name("localstripe_server.py")


def stripe_environment(api_base: str) -> dict[str, str]:
    """The settings of a server or worker process that charges through the fake."""
    return {
        "PAYMENT_PROVIDER": "stripe",
        "STRIPE_API_KEY": SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": api_base,
        "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
    }


@pytest.fixture(scope="session")
def localstripe_url(tmp_path_factory) -> str:
    port = free_port()
    log = (tmp_path_factory.mktemp("localstripe") / "localstripe.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(LAUNCHER), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/v1/customers", auth=(SECRET_KEY, ""), timeout=2)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"localstripe did not start: see {log.name}") from None
            time.sleep(0.1)
    yield url
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    log.close()


@pytest.fixture
def fake_stripe(localstripe_url) -> FakeStripe:
    """The fake, empty, with this server configured to charge through it."""
    fake = FakeStripe(localstripe_url)
    fake.flush()
    with override_settings(
        PAYMENT_PROVIDER="stripe",
        STRIPE_API_KEY=SECRET_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE=localstripe_url,
        STRIPE_PUBLISHABLE_KEY=PUBLISHABLE_KEY,
        # As settings.py derives it from a STRIPE_API_BASE that is not Stripe's.
        STRIPE_JS_URL=f"{localstripe_url}/js.stripe.com/v3/",
    ):
        yield fake
    fake.http.close()
