"""Where the checkout page loads Stripe.js from: Stripe's own in production, the fake's copy
when STRIPE_API_BASE points at one, or STRIPE_JS_URL when given (read as settings.py does, in
a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

READ = "from django.conf import settings; print(settings.STRIPE_JS_URL)"


def stripe_js_url(**env: str) -> str:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "billing_site.settings", **env}
    for name in ("STRIPE_API_BASE", "STRIPE_JS_URL"):
        if name not in env:
            environment.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", READ],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "https://js.stripe.com/v3/"),
        ({"STRIPE_API_BASE": "http://127.0.0.1:8420/"}, "http://127.0.0.1:8420/js.stripe.com/v3/"),
        (
            {"STRIPE_API_BASE": "http://127.0.0.1:8420", "STRIPE_JS_URL": "https://cdn.test/v3/"},
            "https://cdn.test/v3/",
        ),
    ],
)
def test_stripe_js_comes_from_stripe_or_from_the_fake(env, expected):
    assert stripe_js_url(**env) == expected
