"""Rate limits: per API key (per IP without one), shared through Redis, exact under concurrency."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from rest_framework.test import APIClient

from billing_site.api import ratelimit
from billing_site.api.ratelimit import REDIS_KEY_PREFIX, Limits, RedisLimiter
from billing_site.models import ApiKey
from events.models import Event
from tests import utils as test_utils

TEST_REDIS_URL = "redis://127.0.0.1:6379/14"
INGEST = "/api/events/ingest"
BODY = {"events": [{"event_id": "r1", "customer_id": "c", "event_name": "n"}]}


def redis_or_skip():
    """A client for REDIS_URL (default db 14), with the limiter's counters cleared."""
    import redis

    url = os.environ.get("REDIS_URL") or TEST_REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"Redis is not reachable at {url}")
    for key in client.scan_iter(match=REDIS_KEY_PREFIX + "*", count=1000):
        client.delete(key)
    return url, client


@pytest.fixture
def redis_client():
    url, client = redis_or_skip()
    yield client
    client.close()


@pytest.fixture(params=["redis", "in_process"])
def backend(request, settings):
    """Each limit test runs against Redis and against the in-process fallback."""
    if request.param == "redis":
        url, client = redis_or_skip()
        settings.REDIS_URL = url
        yield lambda: client.time()[0] + client.time()[1] / 1e6
        client.close()
    else:
        settings.REDIS_URL = ""
        yield time.time


def start_of_a_window(clock, length: float = 1.0, margin: float = 0.05) -> None:
    """Sleep until just after the limiter's clock starts a new window of `length` seconds."""
    time.sleep(length - clock() % length + margin)


def client_with_key(**limits) -> tuple[APIClient, ApiKey]:
    api_key, raw_key = ApiKey.create(name="limited", **limits)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client, api_key


def rate_headers(response) -> tuple[int, int, int]:
    return (
        int(response["X-RateLimit-Limit"]),
        int(response["X-RateLimit-Remaining"]),
        int(response["X-RateLimit-Reset"]),
    )


@pytest.mark.django_db
def test_the_sixth_request_in_a_second_is_refused_until_the_next_second(backend):
    limited, _ = client_with_key(rate_limit_per_second=5, rate_limit_per_minute=1000)
    other, _ = client_with_key(rate_limit_per_second=5, rate_limit_per_minute=1000)

    start_of_a_window(backend)
    for remaining in (4, 3, 2, 1, 0):
        response = limited.get("/api/events")
        assert response.status_code == 200
        assert rate_headers(response) == (5, remaining, 1)
    refused = limited.get("/api/events")
    assert refused.status_code == 429
    assert refused.json()["code"] == "TOO_MANY_REQUESTS"
    assert "5 requests per second" in refused.json()["message"]
    assert refused["Retry-After"] == "1"
    assert rate_headers(refused) == (5, 0, 1)

    assert other.get("/api/events").status_code == 200  # another key has its own allowance

    time.sleep(int(refused["Retry-After"]))
    again = limited.get("/api/events")
    assert again.status_code == 200
    assert rate_headers(again) == (5, 4, 1)


@pytest.mark.django_db
def test_the_per_minute_limit_holds_across_seconds(backend):
    limited, _ = client_with_key(rate_limit_per_second=0, rate_limit_per_minute=3)
    if 60 - backend() % 60 < 5:  # stay inside one minute window
        start_of_a_window(backend, 60)
    for remaining in (2, 1, 0):
        response = limited.get("/api/events")
        assert response.status_code == 200
        assert rate_headers(response)[:2] == (3, remaining)
    refused = limited.get("/api/events")
    assert refused.status_code == 429
    assert "3 requests per minute" in refused.json()["message"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert int(refused["X-RateLimit-Reset"]) == int(refused["Retry-After"])


@pytest.mark.django_db
def test_the_defaults_apply_to_keys_without_their_own_limits(backend, settings):
    if "API_RATE_LIMIT_PER_SECOND" not in os.environ:
        assert settings.API_RATE_LIMIT_PER_SECOND == 40  # Dodo's tier 0
    if "API_RATE_LIMIT_PER_MINUTE" not in os.environ:
        assert settings.API_RATE_LIMIT_PER_MINUTE == 240
    settings.API_RATE_LIMIT_PER_SECOND, settings.API_RATE_LIMIT_PER_MINUTE = 40, 240
    client, _ = client_with_key()
    start_of_a_window(backend)
    assert rate_headers(client.get("/api/events")) == (40, 39, 1)

    settings.API_RATE_LIMIT_PER_SECOND = 2
    statuses = [client.get("/api/events").status_code for _ in range(2)]
    assert statuses == [200, 429]  # the one above counted: 2 of 2 used


@pytest.mark.django_db
def test_a_refused_request_does_not_reach_the_view(backend):
    client, _ = client_with_key(rate_limit_per_second=0, rate_limit_per_minute=1)
    assert client.get("/api/events").status_code == 200
    response = client.post(INGEST, BODY, format="json")
    assert response.status_code == 429
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_every_api_answer_carries_the_headers(backend):
    client, _ = client_with_key(scope="read_only", rate_limit_per_second=100)
    start_of_a_window(backend)
    answers = [
        client.get("/api/events"),
        client.get("/api/events/missing"),  # 404 from the view
        client.get("/api/no-such-endpoint"),  # 404 from the URL resolver
        client.post(INGEST, BODY, format="json"),  # 403: read-only key
        client.get("/api/events?start=not-a-date"),  # 422 or 400
        APIClient().get("/api/events"),  # 401, limited per IP
    ]
    assert [a.status_code for a in answers][:4] == [200, 404, 404, 403]
    assert answers[4].status_code in (400, 422)
    assert answers[5].status_code == 401
    assert [rate_headers(a)[:2] for a in answers[:5]] == [(100, r) for r in (99, 98, 97, 96, 95)]
    assert int(answers[5]["X-RateLimit-Limit"]) == 20
    staff_page = APIClient().get("/admin/login/")
    assert "X-RateLimit-Limit" not in staff_page


@pytest.mark.django_db
def test_requests_without_a_valid_key_are_limited_per_ip(backend):
    anonymous = APIClient(REMOTE_ADDR="192.0.2.10")
    start_of_a_window(backend)
    statuses = [anonymous.get("/api/events").status_code for _ in range(20)]
    assert statuses == [401] * 20
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer ubk_unknown")  # an invalid key counts too
    refused = anonymous.get("/api/events")
    assert refused.status_code == 429
    assert refused.json()["code"] == "TOO_MANY_REQUESTS"
    assert "without a valid API key" in refused.json()["message"]
    assert rate_headers(refused) == (20, 0, 1)
    assert APIClient(REMOTE_ADDR="192.0.2.11").get("/api/events").status_code == 401

    # A valid key from the same address has its own allowance.
    _, raw_key = ApiKey.create(name="same ip")
    with_key = APIClient(REMOTE_ADDR="192.0.2.10")
    with_key.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert with_key.get("/api/events").status_code == 200


@pytest.mark.django_db
def test_zero_turns_the_limits_off(backend):
    client, _ = client_with_key(rate_limit_per_second=0, rate_limit_per_minute=0)
    responses = [client.get("/api/events") for _ in range(60)]
    assert {r.status_code for r in responses} == {200}
    assert "X-RateLimit-Limit" not in responses[0]


@pytest.mark.django_db
def test_unreachable_redis_fails_open_and_warns(settings, monkeypatch, caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    monkeypatch.setattr(ratelimit, "_limiters", {})
    client, _ = client_with_key(rate_limit_per_second=1, rate_limit_per_minute=1)
    with caplog.at_level(logging.WARNING, logger="billing_site.api.ratelimit"):
        started = time.monotonic()
        responses = [client.post(INGEST, BODY, format="json")] + [
            client.get("/api/events") for _ in range(5)
        ]
        elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 6
    assert "X-RateLimit-Limit" not in responses[0]
    assert Event.objects.count() == 1
    warnings = [r for r in caplog.records if "Redis is unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once, then Redis is left alone for a few seconds
    assert elapsed < 5


def test_the_redis_limiter_is_exact_under_concurrency(redis_client):
    """40 threads, each with its own connection, race for 10 places: exactly 10 get one."""
    url = redis_client.connection_pool.connection_kwargs
    redis_url = f"redis://{url['host']}:{url['port']}/{url['db']}"
    limiters = [RedisLimiter(redis_url) for _ in range(40)]
    now = redis_client.time()[0]
    if now % 60 > 55:  # stay inside one minute window
        time.sleep(61 - now % 60)
    barrier = threading.Barrier(len(limiters))

    def hit(limiter: RedisLimiter) -> bool:
        barrier.wait()
        return limiter.hit("key:concurrency-test", Limits(per_second=0, per_minute=10)).allowed

    with ThreadPoolExecutor(len(limiters)) as pool:
        allowed = list(pool.map(hit, limiters))
    assert allowed.count(True) == 10
    for limiter in limiters:
        limiter.client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn_with_redis(transactional_db, redis_client):
    """The production server with three worker processes sharing the test database and Redis."""
    kwargs = redis_client.connection_pool.connection_kwargs
    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="gunicorn-access-", suffix=".log")[1])
    env = {
        **os.environ,
        "DATABASE_URL": test_utils.test_database_url(),
        "REDIS_URL": f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}",
        "LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "billing_site.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "3",
        "--access-logfile",
        str(log),
        "--access-logformat",
        "%(p)s %(s)s",
    ]
    process = subprocess.Popen(
        command, cwd=test_utils.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                httpx.get(f"{url}/api/schema", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not start")
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.unlink(missing_ok=True)


def test_the_limit_holds_across_worker_processes(gunicorn_with_redis, redis_client):
    url, log = gunicorn_with_redis
    _, raw_key = ApiKey.create(name="shared", rate_limit_per_second=0, rate_limit_per_minute=10)
    headers = {"Authorization": f"Bearer {raw_key}"}
    now = redis_client.time()[0]
    if now % 60 > 50:  # stay inside one minute window
        time.sleep(61 - now % 60)

    def get(_):
        with httpx.Client(timeout=30) as client:
            return client.get(f"{url}/api/events", headers=headers)

    with ThreadPoolExecutor(30) as pool:
        responses = list(pool.map(get, range(30)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [429] * 20
    assert all("Retry-After" in r.headers for r in responses if r.status_code == 429)
    assert sorted(int(r.headers["X-RateLimit-Remaining"]) for r in responses)[-10:] == list(
        range(10)
    )

    time.sleep(0.5)  # let gunicorn flush its access log
    served_by = {
        match.group(1)
        for line in log.read_text().splitlines()
        if (match := re.fullmatch(r"<(\d+)> (200|429)", line.strip()))
    }
    assert len(served_by) >= 2, "the requests were all served by one worker process"


def test_the_sdk_sees_a_rate_limit_error(live_server, transactional_db, settings):
    import dodopayments
    from dodopayments import DodoPayments

    settings.REDIS_URL = ""  # in-process: the live server runs in this process
    _, raw_key = ApiKey.create(name="sdk", rate_limit_per_second=0, rate_limit_per_minute=1)
    with DodoPayments(
        bearer_token=raw_key, base_url=f"{live_server.url}/api", max_retries=0
    ) as client:
        client.usage_events.list()
        with pytest.raises(dodopayments.RateLimitError) as raised:
            client.usage_events.ingest(events=BODY["events"])
    assert raised.value.body["code"] == "TOO_MANY_REQUESTS"
    assert int(raised.value.response.headers["retry-after"]) >= 1
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_payment_provider_webhooks_have_their_own_allowance(backend, settings):
    settings.API_RATE_LIMIT_ANON_PER_SECOND = 2
    settings.API_RATE_LIMIT_PROVIDER_PER_SECOND = 3
    webhook = "/api/providers/stripe/webhook"
    sender = APIClient(REMOTE_ADDR="192.0.2.20")
    start_of_a_window(backend)
    assert [sender.get("/api/events").status_code for _ in range(3)] == [401, 401, 429]

    # The anonymous allowance is spent; the signed webhooks from that address still get in
    # (answered by the view: no provider is configured here), up to a limit of their own.
    statuses = [sender.post(webhook, {}, format="json").status_code for _ in range(4)]
    assert statuses == [409, 409, 409, 429]
