"""The checkout page at /checkout/{session_id}: completing it creates the customer (if new) and
the subscription exactly once, saves the card (with a provider) and sends the customer to
return_url; an unknown, expired or completed session answers a plain page."""

from __future__ import annotations

import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from products import billing, payments
from products.models import (
    CheckoutSession,
    Customer,
    InvoiceStatus,
    ProviderCustomer,
    Subscription,
)
from tests.factories import make_customer
from tests.payments.fake_stripe import GOOD_CARD
from tests.payments.helpers import BILLING, CALL_PRICE, FEE
from tests.products.factories import make_meter, make_product, send_usage

pytestmark = pytest.mark.django_db

FORM = {"email": "ada@example.com", "name": "Ada", "phone_number": "+15550100", **BILLING}


@pytest.fixture
def product():
    meter = make_meter("Calls", "api.call", now=timezone.now() - timedelta(days=1))
    return make_product(
        [(meter, str(CALL_PRICE), 3)],
        now=timezone.now() - timedelta(days=1),
        fixed_price=FEE,
        interval="Week",
    )


def create(api, product, **fields) -> str:
    body = {"product_cart": [{"product_id": product.product_id, "quantity": 1}], **fields}
    answer = api.post("/api/checkouts", body, format="json")
    assert answer.status_code == 200, answer.content
    return urlsplit(answer.json()["checkout_url"]).path


def test_completing_the_page_starts_one_subscription_and_returns(api, product):
    path = create(
        api,
        product,
        return_url="https://shop.example.com/done?from=checkout",
        metadata={"plan": "pro"},
        customer_business_name="Ada Ltd",
    )
    browser = Client()
    page = browser.get(path)
    assert page.status_code == 200
    assert b"Confirm subscription" in page.content  # no provider: no card to collect
    assert "js.stripe.com" not in page.content.decode()

    done = browser.post(path, FORM)
    assert done.status_code == 303 and done["Location"] == path
    again = browser.post(path, FORM)  # a double submit
    assert again.status_code == 303

    [subscription] = Subscription.objects.all()
    [customer] = Customer.objects.all()
    assert (customer.email, customer.name, customer.phone_number) == (
        "ada@example.com",
        "Ada",
        "+15550100",
    )
    assert subscription.customer == customer and subscription.status == "active"
    assert subscription.billing == BILLING and subscription.metadata == {"plan": "pro"}
    assert subscription.customer_business_name == "Ada Ltd"
    session = CheckoutSession.objects.get()
    assert (session.status, session.subscription_id) == ("completed", subscription.pk)

    completed = browser.get(path)  # the reload after the redirect
    assert completed.status_code == 200
    link = completed.content.decode().split('id="continue" class="button" href="')[1]
    query = parse_qs(urlsplit(link.split('"')[0].replace("&amp;", "&")).query)
    assert query == {
        "from": ["checkout"],
        "session_id": [session.session_id],
        "subscription_id": [subscription.subscription_id],
        "status": ["active"],
    }
    assert Subscription.objects.count() == 1

    status = api.get(f"/api/checkouts/{session.session_id}").json()
    assert (status["status"], status["subscription_id"]) == ("completed", subscription.pk)
    assert (status["payment_id"], status["payment_status"]) == (None, "succeeded")


def test_redirect_immediately_goes_straight_to_return_url(api, product):
    path = create(
        api,
        product,
        return_url="https://shop.example.com/done",
        feature_flags={"redirect_immediately": True},
    )
    browser = Client()
    assert browser.post(path, FORM).status_code == 303
    landing = browser.get(path)
    assert landing.status_code == 302
    assert landing["Location"].startswith("https://shop.example.com/done?session_id=cks_")
    # The page's policy lets the form's redirect go to the shop.
    page = Client().get(create(api, product, return_url="https://shop.example.com/x"))
    assert "form-action 'self' https://shop.example.com" in page["Content-Security-Policy"]


@pytest.mark.django_db(transaction=True)
def test_two_submits_at_once_start_one_subscription(api, product):
    path = create(api, product)
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def submit():
        try:
            barrier.wait()
            answers.append(Client().post(path, FORM).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [303, 303]
    assert Subscription.objects.count() == 1 and Customer.objects.count() == 1


def test_an_existing_customer_keeps_their_details(api, product):
    customer = make_customer(email="grace@example.com")
    path = create(api, product, customer={"customer_id": customer.customer_id})
    page = Client().get(path)
    assert b'name="email"' not in page.content  # nothing to ask about the customer
    assert Client().post(path, {**BILLING, "email": "other@example.com"}).status_code == 303
    assert Subscription.objects.get().customer == customer
    assert Customer.objects.count() == 1


def test_given_details_are_read_only_unless_the_flag_allows_editing(api, product):
    path = create(api, product, customer={"email": "ada@example.com", "name": "Ada"})
    assert Client().post(path, {**FORM, "email": "eve@example.com"}).status_code == 303
    assert Customer.objects.get().email == "ada@example.com"

    path = create(
        api,
        product,
        customer={"email": "bob@example.com", "name": "Bob"},
        feature_flags={"allow_customer_editing_email": True, "always_create_new_customer": True},
    )
    assert Client().post(path, {**FORM, "email": "rob@example.com"}).status_code == 303
    assert Customer.objects.filter(email="rob@example.com").exists()


def test_missing_inputs_are_named_and_nothing_is_written(api, product):
    path = create(api, product, feature_flags={"require_phone_number": True})
    page = Client().post(path, {"email": "not-an-email", "country": "US"})
    assert page.status_code == 422
    text = page.content.decode()
    for name in ("email", "phone_number", "street", "city", "zipcode"):
        assert f'id="error-{name}"' in text, name
    assert not Subscription.objects.exists() and not Customer.objects.exists()
    assert CheckoutSession.objects.get().status == "open"

    # minimal_address: the country and zip code are enough.
    path = create(api, product, minimal_address=True)
    form = {"email": "min@example.com", "country": "DE", "zipcode": "10115"}
    assert Client().post(path, form).status_code == 303
    assert Subscription.objects.get().billing == {"country": "DE", "zipcode": "10115"}


def test_unknown_expired_and_completed_sessions_answer_a_plain_page(api, product):
    assert Client().get("/checkout/cks_nobody").status_code == 404
    path = create(api, product)
    CheckoutSession.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    for answer in (Client().get(path), Client().post(path, FORM)):
        assert answer.status_code == 410
        assert b"This checkout has expired." in answer.content
    assert not Subscription.objects.exists()
    session_id = path.rsplit("/", 1)[1]
    assert api.get(f"/api/checkouts/{session_id}").json()["status"] == "expired"


# --- with Stripe (localstripe) -------------------------------------------------------------------


def confirm_card(fake_stripe, path: str, number: str = GOOD_CARD):
    """What the page's Stripe.js does with the session's client secret."""
    session = CheckoutSession.objects.get(pk=path.rsplit("/", 1)[1])
    return fake_stripe.confirm_setup(
        {"setup_intent_id": session.setup_intent_id, "client_secret": session.setup_client_secret},
        number,
    )


def test_with_stripe_the_card_must_be_confirmed_and_is_then_charged_each_period(
    fake_stripe, api, product
):
    path = create(api, product)
    browser = Client()
    page = browser.get(path)
    assert page.status_code == 200
    policy = page["Content-Security-Policy"]
    assert f"script-src 'self' {fake_stripe.url}" in policy
    assert f'src="{fake_stripe.url}/js.stripe.com/v3/"' in page.content.decode()
    session = CheckoutSession.objects.get()
    intent = fake_stripe.setup_intent(session.setup_intent_id)
    assert intent["metadata"] == {"checkout_session_id": session.session_id}
    assert browser.get(path).status_code == 200  # a reload keeps the same SetupIntent
    assert CheckoutSession.objects.get().setup_intent_id == session.setup_intent_id

    unconfirmed = browser.post(path, FORM)
    assert unconfirmed.status_code == 422 and b"not been confirmed" in unconfirmed.content
    assert not Subscription.objects.exists() and not Customer.objects.exists()

    assert confirm_card(fake_stripe, path).status_code == 200
    assert browser.post(path, FORM).status_code == 303
    assert browser.post(path, FORM).status_code == 303
    subscription = Subscription.objects.get()
    profile = ProviderCustomer.objects.get(customer=subscription.customer)
    method = fake_stripe.setup_intent(session.setup_intent_id)["payment_method"]
    assert profile.payment_method_id == method and profile.card_last_four == "4242"
    assert fake_stripe._get(f"/v1/payment_methods/{method}")["customer"] == (
        profile.provider_customer_id
    )

    # The first period closes: its invoice is charged to the card saved at checkout.
    send_usage(subscription, "api.call", [{}] * 5, start=subscription.anchor, prefix="ada")
    end = subscription.current_period_end
    [invoice] = billing.run_billing_cycle(now=end)
    assert payments.collect_due(now=end) == 1
    invoice.refresh_from_db()
    [charged] = fake_stripe.succeeded_charges_of(invoice.invoice_id)
    assert charged["amount"] == invoice.total_minor == FEE + 2 * CALL_PRICE
    assert (charged["customer"], charged["payment_method"]) == (
        profile.provider_customer_id,
        method,
    )
    assert invoice.status == InvoiceStatus.PAID
    status = api.get(f"/api/checkouts/{session.session_id}").json()
    assert status["payment_status"] == "succeeded"
    assert status["payment_id"] == invoice.payments.get().payment_id


def test_staff_see_checkout_sessions_read_only(api, product, admin_client):
    create(api, product)
    session = CheckoutSession.objects.get()
    listing = admin_client.get("/admin/products/checkoutsession/")
    assert listing.status_code == 200 and session.session_id in listing.content.decode()
    detail = admin_client.get(f"/admin/products/checkoutsession/{session.session_id}/change/")
    assert detail.status_code == 200
    assert b'name="status"' not in detail.content  # nothing to edit
    assert admin_client.get("/admin/products/checkoutsession/add/").status_code == 403


def test_a_product_archived_before_completion_is_said_on_the_page(api, product):
    path = create(api, product)
    product.archived_at = timezone.now()
    product.save(update_fields=["archived_at"])
    page = Client().post(path, FORM)
    assert page.status_code == 422 and b"The product is archived." in page.content
    assert not Subscription.objects.exists() and not Customer.objects.exists()
