"""Every error under /api/ is `{code, message, errors}` JSON, whatever raised it, and a body over
INGEST_MAX_BODY_BYTES is the README's JSON 413, however it is sent.

A 6 MiB body once answered Django's HTML `400 Bad Request` (RequestDataTooBig, raised when the
view read it), and a chunked body (no Content-Length) reached the view empty.
"""

from __future__ import annotations

import http.client
import io
import json
import sys
from urllib.parse import urlsplit

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client, override_settings

from billing_site.models import ApiKey
from events.models import Event
from products.models import Customer
from tests.conftest import UNLIMITED

pytestmark = pytest.mark.django_db

MiB = 1024 * 1024
INGEST = "/api/events/ingest"


def batch(count: int, padding: int = 0) -> bytes:
    events = [
        {
            "event_id": f"e{i}",
            "customer_id": "cus_1",
            "event_name": "api.call",
            "metadata": {"note": "x" * padding},
        }
        for i in range(count)
    ]
    return json.dumps({"events": events}).encode()


def assert_json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    text = response.content.decode()
    assert "Traceback" not in text
    body = json.loads(text)
    assert body["code"] == code and body["message"] and body["errors"] == [], body
    return body


def test_a_6_mib_body_is_a_json_413_before_it_is_read(api):
    body = batch(1000, padding=500) + b" " * (6 * MiB)
    assert len(body) > 6 * MiB
    response = api.generic("POST", INGEST, body, content_type="application/json")
    answer = assert_json_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert answer["message"] == f"The body is {len(body)} bytes; the limit is {5 * MiB}."
    assert Event.objects.count() == 0


def test_every_api_endpoint_has_the_limit(api):
    body = b'{"email": "a@example.com", "name": "' + b"x" * (5 * MiB) + b'"}'
    response = api.generic("POST", "/api/customers", body, content_type="application/json")
    assert_json_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert Customer.objects.count() == 0


# --- bodies of unknown length --------------------------------------------------------------------


def call_wsgi(body: bytes, raw_key: str, **environ) -> tuple[str, dict, bytes]:
    """The Django application called as gunicorn calls it for `Transfer-Encoding: chunked`:
    no CONTENT_LENGTH, the body already de-chunked, `wsgi.input_terminated` set."""
    base = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": INGEST,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "HTTP_AUTHORIZATION": f"Bearer {raw_key}",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = status, dict(headers)

    # As Django's test client does: the test's transaction must outlive the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        chunks = WSGIHandler()(base | environ, start_response)
        content = b"".join(chunks)
        chunks.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return started["status"], started["headers"], content


def test_a_chunked_body_that_grows_too_large_is_a_json_413(api_key):
    body = batch(1000, padding=500) * 10
    assert len(body) > 5 * MiB
    status, headers, content = call_wsgi(body, api_key)
    assert status.startswith("413")
    assert headers["Content-Type"] == "application/json"
    assert json.loads(content)["code"] == "PAYLOAD_TOO_LARGE"
    assert Event.objects.count() == 0


def test_a_chunked_body_within_the_limit_is_read_and_ingested(api_key):
    """Django's WSGI request reads no body without a Content-Length; it used to reach the view
    empty (400 INVALID_JSON)."""
    status, _, content = call_wsgi(batch(3), api_key)
    assert status.startswith("200"), content
    assert json.loads(content) == {"ingested_count": 3}
    assert Event.objects.count() == 3


def test_a_chunked_body_the_server_cannot_delimit_is_a_json_411(api_key):
    status, _, content = call_wsgi(batch(3), api_key, **{"wsgi.input_terminated": False})
    assert status.startswith("411")
    assert json.loads(content)["code"] == "LENGTH_REQUIRED"
    assert Event.objects.count() == 0


@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    """The production server, with a small limit so the test body is sent whole before the
    answer (a server refusing mid-upload would reset a client still sending)."""
    from tests.faults.processes import database_url, start_gunicorn, stop

    _, raw_key = ApiKey.create(name="chunked", **UNLIMITED)
    env = {
        "DATABASE_URL": database_url(application_name="chunked"),
        "INGEST_MAX_BODY_BYTES": "4000",
    }
    log_path = tmp_path / "gunicorn.log"
    server, url = start_gunicorn(env, log_path, workers=1)
    try:
        yield url, raw_key
    finally:
        stop(server)
        print(f"--- gunicorn log ---\n{log_path.read_text(errors='replace')}")


def post_chunked(url: str, raw_key: str, body: bytes) -> tuple[int, str, bytes]:
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        pieces = (body[i : i + 500] for i in range(0, len(body), 500))
        connection.request(
            "POST",
            INGEST,
            body=pieces,
            headers={"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_gunicorn_chunked_bodies_are_read_and_bounded(gunicorn):
    url, raw_key = gunicorn
    status, content_type, content = post_chunked(url, raw_key, batch(3))
    assert (status, json.loads(content)) == (200, {"ingested_count": 3}), content
    too_large = batch(60)
    assert len(too_large) > 4000
    status, content_type, content = post_chunked(url, raw_key, too_large)
    assert (status, content_type) == (413, "application/json"), content
    assert json.loads(content)["code"] == "PAYLOAD_TOO_LARGE"
    assert Event.objects.count() == 3


# --- JSON for every error ------------------------------------------------------------------------


def test_an_unknown_api_path_is_a_json_404(api):
    for path in ("/api/nope", "/api/", "/api/meters/x/y/z"):
        assert_json_error(api.get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", INGEST),
        ("DELETE", "/api/events"),
        ("POST", "/api/invoices"),
        ("PUT", "/api/docs"),
        ("DELETE", "/api/schema"),
    ],
)
def test_a_wrong_method_is_a_json_405(api, method, path):
    response = api.generic(method, path)
    assert_json_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response["Allow"] or "POST" in response["Allow"]


@override_settings(ALLOWED_HOSTS=["testserver"])
def test_djangos_own_400_is_json_under_api():
    response = Client().get("/api/events", HTTP_HOST="evil.example")
    assert_json_error(response, 400, "BAD_REQUEST")
    assert Client().get("/admin/login/", HTTP_HOST="evil.example").status_code == 400  # HTML


def test_an_unexpected_error_is_a_json_500_without_a_trace(api, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("a bug, with secrets in its traceback")

    monkeypatch.setattr("events.api.IngestView.post", crash)
    api.raise_request_exception = False
    response = api.post(INGEST, batch(1), content_type="application/json")
    body = assert_json_error(response, 500, "INTERNAL_ERROR")
    assert "secrets" not in response.content.decode() and "RuntimeError" not in body["message"]
