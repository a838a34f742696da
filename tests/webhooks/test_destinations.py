"""Webhooks go to https URLs on public addresses only: refused when staff save an endpoint, and
again before each attempt, on the address the attempt connects to (no second lookup that DNS
could answer differently). The receivers here listen on 127.0.0.1, so each test says which
networks it allows (tests/webhooks/conftest.py allows 127.0.0.1/32 and http by default)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError

from tests.webhooks.factories import make_endpoint
from webhooks import destinations, transport
from webhooks.admin import EndpointForm
from webhooks.emit import emit
from webhooks.models import Delivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

PUBLIC_ADDRESS = "93.184.215.14"  # a public address nothing here connects to

REFUSED_AT_SAVE = {
    "http://93.184.215.14/hooks": "plain http is not allowed",
    "https://127.0.0.1/hooks": "127.0.0.1 is a loopback address",
    "https://127.1.2.3:5432/": "a loopback address",
    "https://[::1]/hooks": "::1 is a loopback address",
    "https://localhost/hooks": "localhost resolves to",
    "https://10.1.2.3/hooks": "a private address",
    "https://192.168.0.10/hooks": "a private address",
    "https://172.16.5.4/hooks": "a private address",
    "https://169.254.169.254/latest/meta-data/": "a link-local address",
    "https://[fe80::1]/hooks": "a link-local address",
    "https://[fd00::1]/hooks": "a unique-local address",
    "https://[::ffff:127.0.0.1]/hooks": "an IPv4-mapped address",
    "https://[2002:7f00:1::]/hooks": "embedding a non-public IPv4 address",  # 6to4 of 127.0.0.1
    "https://0.0.0.0/hooks": "the unspecified address",
    "https://224.0.0.1/hooks": "a multicast address",
    "https://100.64.0.1/hooks": "not a public address",  # carrier-grade NAT
    "ftp://example.com/hooks": "only https URLs are allowed, not ftp",
    "ftps://example.com/hooks": "only https URLs are allowed, not ftps",
    "file:///etc/passwd": "only https URLs are allowed, not file",
    "https://user:secret@example.com/hooks": "credentials in the URL are not supported",
}


@pytest.fixture
def production_rules(settings):
    """The defaults: https only, no private network allowed."""
    settings.WEBHOOK_ALLOW_HTTP = False
    settings.WEBHOOK_ALLOWED_PRIVATE_NETWORKS = []


@pytest.fixture
def dns(monkeypatch):
    """A resolver for names under .example.test, whose answers a test can change; others
    resolve as usual. `dns.lookups` counts the lookups of the fake names."""

    class FakeDns:
        def __init__(self):
            self.answers: dict[str, list[str]] = {}
            self.lookups = 0

        def resolve(self, host: str, port: int) -> list[str]:
            if host.endswith(".example.test"):
                self.lookups += 1
                answer = self.answers[host]
                return [answer.pop(0)] if len(answer) > 1 else answer
            return real_resolve(host, port)

    real_resolve = destinations.resolve
    fake = FakeDns()
    monkeypatch.setattr(destinations, "resolve", fake.resolve)
    return fake


@pytest.fixture
def connections(monkeypatch):
    """Every TCP connection the sender opens, by address."""
    opened = []
    real_create_connection = socket.create_connection

    def create_connection(address, *args, **kwargs):
        opened.append(address)
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(transport.socket, "create_connection", create_connection)
    return opened


def _form(url: str) -> EndpointForm:
    return EndpointForm(data={"url": url, "description": "", "enabled": "on"})


def _send_one(django_capture_on_commit_callbacks) -> Delivery:
    with django_capture_on_commit_callbacks(execute=True):
        emit("invoice.created", [{"invoice_id": "inv_1"}])
    return Delivery.objects.get()


@pytest.mark.usefixtures("production_rules")
@pytest.mark.parametrize("url", list(REFUSED_AT_SAVE))
def test_an_endpoint_that_would_reach_a_non_public_place_is_refused_at_save(url):
    form = _form(url)
    assert not form.is_valid()
    [message] = form.errors["url"]
    assert message.startswith("Webhooks cannot be sent to this URL: "), message
    assert REFUSED_AT_SAVE[url] in message, message

    with pytest.raises(ValidationError) as refused:  # the model refuses it too
        WebhookEndpoint(url=url).full_clean()
    assert any(REFUSED_AT_SAVE[url] in m for m in refused.value.message_dict["url"])


@pytest.mark.usefixtures("production_rules")
def test_the_admin_says_why_an_endpoint_is_refused(admin_client):
    page = admin_client.post(
        "/admin/webhooks/webhookendpoint/add/",
        {"url": "https://169.254.169.254/latest/meta-data/", "enabled": "on"},
    )
    assert page.status_code == 200
    assert "169.254.169.254 is a link-local address" in page.content.decode()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.usefixtures("production_rules")
def test_public_https_endpoints_are_accepted(settings, dns):
    dns.answers["hooks.example.test"] = [PUBLIC_ADDRESS]
    for url in (
        f"https://{PUBLIC_ADDRESS}/hooks",
        "https://hooks.example.test/hooks?tenant=1",
        "https://[2606:4700::1111]/hooks",
        "https://not-yet-in-dns.invalid/hooks",  # checked again at every attempt
    ):
        assert _form(url).is_valid(), (url, _form(url).errors)
    assert not _form("http://hooks.example.test/hooks").is_valid()

    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_PRIVATE_NETWORKS = ["10.0.0.0/8"]
    assert _form("http://hooks.example.test/hooks").is_valid()
    assert _form("https://10.1.2.3/hooks").is_valid()
    assert not _form("https://10.0.0.0.example.invalid:99999/").is_valid()  # not a valid port
    assert not _form("https://192.168.0.1/hooks").is_valid()  # not the listed network


@pytest.mark.parametrize(
    "stored_url",
    [
        "RECEIVER",  # the receiver itself, on 127.0.0.1, once 127.0.0.1 is no longer allowed
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:PORT/hooks",
        "ftp://127.0.0.1:PORT/",
        "file:///etc/passwd",
    ],
)
def test_a_url_changed_behind_the_forms_back_is_refused_at_send_without_connecting(
    settings, receiver, connections, django_capture_on_commit_callbacks, stored_url
):
    endpoint = make_endpoint(receiver.url)
    port = receiver.url.split(":")[2].split("/")[0]
    url = receiver.url if stored_url == "RECEIVER" else stored_url.replace("PORT", port)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url=url)  # no validation
    settings.WEBHOOK_ALLOWED_PRIVATE_NETWORKS = []

    delivery = _send_one(django_capture_on_commit_callbacks)

    [attempt] = delivery.attempts.all()
    assert attempt.error.startswith("refused address: "), attempt.error
    assert (attempt.status_code, attempt.response_body, attempt.succeeded) == (None, "", False)
    assert connections == [] and receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is not None  # an ordinary failed attempt, retried


def test_a_name_re_pointed_at_an_internal_address_after_save_is_refused_at_send(
    settings, receiver, dns, connections, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_ALLOWED_PRIVATE_NETWORKS = []
    port = receiver.url.split(":")[2].split("/")[0]
    dns.answers["hooks.example.test"] = [PUBLIC_ADDRESS]
    form = _form(f"http://hooks.example.test:{port}/hooks")
    assert form.is_valid(), form.errors
    form.save()

    dns.answers["hooks.example.test"] = ["127.0.0.1"]  # where the receiver listens
    delivery = _send_one(django_capture_on_commit_callbacks)

    [attempt] = delivery.attempts.all()
    assert attempt.error == (
        "refused address: hooks.example.test resolves to 127.0.0.1, which is a loopback address"
    )
    assert connections == [] and receiver.requests == []


def test_the_attempt_connects_to_the_address_it_checked(
    receiver, dns, connections, django_capture_on_commit_callbacks
):
    """A resolver answering differently the second time (DNS rebinding) gets no second
    question: the checked address is the one connected to, the name goes in Host."""
    port = int(receiver.url.split(":")[2].split("/")[0])
    make_endpoint(f"http://hooks.example.test:{port}/hooks")
    dns.answers["hooks.example.test"] = ["127.0.0.1", "10.255.255.1"]

    delivery = _send_one(django_capture_on_commit_callbacks)

    [attempt] = delivery.attempts.all()
    assert attempt.succeeded, attempt.error
    assert dns.lookups == 1
    assert connections == [("127.0.0.1", port)]
    [request] = receiver.requests
    assert request.headers["host"] == f"hooks.example.test:{port}"


def test_errors_are_categories_and_a_non_http_answer_is_not_kept(
    receiver, django_capture_on_commit_callbacks
):
    """What a receiver that is not an HTTP server (a database, a mail server) says stays out of
    the admin: the attempt shows "invalid HTTP answer", never the bytes it sent."""
    with socket.create_server(("127.0.0.1", 0)) as banner_server:
        port = banner_server.getsockname()[1]

        def answer_with_a_banner():
            client, _ = banner_server.accept()
            with client:
                client.recv(65536)
                client.sendall(b"220 internal-mail ESMTP secret-version-1.2\r\n" * 50)

        thread = threading.Thread(target=answer_with_a_banner, daemon=True)
        thread.start()
        make_endpoint(f"http://127.0.0.1:{port}/hooks")
        delivery = _send_one(django_capture_on_commit_callbacks)
        thread.join(timeout=10)

    [attempt] = delivery.attempts.all()
    assert (attempt.error, attempt.status_code, attempt.response_body) == (
        "invalid HTTP answer",
        None,
        "",
    )

    Delivery.objects.all().delete()
    WebhookEndpoint.objects.all().delete()
    make_endpoint(receiver.url)
    receiver.statuses = [500]
    delivery = _send_one(django_capture_on_commit_callbacks)
    [attempt] = delivery.attempts.all()
    assert (attempt.error, attempt.status_code, attempt.response_body) == ("HTTP 500", 500, "ok")

    Delivery.objects.all().delete()
    WebhookEndpoint.objects.all().delete()
    make_endpoint("https://nowhere.invalid/hooks")  # .invalid never resolves
    delivery = _send_one(django_capture_on_commit_callbacks)
    [attempt] = delivery.attempts.all()
    assert attempt.error == "DNS error: the host name does not resolve"


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def tls_receiver(tmp_path, monkeypatch):
    """An HTTPS receiver on 127.0.0.1 with a certificate for hooks.example.test, trusted here
    (SSL_CERT_FILE); records the server name (SNI) each client asked for."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=hooks.example.test",
            "-addext", "subjectAltName=DNS:hooks.example.test",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server_names: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], server_names
    server.shutdown()
    server.server_close()


def test_tls_names_the_host_and_checks_its_certificate(
    tls_receiver, dns, django_capture_on_commit_callbacks
):
    port, server_names = tls_receiver
    dns.answers["hooks.example.test"] = ["127.0.0.1"]
    dns.answers["other.example.test"] = ["127.0.0.1"]
    make_endpoint(f"https://hooks.example.test:{port}/hooks")
    delivery = _send_one(django_capture_on_commit_callbacks)
    [attempt] = delivery.attempts.all()
    assert (attempt.succeeded, attempt.status_code, attempt.error) == (True, 200, "")
    assert server_names == ["hooks.example.test"]

    # The same server under a name its certificate does not carry, or by its address.
    for url in (f"https://other.example.test:{port}/hooks", f"https://127.0.0.1:{port}/hooks"):
        Delivery.objects.all().delete()
        WebhookEndpoint.objects.all().delete()
        make_endpoint(url)
        delivery = _send_one(django_capture_on_commit_callbacks)
        [attempt] = delivery.attempts.all()
        assert attempt.error.startswith("TLS error: "), (url, attempt.error)
        assert "mismatch" in attempt.error, attempt.error
        assert attempt.status_code is None and not attempt.succeeded
