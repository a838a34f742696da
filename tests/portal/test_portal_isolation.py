"""A portal session sees one customer: a crawl of every page and link of the portal with Ada's
session and with Bob's finds none of the other's names, ids, invoices, balances or events, and
the other's invoice and balance ids in a URL show nothing of theirs."""

from __future__ import annotations

import re
from html import unescape

import pytest

from credits.models import CreditBalance
from products.models import Invoice
from tests.portal.helpers import make_world, portal_client

pytestmark = pytest.mark.django_db

LINK = re.compile(r'href="(/portal/[^"]*)"')
NOT_CRAWLED = ("/portal/session/", "/portal/logout", "/portal/plotly.min.js")


def crawl(client) -> dict[str, bytes]:
    """Every portal page reachable from the first one, by its links."""
    seen: dict[str, bytes] = {}
    queue = ["/portal/"]
    while queue:
        path = queue.pop()
        if path in seen or path.startswith(NOT_CRAWLED):
            continue
        response = client.get(path)
        assert response.status_code == 200, path
        content = b"".join(response.streaming_content) if response.streaming else response.content
        seen[path] = content
        if response["Content-Type"].startswith("text/html"):
            base = path.split("?")[0]
            for href in LINK.findall(content.decode()):
                queue.append(unescape(href))
            for query in re.findall(r'href="(\?[^"]*)"', content.decode()):
                queue.append(base + unescape(query))
    return seen


def markers(account) -> list[str]:
    customer = account.customer
    found = [customer.pk, customer.name, customer.email]
    for subscription in (account.subscription, account.credit_subscription):
        found.append(subscription.pk)
    for invoice in Invoice.objects.filter(customer=customer):
        found.append(invoice.pk)
        if invoice.number:
            found.append(invoice.number)
    for balance in CreditBalance.objects.filter(customer=customer):
        found.append(f'balance={balance.pk}"')
        found.append(f'data-balance="{balance.pk}"')
    prefix = customer.name.split()[0].lower()
    found.append(f"{prefix}-")  # every event id of theirs starts so
    return found


def test_each_session_sees_only_its_own_customer():
    world = make_world()
    for me, other in ((world.ada, world.bob), (world.bob, world.ada)):
        pages = crawl(portal_client(me.customer))
        # The crawl reached every kind of page, invoices, PDFs and CSV exports included.
        kinds = {re.sub(r"[?].*", "", p).split("/")[2] for p in pages}
        assert kinds >= {"", "history", "invoices", "credits", "events", "events.csv"}, kinds
        assert any(p.endswith("/pdf") for p in pages)
        mine = markers(me)
        for path, content in pages.items():
            if path.endswith("/pdf"):
                continue  # compressed; its invoice was reached through this customer's list
            text = content.decode()
            for marker in markers(other):
                assert marker not in text, (path, marker)
        overview = pages["/portal/"].decode()
        assert me.customer.name in overview and me.subscription.pk in overview
        assert any(marker in overview for marker in mine)


def test_another_customers_invoice_is_not_found():
    world = make_world()
    client = portal_client(world.ada.customer)
    for invoice in Invoice.objects.filter(customer=world.bob.customer).exclude(status="draft"):
        assert client.get(f"/portal/invoices/{invoice.pk}/").status_code == 404
        assert client.get(f"/portal/invoices/{invoice.pk}/pdf").status_code == 404
    own = Invoice.objects.filter(customer=world.ada.customer).exclude(status="draft").first()
    assert client.get(f"/portal/invoices/{own.pk}/").status_code == 200


def test_another_customers_balance_id_shows_only_ones_own():
    world = make_world()
    client = portal_client(world.ada.customer)
    theirs = CreditBalance.objects.get(customer=world.bob.customer)
    page = client.get(f"/portal/credits/?balance={theirs.pk}").content.decode()
    assert f'data-balance="{theirs.pk}"' not in page
    assert "Bob" not in page


def test_events_of_a_meter_are_only_the_customers():
    world = make_world()
    client = portal_client(world.ada.customer)
    page = client.get(f"/portal/events/?meter={world.calls.pk}").content.decode()
    assert "ada-new-0" in page and "bob-" not in page
    csv = b"".join(
        client.get(f"/portal/events.csv?meter={world.calls.pk}").streaming_content
    ).decode()
    assert "ada-new-0" in csv and "bob-" not in csv
