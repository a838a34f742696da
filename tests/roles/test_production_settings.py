"""BILLING_ENV=production: `check --deploy` is clean, and startup refuses a missing or weak
SECRET_KEY, missing ALLOWED_HOSTS and DEBUG, naming what to set. Run as an operator would, in a
subprocess with the environment of a deployment."""

from __future__ import annotations

import secrets

import pytest

from tests.utils import manage_py

pytestmark = pytest.mark.django_db

PRODUCTION = {
    "BILLING_ENV": "production",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "billing.example.com",
    "DEBUG": "false",
}


def run(*args: str, **env: str) -> tuple[int, str]:
    process = manage_py(*args, env={**PRODUCTION, **env})
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


def test_check_deploy_is_clean_in_production():
    code, output = run("check", "--deploy", "--fail-level", "WARNING")
    assert code == 0, output
    assert "no issues" in output


def test_production_turns_on_https_and_the_secure_cookies():
    script = (
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS >= 31536000, "
        "s.SECURE_CONTENT_TYPE_NOSNIFF, s.X_FRAME_OPTIONS, s.SECURE_PROXY_SSL_HEADER)"
    )
    code, output = run("shell", "-c", script, SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")
    assert code == 0, output
    assert "True True True True True DENY ('HTTP_X_FORWARDED_PROTO', 'https')" in output


def test_the_redirect_can_be_left_to_the_proxy():
    script = "from django.conf import settings as s; print('redirect', s.SECURE_SSL_REDIRECT)"
    code, output = run("shell", "-c", script, SECURE_SSL_REDIRECT="false")
    assert code == 0, output
    assert "redirect False" in output


@pytest.mark.parametrize(
    "secret_key",
    [
        "",  # unset
        "django-insecure-development-key-set-SECRET_KEY-in-production",  # the development key
        "insecure-development-key-set-SECRET_KEY-in-production",  # the one before it
        "too-short",
    ],
)
def test_production_refuses_to_start_without_a_real_secret_key(secret_key):
    code, output = run("check", SECRET_KEY=secret_key)
    assert code != 0
    assert "ImproperlyConfigured" in output
    assert "SECRET_KEY" in output


def test_production_refuses_to_start_without_allowed_hosts():
    code, output = run("check", ALLOWED_HOSTS="")
    assert code != 0
    assert "ALLOWED_HOSTS" in output


def test_production_refuses_debug():
    code, output = run("check", DEBUG="true")
    assert code != 0
    assert "DEBUG" in output


def test_development_needs_no_secret_key():
    """What ./scripts/demo and ./scripts/test run: no SECRET_KEY, no ALLOWED_HOSTS."""
    code, output = run("check", BILLING_ENV="development", SECRET_KEY="", ALLOWED_HOSTS="")
    assert code == 0, output


def test_check_deploy_warns_about_the_development_key():
    """Deployed without BILLING_ENV and SECRET_KEY, the server runs with the built-in key:
    `check --deploy` must say so (Django's W009), as it does for any insecure key."""
    code, output = run("check", "--deploy", BILLING_ENV="", SECRET_KEY="", ALLOWED_HOSTS="")
    assert "security.W009" in output, output
    code, output = run("check", "--deploy", "--fail-level", "WARNING", BILLING_ENV="")
    assert "security.W009" not in output, output  # a real key: no such warning
