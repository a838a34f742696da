"""`POST /customers/{id}/customer-portal/session` through the official SDK (strict): a link to this
server that opens that customer's portal, for CUSTOMER_PORTAL_SESSION_MINUTES; edited, expired or
logged-out links are refused with a plain 403 page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from django.core import mail
from django.test import Client, override_settings

from portal.models import PortalSession
from portal.sessions import COOKIE_NAME
from tests.factories import make_customer
from tests.portal.helpers import make_world, portal_link

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_link_opens_that_customers_portal(live_server, sdk):
    world = make_world()
    session = sdk.customers.customer_portal.create(
        world.ada.customer.pk, return_url="https://app.example.com/account"
    )
    assert session.link.startswith(f"{live_server.url}/portal/session/")
    with httpx.Client(follow_redirects=True) as browser:
        page = browser.get(session.link)
    assert page.status_code == 200
    assert str(page.url) == f"{live_server.url}/portal/"
    assert "Ada Lovelace" in page.text
    assert world.ada.subscription.pk in page.text
    assert "Bob Builder" not in page.text and world.bob.subscription.pk not in page.text
    assert 'href="https://app.example.com/account"' in page.text
    [stored] = PortalSession.objects.all()
    assert stored.customer_id == world.ada.customer.pk
    # Valid for the configured 60 minutes from its creation, and only its hash is kept.
    assert stored.expires_at - stored.created_at == timedelta(minutes=60)
    assert stored.token_hash not in session.link


def test_the_cookie_is_the_portals_own(client):
    customer = make_customer(name="Ada", email="ada@example.com")
    response = Client().get(portal_link(customer))
    cookie = response.cookies[COOKIE_NAME]
    assert cookie["path"] == "/portal/"
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert "sessionid" not in response.cookies  # never the staff session
    # The portal cookie opens nothing outside the portal.
    api = Client()
    api.cookies[COOKIE_NAME] = cookie.value
    assert api.get("/api/customers").status_code == 401
    assert api.get("/admin/").status_code == 302  # to the staff login


def test_send_email_mails_the_link(sdk):
    customer = make_customer(name="Ada", email="ada@example.com")
    session = sdk.customers.customer_portal.create(customer.pk, send_email=True)
    [message] = mail.outbox
    assert message.to == ["ada@example.com"]
    assert session.link in message.body


def test_no_email_unless_asked(sdk):
    customer = make_customer()
    sdk.customers.customer_portal.create(customer.pk, send_email=False)
    sdk.customers.customer_portal.create(customer.pk)
    assert mail.outbox == []


@override_settings(CUSTOMER_PORTAL_SESSION_MINUTES=5)
def test_the_setting_sets_the_lifetime(sdk):
    customer = make_customer()
    sdk.customers.customer_portal.create(customer.pk)
    stored = PortalSession.objects.get()
    assert stored.expires_at - stored.created_at == timedelta(minutes=5)


def _refused(response) -> None:
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
    assert b"This link does not work" in response.content


def test_an_expired_link_is_refused():
    customer = make_customer()
    link = portal_link(customer, now=datetime.now(UTC) - timedelta(minutes=61))
    _refused(Client().get(link))


def test_an_expired_session_refuses_its_cookie_too():
    customer = make_customer()
    client = Client()
    assert client.get(portal_link(customer)).status_code == 302
    PortalSession.objects.update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    _refused(client.get("/portal/"))


@pytest.mark.parametrize(
    "edit",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # the signature
        lambda token: ("A" if token[0] != "A" else "B") + token[1:],  # the token
        lambda token: token.split(":")[0],  # the signature dropped
        lambda token: "x",
    ],
)
def test_an_edited_link_is_refused(edit):
    customer = make_customer()
    link = portal_link(customer)
    token = link.rstrip("/").rsplit("/", 1)[1]
    _refused(Client().get(link.replace(token, edit(token))))


def test_an_edited_cookie_is_refused():
    customer = make_customer()
    client = Client()
    client.get(portal_link(customer))
    client.cookies[COOKIE_NAME] = client.cookies[COOKIE_NAME].value + "x"
    _refused(client.get("/portal/"))


def test_no_cookie_no_portal():
    make_customer()
    for path in ("/portal/", "/portal/invoices/", "/portal/events.csv"):
        _refused(Client().get(path))


def test_after_logout_the_link_and_cookie_are_refused():
    customer = make_customer()
    link = portal_link(customer)
    client = Client()
    assert client.get(link).status_code == 302
    assert client.get("/portal/").status_code == 200
    assert client.post("/portal/logout").status_code == 200
    _refused(client.get("/portal/"))
    _refused(Client().get(link))  # replayed
    assert PortalSession.objects.get().ended_at is not None


def test_two_links_are_two_sessions():
    customer = make_customer()
    first, second = Client(), Client()
    first.get(portal_link(customer))
    second.get(portal_link(customer))
    first.post("/portal/logout")
    _refused(first.get("/portal/"))
    assert second.get("/portal/").status_code == 200


def test_unknown_customer_is_404(api):
    response = api.post("/api/customers/cus_missing/customer-portal/session")
    assert response.status_code == 404
    assert PortalSession.objects.count() == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?return_url=javascript:alert(1)", "return_url"),
        ("?return_url=/relative", "return_url"),
        ("?send_email=maybe", "send_email"),
        ("?locale=de", "locale"),
    ],
)
def test_bad_input_is_refused_naming_the_field(api, query, field):
    customer = make_customer()
    response = api.post(f"/api/customers/{customer.pk}/customer-portal/session{query}")
    assert response.status_code in (400, 422), response.content
    assert field in response.content.decode()
    assert PortalSession.objects.count() == 0


def test_a_body_is_refused(api):
    customer = make_customer()
    response = api.post(
        f"/api/customers/{customer.pk}/customer-portal/session",
        {"return_url": "https://a.example"},
        format="json",
    )
    assert response.status_code == 422
    assert "return_url" in response.content.decode()
    assert PortalSession.objects.count() == 0


def test_the_link_is_on_this_server(api):
    customer = make_customer()
    response = api.post(
        f"/api/customers/{customer.pk}/customer-portal/session", HTTP_HOST="billing.example.com"
    )
    assert urlsplit(response.json()["link"]).netloc == "billing.example.com"


@override_settings(
    EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
    EMAIL_HOST="127.0.0.1",
    EMAIL_PORT=1,  # nothing listens: the mail server is down
    EMAIL_TIMEOUT=2,
)
def test_a_mail_server_that_fails_still_answers_the_link(api, caplog):
    customer = make_customer()
    response = api.post(f"/api/customers/{customer.pk}/customer-portal/session?send_email=true")
    assert response.status_code == 200
    link = response.json()["link"]
    assert "could not be mailed" in caplog.text
    path = urlsplit(link).path
    assert Client().get(path).status_code == 302  # the session was stored and works


def test_sessions_dead_for_a_month_are_forgotten():
    from portal.sessions import forget_old_sessions

    customer = make_customer()
    now = datetime.now(UTC)
    portal_link(customer, now=now - timedelta(days=40))  # expired 40 days ago
    portal_link(customer, now=now - timedelta(days=10))  # expired 10 days ago: kept
    live = portal_link(customer, now=now)
    assert forget_old_sessions(now=now) == 1
    assert PortalSession.objects.count() == 2
    assert Client().get(live).status_code == 302
