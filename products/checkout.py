"""Dodo's checkout sessions: a merchant asks for one (`POST /checkouts`), the customer completes
the page at `/checkout/{session_id}` (products/checkout_views.py), and completing it starts the
subscription through products/services.py (the same rules as `POST /subscriptions`) and, with a
payment provider, makes the card typed there the customer's payment method through
products/payments.py, which charges it at each period close.

Exactly once: completion locks the session row and starts a subscription only while the
session is open (the one-to-one `subscription` column backs it up), so a double submit or a
reload starts one. The card is checked at the provider before the lock (never trusted from the
browser) and saved after commit; a failure to save it is tried again when the completed page is
loaded, and the first charge looks at the customer's methods as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.db import transaction

from billing_site.errors import Conflict, InvalidInput, NotFound
from billing_site.strict import refuse, refuse_unknown, unsupported
from billing_site.wire import timestamp_text
from products import payments, services, stripe_provider
from products.addresses import COUNTRIES, validate_billing
from products.models import (
    CheckoutSession,
    CheckoutStatus,
    Customer,
    Payment,
    PaymentStatus,
    Product,
    Subscription,
)
from products.payment_wire import WIRE_STATUS

logger = logging.getLogger(__name__)

NO_DISCOUNTS = "Discount codes are not supported by this server; send null or omit it."
NO_TAX_IDS = "Tax ids are not supported by this server; send null or omit it."
NO_CUSTOM_FIELDS = "Custom fields are not supported by this server; send null or [] or omit it."
CARDS_ONLY = (
    "The checkout page collects cards only: confirm is not supported (the customer confirms "
    "on the page); send false/null or omit it."
)

CART_ITEM_FIELDS = ("product_id", "quantity", "addons", "amount", "credit_entitlements")
# Dodo's feature flags this page honours (the editing flags: a field given at creation is
# shown read-only unless its flag is true; a field not given is always asked).
EDITABLE_CUSTOMER = ("email", "name")
EDITABLE_ADDRESS = ("country", "state", "city", "street", "zipcode")
HONOURED_FLAGS = (
    "allow_phone_number_collection",
    "require_phone_number",
    "always_create_new_customer",
    "redirect_immediately",
    "require_cardholder_name",
    *(f"allow_customer_editing_{name}" for name in (*EDITABLE_CUSTOMER, *EDITABLE_ADDRESS)),
    # One currency per product (nothing to select) and always one page: accepted either way.
    "allow_currency_selection",
    "single_page",
)
# Flags that would offer what this server does not have: only false.
NOT_OFFERED_FLAGS = (
    "allow_discount_code",
    "allow_tax_id",
    "require_tax_id",
    "allow_customer_editing_tax_id",
    "allow_customer_editing_business_name",
    "allow_editing_addons",
)
CUSTOMIZATION_FIELDS = (
    "force_language",
    "show_on_demand_tag",
    "show_order_details",
    "theme",
    "theme_config",
)
THEMES = ("dark", "light", "system")
MAX_URL_LENGTH = 2048
# The address lines the page requires (state is optional); with minimal_address Dodo's rule:
# only the zip code (and the country, which every address here has).
ADDRESS_REQUIRED = ("country", "street", "city", "zipcode")


class CheckoutClosed(Conflict):
    code = "CHECKOUT_CLOSED"


class CardNotConfirmed(InvalidInput):
    """The page was submitted before the provider confirmed the card."""


@dataclass(frozen=True)
class CheckoutRequest:
    """A checked `POST /checkouts` (or preview) body: what the session will start."""

    product: Product
    quantity: int
    trial_period_days: int
    customer: dict | None  # services.customer_request's answer
    billing_address: dict | None
    return_url: str | None = None
    cancel_url: str | None = None
    metadata: dict = field(default_factory=dict)
    customer_business_name: str | None = None
    minimal_address: bool = False
    feature_flags: dict = field(default_factory=dict)
    customization: dict = field(default_factory=dict)
    allowed_payment_method_types: list | None = None


def _error(name: str, message: str) -> InvalidInput:
    return InvalidInput.from_errors([{"field": name, "message": message}])


def _url(values: Mapping, name: str) -> str | None:
    value = values.get(name)
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or len(value) > MAX_URL_LENGTH
    ):
        raise _error(name, f"Must be an http(s) URL of at most {MAX_URL_LENGTH} characters.")
    return value


def _cart(cart: object) -> tuple[Product, int, dict]:
    if not isinstance(cart, list) or len(cart) != 1:
        raise _error(
            "product_cart",
            "Must hold exactly one subscription product (no one-time products or product "
            "collections here).",
        )
    item = cart[0]
    if not isinstance(item, dict):
        raise _error("product_cart[0]", "Must be an object {product_id, quantity}.")
    refuse_unknown(item, CART_ITEM_FIELDS, "product_cart[0]")
    unsupported(
        item,
        ("addons",),
        "Addons are not supported for usage based billing.",
        path="product_cart[0]",
        code="ADDONS_IN_USAGE_BASED_BILLING_NOT_SUPPORTED",
    )
    unsupported(
        item,
        ("amount",),
        "Pay what you want is for one-time products; send null or omit it.",
        path="product_cart[0]",
    )
    unsupported(
        item,
        ("credit_entitlements",),
        "Per-checkout credit overrides are not supported; send null or [] or omit it.",
        path="product_cart[0]",
    )
    product_id = item.get("product_id")
    product = Product.objects.filter(pk=product_id).first() if isinstance(product_id, str) else None
    if product is None:
        raise _error("product_cart[0].product_id", f"No product {product_id!r}.")
    if "quantity" not in item:
        raise _error("product_cart[0].quantity", "Is required.")
    return product, item["quantity"], item


def _flags(values: Mapping) -> dict:
    flags = values.get("feature_flags")
    if flags is None:
        return {}
    if not isinstance(flags, dict):
        raise _error("feature_flags", "Must be an object of booleans.")
    refuse_unknown(flags, (*HONOURED_FLAGS, *NOT_OFFERED_FLAGS), "feature_flags")
    refuse(
        [
            {"field": f"feature_flags.{name}", "message": "Must be true or false."}
            for name, value in flags.items()
            if not isinstance(value, bool)
        ]
    )
    unsupported(
        flags,
        NOT_OFFERED_FLAGS,
        "This server has no discount codes, tax ids or addons: only false.",
        path="feature_flags",
    )
    if flags.get("require_phone_number") and flags.get("allow_phone_number_collection") is False:
        raise _error(
            "feature_flags.require_phone_number",
            "Requires allow_phone_number_collection (not false).",
        )
    return flags


def _customization(values: Mapping) -> dict:
    shown = values.get("customization")
    if shown is None:
        return {}
    if not isinstance(shown, dict):
        raise _error("customization", "Must be an object.")
    refuse_unknown(shown, CUSTOMIZATION_FIELDS, "customization")
    errors = []
    if shown.get("force_language") not in (None, "en"):
        errors.append(
            {"field": "customization.force_language", "message": "The page is in English: en."}
        )
    if shown.get("theme") not in (None, *THEMES):
        errors.append({"field": "customization.theme", "message": "Must be dark, light, system."})
    for name in ("show_on_demand_tag", "show_order_details"):
        if name in shown and not isinstance(shown[name], bool):
            errors.append({"field": f"customization.{name}", "message": "Must be true or false."})
    refuse(errors)
    unsupported(
        shown,
        ("theme_config",),
        "Custom theme colours are not supported; send null or omit it.",
        path="customization",
    )
    return {name: value for name, value in shown.items() if name != "theme_config"}


def _payment_method_types(values: Mapping) -> list | None:
    types = values.get("allowed_payment_method_types")
    if types is None:
        return None
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise _error("allowed_payment_method_types", "Must be a list of payment method types.")
    if payments.provider_enabled() and not {"credit", "debit"} & set(types):
        raise _error(
            "allowed_payment_method_types",
            "The checkout page takes cards only: include credit or debit.",
        )
    return types


def _subscription_data(values: Mapping) -> object:
    data = values.get("subscription_data")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise _error("subscription_data", "Must be an object {trial_period_days}.")
    refuse_unknown(data, ("on_demand", "trial_period_days"), "subscription_data")
    unsupported(
        data,
        ("on_demand",),
        "On-demand subscriptions are not supported for usage based billing.",
        path="subscription_data",
        code="ON_DEMAND_USAGE_BASED_BILLING_NOT_SUPPORTED",
    )
    return data.get("trial_period_days")


def checkout_request(values: Mapping) -> CheckoutRequest:
    """Check a create or preview body (its top-level fields typed by the API's serializer),
    naming every field refused. Writes nothing."""
    unsupported(values, ("discount_code", "discount_codes"), NO_DISCOUNTS)
    unsupported(values, ("tax_id",), NO_TAX_IDS)
    unsupported(values, ("custom_fields",), NO_CUSTOM_FIELDS)
    unsupported(values, ("confirm", "payment_method_id"), CARDS_ONLY)
    unsupported(
        values,
        ("product_collection_id",),
        "Product collections are not supported; send null or omit it.",
    )
    unsupported(
        values,
        ("force_3ds", "mandate_min_amount_inr_paise"),
        "Not supported by this server (Stripe decides on 3-D Secure); send null or omit it.",
    )
    unsupported(
        values,
        ("show_saved_payment_methods",),
        "The page always takes a new card here; send false or omit it.",
    )
    product, quantity, _ = _cart(values.get("product_cart"))
    trial = _subscription_data(values)
    trial_days = services.check_subscription_terms(
        product=product,
        quantity=quantity,
        trial_period_days=trial,
        fields=(
            "product_cart[0].product_id",
            "product_cart[0].quantity",
            "subscription_data.trial_period_days",
        ),
    )
    currency = values.get("billing_currency")
    if currency is not None and currency != product.currency:
        raise _error("billing_currency", f"The product is billed in {product.currency} only.")
    flags = _flags(values)
    customer = None
    if values.get("customer") is not None:
        customer = services.customer_request(values["customer"])
    if customer is not None and "customer_id" in customer:
        refuse(
            [
                {
                    "field": f"feature_flags.allow_customer_editing_{name}",
                    "message": "An existing customer's details are not edited at checkout.",
                }
                for name in EDITABLE_CUSTOMER
                if flags.get(f"allow_customer_editing_{name}")
            ]
        )
        existing = Customer.objects.get(pk=customer["customer_id"])
        if flags.get("require_phone_number") and not existing.phone_number:
            raise _error("feature_flags.require_phone_number", "The customer has no phone number.")
    address = values.get("billing_address")
    return CheckoutRequest(
        product=product,
        quantity=quantity,
        trial_period_days=trial_days,
        customer=customer,
        billing_address=None if address is None else validate_billing(address, "billing_address"),
        return_url=_url(values, "return_url"),
        cancel_url=_url(values, "cancel_url"),
        metadata=values.get("metadata") or {},
        customer_business_name=values.get("customer_business_name"),
        # Dodo: true by default for the single-page flow.
        minimal_address=bool(
            values.get("minimal_address")
            if values.get("minimal_address") is not None
            else flags.get("single_page")
        ),
        feature_flags=flags,
        customization=_customization(values),
        allowed_payment_method_types=_payment_method_types(values),
    )


def create_session(request: CheckoutRequest, *, now: datetime) -> CheckoutSession:
    """Store the session; nothing else is written until the customer completes it."""
    if payments.provider_enabled() and not settings.STRIPE_PUBLISHABLE_KEY:
        raise payments.PaymentProviderNotConfigured(
            "STRIPE_PUBLISHABLE_KEY is not set: the checkout page cannot collect a card."
        )
    customer = request.customer or {}
    return CheckoutSession.objects.create(
        product=request.product,
        quantity=request.quantity,
        customer_id=customer.get("customer_id"),
        new_customer={} if "customer_id" in customer else customer,
        billing_address=request.billing_address,
        return_url=request.return_url,
        cancel_url=request.cancel_url,
        metadata=request.metadata,
        trial_period_days=request.trial_period_days or None,
        customer_business_name=request.customer_business_name,
        minimal_address=request.minimal_address,
        feature_flags=request.feature_flags,
        customization=request.customization,
        allowed_payment_method_types=request.allowed_payment_method_types,
        created_at=now,
        expires_at=now + timedelta(hours=settings.CHECKOUT_SESSION_HOURS),
    )


def first_period_end(product: Product, trial_period_days: int, now: datetime) -> datetime:
    """When a subscription started now would first be billed (the subscription's own rule)."""
    draft = Subscription(
        anchor=now,
        interval_unit=product.interval_unit,
        interval_count=product.interval_count,
        trial_period_days=trial_period_days,
    )
    return draft.period(0).end


# --- the page -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageField:
    """One input of the checkout page: `editable` false shows the merchant's value as text."""

    name: str
    label: str
    value: str
    editable: bool
    required: bool


def page_fields(session: CheckoutSession) -> list[PageField]:
    """The customer and address inputs the page shows, by the session's flags."""
    shown: list[PageField] = []
    if session.customer_id is None:
        given = session.new_customer or {}
        for name, label in (("email", "Email"), ("name", "Name")):
            value = given.get(name) or ""
            editable = not value or session.flag(f"allow_customer_editing_{name}")
            shown.append(PageField(name, label, value, editable, name == "email"))
        if session.flag("allow_phone_number_collection", True):
            value = given.get("phone_number") or ""
            required = session.flag("require_phone_number")
            shown.append(PageField("phone_number", "Phone", value, not value, required))
    address = session.billing_address or {}
    needed = {"country", "zipcode"} if session.minimal_address else set(ADDRESS_REQUIRED)
    for name in EDITABLE_ADDRESS:
        value = address.get(name) or ""
        editable = not value or session.flag(f"allow_customer_editing_{name}")
        shown.append(PageField(name, name.capitalize(), value, editable, name in needed))
    return shown


def _submitted(session: CheckoutSession, form: Mapping[str, str]) -> tuple[dict, dict]:
    """(customer request, billing address) from the page's form; a 422 naming each missing or
    bad input. Inputs shown read-only keep the merchant's value whatever the form says."""
    values: dict[str, str] = {}
    errors = []
    for shown in page_fields(session):
        value = (form.get(shown.name) or "").strip() if shown.editable else shown.value
        if shown.required and not value:
            errors.append({"field": shown.name, "message": "Is required."})
        values[shown.name] = value
    email = values.get("email")
    if email and ("@" not in email or any(c.isspace() for c in email)):
        errors.append({"field": "email", "message": "An email address such as name@example.com."})
    if values.get("country") and values["country"].upper() not in COUNTRIES:
        errors.append({"field": "country", "message": "A two-letter country code such as US."})
    if (
        payments.provider_enabled()
        and session.flag("require_cardholder_name")
        and not (form.get("cardholder_name") or "").strip()
    ):
        errors.append({"field": "cardholder_name", "message": "Is required."})
    refuse(errors)
    address = {name: values[name] for name in EDITABLE_ADDRESS if values.get(name)}
    address["country"] = address["country"].upper()
    billing = validate_billing(address, "billing_address")
    if session.customer_id is not None:
        return {"customer_id": session.customer_id}, billing
    customer = {
        "email": values["email"],
        "name": values.get("name") or None,
        "phone_number": values.get("phone_number") or None,
    }
    return services.customer_request(customer, field="customer"), billing


def card_form(session: CheckoutSession) -> str:
    """The client secret of the session's SetupIntent, created on the page's first load (a
    second concurrent load keeps the first one stored)."""
    if session.setup_client_secret:
        return session.setup_client_secret
    try:
        intent_id, secret = stripe_provider.create_checkout_setup_intent(
            checkout_session_id=session.session_id
        )
    except (stripe_provider.ProviderUnavailable, stripe_provider.ProviderRefused) as error:
        raise payments.PaymentProviderUnavailable(
            f"The payment provider did not answer: {error}"
        ) from None
    CheckoutSession.objects.filter(pk=session.pk, setup_intent_id__isnull=True).update(
        setup_intent_id=intent_id, setup_client_secret=secret
    )
    session.refresh_from_db(fields=["setup_intent_id", "setup_client_secret"])
    return session.setup_client_secret or ""


def _confirmed_card(session: CheckoutSession) -> str:
    """The payment method the session's SetupIntent saved, asked of the provider."""
    method = None
    if session.setup_intent_id:
        try:
            method = stripe_provider.setup_intent_method(session.setup_intent_id)
        except (stripe_provider.ProviderUnavailable, stripe_provider.ProviderRefused) as error:
            raise payments.PaymentProviderUnavailable(
                f"The payment provider did not answer: {error}"
            ) from None
    if method is None:
        raise CardNotConfirmed.from_errors(
            [{"field": "card", "message": "The card has not been confirmed yet."}]
        )
    return method


def complete(session_id: str, *, form: Mapping[str, str], now: datetime) -> CheckoutSession:
    """The customer submitted the page: start the subscription (once) and save the card.

    A session already completed is answered as it is (a double submit, a reload); an expired
    one raises CheckoutClosed. Lock order: the session, then what create_subscription locks."""
    session = CheckoutSession.objects.filter(pk=session_id).first()
    if session is None:
        raise NotFound(f"No checkout session {session_id}.")
    if session.status == CheckoutStatus.COMPLETED:
        return session
    if session.is_expired(now):
        raise CheckoutClosed("This checkout session has expired.")
    customer_request, billing = _submitted(session, form)
    card = _confirmed_card(session) if payments.provider_enabled() else None
    with transaction.atomic():
        locked = CheckoutSession.objects.select_for_update().get(pk=session_id)
        if locked.status == CheckoutStatus.COMPLETED:
            return locked
        customer = services.resolve_customer(
            customer_request, always_new=locked.flag("always_create_new_customer")
        )
        subscription = services.create_subscription(
            customer=customer,
            product=locked.product,
            now=now,
            quantity=locked.quantity,
            billing=billing,
            metadata=locked.metadata,
            trial_period_days=locked.trial_period_days,
            customer_business_name=locked.customer_business_name,
        )
        locked.status = CheckoutStatus.COMPLETED
        locked.customer = customer
        locked.subscription = subscription
        locked.billing_address = billing
        locked.payment_method_id = card
        locked.completed_at = now
        locked.save(
            update_fields=[
                "status",
                "customer",
                "subscription",
                "billing_address",
                "payment_method_id",
                "completed_at",
            ]
        )
    save_card(locked, now=now)
    return locked


def save_card(session: CheckoutSession, *, now: datetime) -> bool:
    """Make the session's card the customer's payment method, if not done yet (after the
    completion's commit, and again on the completed page if the provider failed then)."""
    if session.card_saved_at is not None or not session.payment_method_id:
        return True
    if session.customer is None or not payments.provider_enabled():
        return False
    try:
        payments.save_payment_method(session.customer, session.payment_method_id, now=now)
    except (stripe_provider.ProviderUnavailable, stripe_provider.ProviderRefused) as error:
        logger.warning("checkout %s: the card was not saved yet: %s", session.pk, error)
        return False
    CheckoutSession.objects.filter(pk=session.pk).update(card_saved_at=now)
    session.card_saved_at = now
    return True


def return_address(session: CheckoutSession) -> str | None:
    """`return_url` with the outcome appended, as Dodo redirects: `subscription_id`,
    `status` (the subscription's) and `session_id`."""
    if not session.return_url:
        return None
    subscription = session.subscription
    query = {"session_id": session.session_id}
    if subscription is not None:
        query |= {"subscription_id": subscription.subscription_id, "status": subscription.status}
    glue = "&" if urlsplit(session.return_url).query else "?"
    return session.return_url + glue + urlencode(query)


# --- what the API shows ---------------------------------------------------------------------------


def session_status(session: CheckoutSession, *, now: datetime) -> dict:
    """Dodo's CheckoutSessionStatus, plus `status` and `subscription_id` (extensions).

    This server takes no payment when a checkout completes (the first charge is the first
    period's invoice): `payment_id` is that first invoice's payment once it exists; until then
    a completed session's `payment_status` is `succeeded` (the card, if any, is saved) and an
    open one's null."""
    customer = session.customer
    email = customer.email if customer else (session.new_customer or {}).get("email")
    name = customer.name if customer else (session.new_customer or {}).get("name")
    payment = None
    if session.subscription_id:
        payment = (
            Payment.objects.filter(subscription_id=session.subscription_id)
            .order_by("created_at", "retry_attempt")
            .first()
        )
    if payment is not None:
        payment_status: str | None = WIRE_STATUS[PaymentStatus(payment.status)]
    elif session.status == CheckoutStatus.COMPLETED:
        payment_status = "succeeded"
    else:
        payment_status = None
    state = "expired" if session.is_expired(now) else session.status
    return {
        "id": session.session_id,
        "created_at": timestamp_text(session.created_at),
        "customer_email": email,
        "customer_name": name,
        "payment_id": payment.payment_id if payment else None,
        "payment_status": payment_status,
        "status": state,
        "subscription_id": session.subscription_id,
    }
