"""Dodo's checkout sessions through the official SDK's strict client: `checkout_sessions.create`
answers `{session_id, checkout_url}`, `.retrieve` the session's state and `.preview` the quote;
every field of Dodo's request is applied or refused with a 422 naming it, storing nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from products.models import CheckoutSession, Customer, Subscription
from tests.factories import make_customer
from tests.payments.helpers import BILLING, CALL_PRICE, FEE
from tests.products.factories import make_meter, make_product

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def product():
    meter = make_meter("Calls", "api.call", now=NOW)
    return make_product(
        [(meter, str(CALL_PRICE), 3)], now=NOW, fixed_price=FEE, interval="Week", name="Calls"
    )


def test_create_then_retrieve_through_the_strict_sdk(sdk, live_server, product):
    client = sdk
    before = timezone.now()
    session = client.checkout_sessions.create(
        product_cart=[{"product_id": product.product_id, "quantity": 1}],
        customer={"email": "ada@example.com", "name": "Ada", "phone_number": "+15550100"},
        billing_address=BILLING,
        return_url="https://shop.example.com/done",
        cancel_url="https://shop.example.com/back",
        metadata={"plan": "pro"},
        subscription_data={"trial_period_days": 14},
        feature_flags={"redirect_immediately": True, "allow_discount_code": False},
        customization={"theme": "dark", "show_order_details": True},
        allowed_payment_method_types=["credit", "debit"],
        short_link=True,
        confirm=False,
        discount_code=None,
        custom_fields=[],
        tax_id=None,
    )
    assert session.session_id.startswith("cks_")
    assert session.checkout_url == f"{live_server.url}/checkout/{session.session_id}"
    assert (session.client_secret, session.payment_id, session.publishable_key) == (None,) * 3

    stored = CheckoutSession.objects.get()
    assert stored.new_customer == {
        "email": "ada@example.com",
        "name": "Ada",
        "phone_number": "+15550100",
    }
    assert stored.billing_address == BILLING
    assert (stored.trial_period_days, stored.metadata) == (14, {"plan": "pro"})
    assert stored.expires_at - stored.created_at == timedelta(hours=24)  # Dodo's validity
    assert not Customer.objects.exists()  # a new customer is created only at completion

    status = client.checkout_sessions.retrieve(session.session_id)
    assert status.id == session.session_id
    assert before <= status.created_at <= timezone.now()
    assert (status.customer_email, status.customer_name) == ("ada@example.com", "Ada")
    assert (status.payment_id, status.payment_status) == (None, None)
    raw = client.checkout_sessions.with_raw_response.retrieve(session.session_id).json()
    assert (raw["status"], raw["subscription_id"]) == ("open", None)  # extensions


def test_an_existing_customer_is_named_by_id(sdk, product):
    customer = make_customer(email="grace@example.com")
    client = sdk
    session = client.checkout_sessions.create(
        product_cart=[{"product_id": product.product_id, "quantity": 1}],
        customer={"customer_id": customer.customer_id},
    )
    assert CheckoutSession.objects.get().customer_id == customer.customer_id
    status = client.checkout_sessions.retrieve(session.session_id)
    assert (status.customer_email, status.customer_name) == (customer.email, customer.name)


def test_preview_quotes_nothing_now_and_the_fee_each_period(sdk, product):
    before = timezone.now()
    quote = sdk.checkout_sessions.preview(
        product_cart=[{"product_id": product.product_id, "quantity": 1}],
        billing_address=BILLING,
        subscription_data={"trial_period_days": 3},
        locale="fr",
    )
    after = timezone.now()
    assert (quote.billing_country, quote.currency) == ("US", "USD")
    # Every period, the first included, is invoiced at its end: nothing is due today.
    assert quote.current_breakup.total_amount == quote.current_breakup.subtotal == 0
    assert quote.recurring_breakup.total_amount == quote.total_price == FEE
    assert quote.trial_period_days == 3 and quote.trial_amount is None
    assert before + timedelta(days=3) <= quote.next_billing_date <= after + timedelta(days=3)
    assert quote.payment_method_required is False  # PAYMENT_PROVIDER=none: no card
    [item] = quote.product_cart
    assert (item.product_id, item.quantity, item.og_price, item.name) == (
        product.product_id,
        1,
        FEE,
        "Calls",
    )
    assert item.is_usage_based and item.is_subscription
    [meter] = item.meters
    assert (meter.name, meter.price_per_unit, meter.free_threshold) == ("Calls", "25", 3)
    assert not CheckoutSession.objects.exists()


def test_preview_with_a_provider_asks_for_a_card(fake_stripe, api, product):
    answer = api.post(
        "/api/checkouts/preview",
        {
            "product_cart": [{"product_id": product.product_id, "quantity": 1}],
            "billing_address": BILLING,
        },
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["payment_method_required"] is True
    # Without an address there is no billing country to answer.
    answer = api.post(
        "/api/checkouts/preview",
        {"product_cart": [{"product_id": product.product_id, "quantity": 1}]},
        format="json",
    )
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["billing_address"]


REFUSED = [
    ({"discount_code": "SAVE10"}, "discount_code"),
    ({"discount_codes": ["SAVE10"]}, "discount_codes"),
    ({"tax_id": "DE123"}, "tax_id"),
    ({"custom_fields": [{"field_type": "text", "key": "k", "label": "K"}]}, "custom_fields"),
    ({"confirm": True}, "confirm"),
    ({"payment_method_id": "pm_1"}, "payment_method_id"),
    ({"product_collection_id": "pdc_1"}, "product_collection_id"),
    ({"force_3ds": True}, "force_3ds"),
    ({"mandate_min_amount_inr_paise": 100}, "mandate_min_amount_inr_paise"),
    ({"show_saved_payment_methods": True}, "show_saved_payment_methods"),
    ({"billing_currency": "EUR"}, "billing_currency"),
    ({"return_url": "ftp://shop.example.com"}, "return_url"),
    ({"customization": {"theme_config": {"light": {}}}}, "customization.theme_config"),
    ({"customization": {"force_language": "fr"}}, "customization.force_language"),
    ({"feature_flags": {"allow_discount_code": True}}, "feature_flags.allow_discount_code"),
    ({"feature_flags": {"allow_tax_id": True}}, "feature_flags.allow_tax_id"),
    ({"feature_flags": {"flying": True}}, "feature_flags.flying"),
    ({"subscription_data": {"on_demand": {"mandate_only": True}}}, "subscription_data.on_demand"),
    ({"subscription_data": {"trial_period_days": -1}}, "subscription_data.trial_period_days"),
    ({"billing_address": {"country": "XX"}}, "billing_address.country"),
    ({"customer": {"name": "No email"}}, "customer.email"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("extra", "field"), REFUSED, ids=[f for _, f in REFUSED])
def test_a_field_that_cannot_be_honoured_is_refused_by_name(api, product, extra, field):
    customers = Customer.objects.count()
    body = {"product_cart": [{"product_id": product.product_id, "quantity": 1}], **extra}
    answer = api.post("/api/checkouts", body, format="json")
    assert answer.status_code == 422, answer.content
    assert field in [e["field"] for e in answer.json()["errors"]]
    assert not CheckoutSession.objects.exists()
    assert Customer.objects.count() == customers and not Subscription.objects.exists()


CART_REFUSED = [
    ([], "product_cart"),
    ([{"product_id": "p", "quantity": 1}] * 2, "product_cart"),
    ([{"product_id": "pdt_nobody", "quantity": 1}], "product_cart[0].product_id"),
    ([{"quantity": 1}], "product_cart[0].product_id"),
    ("QUANTITY", "product_cart[0].quantity"),
    ("ADDONS", "product_cart[0].addons"),
    ("AMOUNT", "product_cart[0].amount"),
    ("EXTRA", "product_cart[0].colour"),
]


@pytest.mark.parametrize(("cart", "field"), CART_REFUSED, ids=[f for _, f in CART_REFUSED])
def test_the_cart_holds_one_subscription_of_quantity_one(api, product, cart, field):
    item = {"product_id": product.product_id, "quantity": 1}
    cart = (
        {
            "QUANTITY": [{**item, "quantity": 2}],
            "ADDONS": [{**item, "addons": [{"addon_id": "adn_1", "quantity": 1}]}],
            "AMOUNT": [{**item, "amount": 500}],
            "EXTRA": [{**item, "colour": "red"}],
        }.get(cart, cart)
        if isinstance(cart, str)
        else cart
    )
    answer = api.post("/api/checkouts", {"product_cart": cart}, format="json")
    assert answer.status_code == 422, answer.content
    assert field in [e["field"] for e in answer.json()["errors"]]
    assert not CheckoutSession.objects.exists()


def test_a_provider_needs_a_card_among_the_allowed_types_and_a_publishable_key(
    fake_stripe, api, product, settings
):
    cart = [{"product_id": product.product_id, "quantity": 1}]
    answer = api.post(
        "/api/checkouts",
        {"product_cart": cart, "allowed_payment_method_types": ["paypal"]},
        format="json",
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "allowed_payment_method_types"
    settings.STRIPE_PUBLISHABLE_KEY = ""
    answer = api.post("/api/checkouts", {"product_cart": cart}, format="json")
    assert answer.status_code == 409
    assert answer.json()["code"] == "PAYMENT_PROVIDER_NOT_CONFIGURED"
    assert not CheckoutSession.objects.exists()


def test_an_unknown_session_is_a_404(api):
    assert api.get("/api/checkouts/cks_nobody").status_code == 404
