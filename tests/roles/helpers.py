"""Staff users in each role, a small billing world to look at, and admin form posts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.test import Client

from audit.roles import assign_role
from credits.models import CreditBalance, CreditEntitlement
from meters.models import Meter
from products.billing import run_billing_cycle
from products.models import Invoice, Product, Subscription
from tests.credits.factories import credit_product, make_entitlement, subscribe
from tests.products.factories import make_meter, send_usage

PASSWORD = "correct-horse-battery-staple"


def staff_client(username: str, role: str | None = None, *, superuser: bool = False) -> Client:
    """A logged-in client for a staff user with `role` (None: staff with no role)."""
    users = get_user_model().objects
    if superuser:
        user = users.create_superuser(username, f"{username}@example.com", PASSWORD)
    else:
        user = users.create_user(username, password=PASSWORD, is_staff=True)
    if role:
        assign_role(user, role)
    client = Client()
    client.force_login(user)
    return client


@dataclass(frozen=True)
class World:
    meter: Meter
    product: Product
    subscription: Subscription
    invoice: Invoice
    entitlement: CreditEntitlement
    balance: CreditBalance


def make_world() -> World:
    """A credit-billed meter with usage, a subscription, one issued invoice and a balance."""
    start = (datetime.now(UTC) - timedelta(days=10)).replace(microsecond=0)
    entitlement = make_entitlement(now=start)
    meter = make_meter("Calls", "api.call", now=start)
    product = credit_product(entitlement, meter, credits_amount=100, now=start)
    subscription = subscribe(product, now=start)
    send_usage(subscription, "api.call", [{}] * 3, start=start + timedelta(hours=1), prefix="w")
    [invoice] = run_billing_cycle(now=start + timedelta(weeks=1))
    return World(
        meter=meter,
        product=product,
        subscription=subscription,
        invoice=invoice,
        entitlement=entitlement,
        balance=CreditBalance.objects.get(credit_entitlement=entitlement),
    )


def _form_value(bound) -> object:
    value = bound.field.prepare_value(bound.value())
    if value is None:
        return ""
    if value is True:
        return "on"
    return value


def admin_form_data(client: Client, url: str, **changes) -> dict:
    """What the admin page at `url` would post unchanged (its form and inline formsets), with
    `changes` applied; unchecked boxes are left out, as a browser does."""
    page = client.get(url)
    assert page.status_code == 200, url
    data: dict = {}
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        forms.append(inline.formset.management_form)
        forms.extend(inline.formset.forms)
    for form in forms:
        for bound in form:
            value = _form_value(bound)
            if value is not False:
                data[bound.html_name] = value
    data.update(changes)
    return {key: value for key, value in data.items() if value is not False}
