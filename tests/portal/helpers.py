"""Two customers with usage, invoices and credits, and portal sessions for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.test import Client
from django.urls import reverse

from credits.models import CreditEntitlement
from meters.models import Meter
from portal import sessions
from products import services as product_services
from products.billing import run_billing_cycle
from products.models import Customer, Subscription
from tests.credits.factories import credit_product, make_entitlement
from tests.factories import make_customer
from tests.products.factories import make_meter, make_product, send_usage


@dataclass(frozen=True)
class Account:
    customer: Customer
    subscription: Subscription  # priced in money: calls at 0.5 cents after 10 free
    credit_subscription: Subscription  # tokens billed in credits


@dataclass(frozen=True)
class World:
    now: datetime
    calls: Meter
    tokens: Meter
    entitlement: CreditEntitlement
    ada: Account
    bob: Account


def _account(name: str, email: str, *, world_start, product, credits, calls: int):
    customer = make_customer(name=name, email=email)
    subscription = product_services.create_subscription(
        customer=customer, product=product, now=world_start
    )
    credit_subscription = product_services.create_subscription(
        customer=customer, product=credits, now=world_start
    )
    prefix = name.split()[0].lower()
    # Usage in the first (now closed) period and in the open one, away from day boundaries.
    send_usage(
        subscription,
        "api.call",
        [{}] * calls,
        start=world_start + timedelta(hours=3),
        prefix=f"{prefix}-old",
    )
    return customer, subscription, credit_subscription, prefix


def make_world(*, ada_calls: int = 25, bob_calls: int = 7) -> World:
    """Ada and Bob, each on a monthly money plan and a weekly credits plan since 40 days ago,
    with one closed (invoiced) month and usage in the open one."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = (now - timedelta(days=40)).replace(hour=0, minute=0, second=0)
    calls = make_meter("Calls", "api.call", now=start)
    tokens = make_meter("Tokens", "llm.tokens", "sum", "tokens", now=start)
    product = make_product([(calls, "0.5", 10)], now=start, fixed_price=1000, name="Pro plan")
    entitlement = make_entitlement(now=start)
    credits = credit_product(entitlement, tokens, credits_amount=500, now=start)
    accounts = {}
    for name, email, count in (
        ("Ada Lovelace", "ada@example.com", ada_calls),
        ("Bob Builder", "bob@example.org", bob_calls),
    ):
        customer, subscription, credit_subscription, prefix = _account(
            name, email, world_start=start, product=product, credits=credits, calls=count
        )
        accounts[prefix] = (customer, subscription, credit_subscription)
    run_billing_cycle(now=now - timedelta(hours=1))
    for prefix, (_customer, subscription, credit_subscription) in accounts.items():
        subscription.refresh_from_db()
        credit_subscription.refresh_from_db()
        # After the start of both open periods: ingestion refuses events in an invoiced one.
        opened = max(subscription.current_period_start, credit_subscription.current_period_start)
        recent = opened + timedelta(hours=2)
        count = 13 if prefix == "ada" else 4
        send_usage(subscription, "api.call", [{}] * count, start=recent, prefix=f"{prefix}-new")
        send_usage(
            credit_subscription,
            "llm.tokens",
            [{"tokens": 30 if prefix == "ada" else 11}] * 3,
            start=recent + timedelta(minutes=5),
            prefix=f"{prefix}-tok",
        )
    return World(
        now=now,
        calls=calls,
        tokens=tokens,
        entitlement=entitlement,
        ada=Account(*accounts["ada"]),
        bob=Account(*accounts["bob"]),
    )


def portal_link(customer: Customer, *, now: datetime | None = None, return_url=None) -> str:
    created = sessions.create_session(
        customer.pk, return_url=return_url, now=now or datetime.now(UTC)
    )
    return reverse("portal-enter", args=[created.signed_token])


def portal_client(customer: Customer, **kwargs) -> Client:
    """A browser-like client that entered the portal through a fresh link."""
    client = Client()
    response = client.get(portal_link(customer, **kwargs))
    assert response.status_code == 302, response
    return client
