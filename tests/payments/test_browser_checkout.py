"""Dodo's checkout flow end to end in headless Chromium: the SDK's `checkout_sessions.create`,
the customer completing the page (the card typed into localstripe's own Stripe.js, the fake's
copy of https://js.stripe.com/v3/), the redirect to return_url, then the first period's invoice
charged to that card at localstripe. With no provider the page confirms with a button."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from products import billing, payments
from products.models import InvoiceStatus, ProviderCustomer, Subscription
from tests.dashboard.browser import skip_without_chromium
from tests.payments.fake_stripe import GOOD_CARD
from tests.payments.helpers import BILLING, CALL_PRICE, FEE
from tests.products.factories import make_meter, make_product, send_usage

skip_without_chromium()

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs before any page script: every Content-Security-Policy violation is kept for the test.
LISTEN = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


@pytest.fixture
def product():
    since = timezone.now() - timedelta(days=1)
    meter = make_meter("Calls", "api.call", now=since)
    return make_product([(meter, str(CALL_PRICE), 3)], now=since, fixed_price=FEE, interval="Week")


def fill_address(page) -> None:
    for name in ("street", "city", "zipcode"):
        page.fill(f"#id_{name}", BILLING[name])


def test_checkout_in_chromium_ends_with_an_active_subscription_charged_at_localstripe(
    fake_stripe,
    sdk,
    live_server,
    page,
    product,
):
    return_url = f"{live_server.url}/api/docs"
    session = sdk.checkout_sessions.create(
        product_cart=[{"product_id": product.product_id, "quantity": 1}],
        customer={"email": "ada@example.com", "name": "Ada"},
        billing_address={"country": "US"},
        return_url=return_url,
        feature_flags={"redirect_immediately": True, "require_cardholder_name": True},
    )
    page.add_init_script(LISTEN)
    page.goto(session.checkout_url)
    expect(page.locator("#id_email")).to_have_text("ada@example.com")  # given: read-only
    fill_address(page)
    page.fill("#id_cardholder_name", "Ada Lovelace")
    # localstripe's card element: plain inputs named by placeholder (Stripe's is an iframe).
    card = page.locator("#card-element")
    card.locator("input[placeholder=number]").fill(GOOD_CARD)
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill("123")
    card.locator("input[placeholder=postal_code]").fill(BILLING["zipcode"])
    violations = page.evaluate("window.__cspViolations")
    page.click("#pay")
    page.wait_for_url(f"{return_url}?*")

    query = parse_qs(urlsplit(page.url).query)
    subscription = Subscription.objects.get()
    assert query == {
        "session_id": [session.session_id],
        "subscription_id": [subscription.subscription_id],
        "status": ["active"],
    }
    assert violations == []
    assert subscription.status == "active" and subscription.customer.email == "ada@example.com"
    assert subscription.billing == {**BILLING, "country": "US"}
    status = sdk.checkout_sessions.retrieve(session.session_id)
    assert (status.payment_id, status.payment_status) == (None, "succeeded")

    profile = ProviderCustomer.objects.get(customer=subscription.customer)
    method = fake_stripe._get(f"/v1/payment_methods/{profile.payment_method_id}")
    assert method["customer"] == profile.provider_customer_id
    assert method["billing_details"]["name"] == "Ada Lovelace"
    assert profile.card_last_four == "4242"

    # The first period closes (as `bill` does at its end): the invoice is charged to that card.
    send_usage(subscription, "api.call", [{}] * 5, start=subscription.anchor, prefix="ada")
    end = subscription.current_period_end
    [invoice] = billing.run_billing_cycle(now=end)
    assert payments.collect_due(now=end) == 1
    invoice.refresh_from_db()
    [charged] = fake_stripe.succeeded_charges_of(invoice.invoice_id)
    assert charged["amount"] == invoice.total_minor == FEE + 2 * CALL_PRICE  # 2 calls over 3
    assert (charged["customer"], charged["payment_method"]) == (
        profile.provider_customer_id,
        profile.payment_method_id,
    )
    assert invoice.status == InvoiceStatus.PAID
    subscription.refresh_from_db()
    assert subscription.status == "active"
    status = sdk.checkout_sessions.retrieve(session.session_id)
    assert (status.payment_id, status.payment_status) == (
        invoice.payments.get().payment_id,
        "succeeded",
    )


def test_a_declined_card_is_shown_on_the_page_and_starts_nothing(
    fake_stripe,
    sdk,
    browser,
    product,
):
    session = sdk.checkout_sessions.create(
        product_cart=[{"product_id": product.product_id, "quantity": 1}],
        customer={"email": "eve@example.com"},
        billing_address=BILLING,
    )
    # Not the `page` fixture: the browser logs the fake's 402 answer as a console error.
    page = browser.new_page()
    page.goto(session.checkout_url)
    card = page.locator("#card-element")
    card.locator("input[placeholder=number]").fill("4000000000000002")  # declined when saved
    card.locator("input[placeholder=exp_month]").fill("12")
    card.locator("input[placeholder=exp_year]").fill("34")
    card.locator("input[placeholder=cvc]").fill("123")
    page.click("#pay")
    expect(page.locator("#card-error")).to_contain_text("declined")
    assert not Subscription.objects.exists()
    page.close()


def test_without_a_provider_the_page_confirms_with_a_button(
    sdk,
    live_server,
    page,
    product,
):
    session = sdk.checkout_sessions.create(
        product_cart=[{"product_id": product.product_id, "quantity": 1}],
        return_url=f"{live_server.url}/api/docs",
    )
    page.add_init_script(LISTEN)
    page.goto(session.checkout_url)
    expect(page.locator("#card-element")).to_have_count(0)
    page.fill("#id_email", "bob@example.com")
    page.fill("#id_name", "Bob")
    page.fill("#id_country", "US")
    fill_address(page)
    page.click("#pay")
    expect(page.locator("#checkout-message")).to_contain_text("is active")
    assert page.evaluate("window.__cspViolations") == []
    subscription = Subscription.objects.get()
    assert subscription.customer.email == "bob@example.com"
    page.click("#continue")
    page.wait_for_url(f"{live_server.url}/api/docs?*")
    page.go_back()  # a reload of the completed page starts nothing more
    page.reload()
    assert Subscription.objects.count() == 1
