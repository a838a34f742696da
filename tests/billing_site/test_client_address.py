"""The address the login throttle and the anonymous API rate limit count by: `REMOTE_ADDR`, or
behind `TRUSTED_PROXIES` the client the proxies forward for. A client writing its own
X-Forwarded-For gets no other count, with or without a trusted proxy in front."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from billing_site.api import ratelimit
from billing_site.client_address import client_ip
from billing_site.models import LoginFailure
from tests.utils import ROOT

PROXY, OTHER_PROXY = "10.0.0.5", "10.0.0.6"
CLIENT, ATTACKER = "198.51.100.7", "203.0.113.9"


def address(remote: str, forwarded: str | None = None) -> str:
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    return client_ip(RequestFactory().get("/", REMOTE_ADDR=remote, headers=headers))


def test_without_trusted_proxies_x_forwarded_for_is_ignored(settings):
    settings.TRUSTED_PROXIES = []
    assert address(ATTACKER, "192.0.2.1") == ATTACKER
    assert address(PROXY, CLIENT) == PROXY


def test_behind_a_trusted_proxy_the_client_it_forwards_for_is_counted(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert address(PROXY, CLIENT) == CLIENT
    # Through two trusted proxies: the one nearest the client saw it.
    assert address(PROXY, f"{CLIENT}, {OTHER_PROXY}") == CLIENT
    # What the client wrote itself lies left of what the proxy appended.
    assert address(PROXY, f"192.0.2.1, 192.0.2.2, {ATTACKER}") == ATTACKER
    assert address(PROXY, f"garbage, {ATTACKER}") == ATTACKER
    # A request that did not come through the proxy: its header is the client's own.
    assert address(ATTACKER, CLIENT) == ATTACKER
    # No header, an empty one, or one that is not an address: the proxy itself.
    assert address(PROXY) == PROXY
    assert address(PROXY, "") == PROXY
    assert address(PROXY, "not-an-address") == PROXY
    # Every hop trusted (a client inside the proxies' network): the leftmost.
    assert address(PROXY, f"10.1.2.3, {OTHER_PROXY}") == "10.1.2.3"


def test_a_single_proxy_address_and_ipv6(settings):
    settings.TRUSTED_PROXIES = [f"{PROXY}/32", "fd00::/8"]
    assert address(PROXY, CLIENT) == CLIENT
    assert address(OTHER_PROXY, CLIENT) == OTHER_PROXY
    assert address("fd00::1", "2001:db8::7") == "2001:db8::7"


def test_a_port_the_proxy_appended_is_not_part_of_the_address(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "fd00::/8"]
    assert address(PROXY, f"{CLIENT}:4711") == CLIENT
    assert address(PROXY, "[2001:db8::7]:443") == "2001:db8::7"
    assert address(PROXY, "[2001:db8::7]") == "2001:db8::7"
    # Two clients behind the proxy on the same port are still two clients.
    assert address(PROXY, f"{ATTACKER}:443") == ATTACKER
    # Through two proxies that both add ports: the trusted hop is walked past as before.
    assert address(PROXY, f"{CLIENT}:4711, {OTHER_PROXY}:80") == CLIENT
    # Not an address with a port: the client's side, as any other garbage.
    for forwarded in (f"{CLIENT}:http", "[2001:db8::7]x", "[2001:db8::7", f"{CLIENT}:"):
        assert address(PROXY, forwarded) == PROXY, forwarded


@pytest.mark.django_db
def test_the_anonymous_rate_limit_counts_by_the_forwarded_client(settings):
    def counter(remote: str, forwarded: str | None = None) -> str:
        headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
        request = RequestFactory().get("/api/events", REMOTE_ADDR=remote, headers=headers)
        return ratelimit.identify(request)[0]

    # Without trusted proxies: a client inventing a new X-Forwarded-For each time is one client.
    settings.TRUSTED_PROXIES = []
    assert {counter(ATTACKER, f"192.0.2.{n}") for n in range(3)} == {counter(ATTACKER)}
    assert counter(PROXY, CLIENT) == counter(PROXY) == f"ip:{PROXY}"
    # Behind the proxy: each client has its own counter, whatever it writes itself.
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert {counter(PROXY, f"192.0.2.{n}, {ATTACKER}") for n in range(3)} == {f"ip:{ATTACKER}"}
    assert counter(PROXY, CLIENT) == f"ip:{CLIENT}"
    assert counter(ATTACKER, CLIENT) == f"ip:{ATTACKER}"


@pytest.mark.django_db
def test_the_login_throttle_counts_by_the_forwarded_client(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.LOGIN_THROTTLE_IP_FAILURES = 2
    settings.LOGIN_THROTTLE_FAILURES = 100
    get_user_model().objects.create_user("alice", password="right-password", is_staff=True)

    def login(remote: str, forwarded: str, username: str, password: str = "wrong") -> int:
        client = Client(REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
        return client.post(
            "/admin/login/", {"username": username, "password": password}
        ).status_code

    settings.TRUSTED_PROXIES = []
    assert login(ATTACKER, "192.0.2.1", "u1") == 200
    assert login(ATTACKER, "192.0.2.2", "u2") == 200
    assert login(ATTACKER, "192.0.2.3", "alice", "right-password") == 429
    LoginFailure.objects.all().delete()

    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert login(PROXY, f"192.0.2.1, {ATTACKER}", "u1") == 200
    assert login(PROXY, f"192.0.2.2, {ATTACKER}", "u2") == 200
    assert login(PROXY, f"192.0.2.3, {ATTACKER}", "u3") == 429
    # Everyone else behind the same proxy still logs in.
    assert login(PROXY, CLIENT, "alice", "right-password") == 302


def test_an_invalid_trusted_proxy_stops_startup_naming_the_setting():
    environment = {**os.environ, "TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"}
    started = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**environment, "DJANGO_SETTINGS_MODULE": "billing_site.settings"},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert started.returncode != 0
    assert "TRUSTED_PROXIES" in started.stderr and "proxy.internal" in started.stderr
