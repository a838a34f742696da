"""Stripe, the payment provider: the one module that imports `stripe` (the official library).

It speaks in the project's terms (customers, payment-method sessions, charges, refunds, events)
and answers frozen values, so products/payments.py never sees a Stripe object. Every call that
moves money carries an idempotency key; `find_charge` / `find_refund` look a call up by that key
in the provider's own records, for when its answer was lost (a crash, a timeout) and for fakes
that ignore idempotency keys (localstripe does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import stripe
from django.conf import settings

NAME = "stripe"
# Charges created a little before the attempt was first requested are still looked at: clocks
# of two machines differ.
CLOCK_SKEW_SECONDS = 300


class ProviderUnavailable(Exception):
    """The call's outcome is unknown (no answer, a timeout, a 5xx, a rate limit, a wrong key):
    the money may or may not have moved, so the caller must look it up before trying again."""


class ProviderRefused(Exception):
    """The provider refused the request outright; nothing happened there."""


class InvalidSignature(Exception):
    """A webhook whose signature does not verify with STRIPE_WEBHOOK_SECRET, or is too old."""


@dataclass(frozen=True)
class Card:
    payment_method_id: str
    network: str | None
    type: str | None
    last_four: str | None
    exp_month: int | None
    exp_year: int | None


@dataclass(frozen=True)
class ChargeOutcome:
    status: Literal["succeeded", "failed", "processing"]
    provider_payment_id: str | None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class RefundOutcome:
    status: Literal["succeeded", "failed", "pending"]
    provider_refund_id: str | None
    error_message: str | None = None


def _client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_API_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        # Our own retries are the payment's: a lost answer is looked up, never simply resent.
        max_network_retries=0,
        http_client=stripe.new_default_http_client(
            timeout=settings.PAYMENT_PROVIDER_TIMEOUT_SECONDS
        ),
    )


def _unknown_outcome(error: stripe.StripeError) -> ProviderUnavailable:
    return ProviderUnavailable(f"{type(error).__name__}: {error.user_message or error}")


# Errors after which nothing is known about what the provider did (or that are our own
# configuration's fault, which must not count as the customer's failed payment).
_UNKNOWN = (
    stripe.APIConnectionError,
    stripe.APIError,
    stripe.RateLimitError,
    stripe.AuthenticationError,
    stripe.PermissionError,
    stripe.IdempotencyError,
)


def ensure_customer(*, customer_id: str, email: str, name: str) -> str:
    """A Stripe customer for ours (the idempotency key makes a repeat return the same one)."""
    try:
        created = _client().v1.customers.create(
            params={"email": email, "name": name, "metadata": {"customer_id": customer_id}},
            options={"idempotency_key": f"customer-{customer_id}"},
        )
    except _UNKNOWN as error:
        raise _unknown_outcome(error) from error
    except stripe.StripeError as error:
        raise ProviderRefused(error.user_message or str(error)) from error
    return created.id


def create_setup_intent(*, provider_customer_id: str, customer_id: str) -> tuple[str, str]:
    """(id, client secret) of a SetupIntent that saves a card for charges off-session."""
    try:
        intent = _client().v1.setup_intents.create(
            params={
                "customer": provider_customer_id,
                "usage": "off_session",
                "metadata": {"customer_id": customer_id},
            }
        )
    except _UNKNOWN as error:
        raise _unknown_outcome(error) from error
    except stripe.StripeError as error:
        raise ProviderRefused(error.user_message or str(error)) from error
    return intent.id, intent.client_secret or ""


def create_checkout_setup_intent(*, checkout_session_id: str) -> tuple[str, str]:
    """(id, client secret) of a SetupIntent for a checkout page: with no Stripe customer, as
    the checkout's customer may not exist before it completes (attach_payment_method then).
    One per session (the idempotency key), however often the page is loaded."""
    try:
        intent = _client().v1.setup_intents.create(
            params={
                "usage": "off_session",
                "metadata": {"checkout_session_id": checkout_session_id},
            },
            options={"idempotency_key": f"checkout-{checkout_session_id}"},
        )
    except _UNKNOWN as error:
        raise _unknown_outcome(error) from error
    except stripe.StripeError as error:
        raise ProviderRefused(error.user_message or str(error)) from error
    return intent.id, intent.client_secret or ""


def attach_payment_method(*, payment_method_id: str, provider_customer_id: str) -> None:
    """Attach a saved method to the Stripe customer, for charges off-session (a repeat for the
    same customer changes nothing)."""
    try:
        _client().v1.payment_methods.attach(
            payment_method_id, params={"customer": provider_customer_id}
        )
    except _UNKNOWN as error:
        raise _unknown_outcome(error) from error
    except stripe.StripeError as error:
        raise ProviderRefused(error.user_message or str(error)) from error


def setup_intent_method(setup_intent_id: str) -> str | None:
    """The payment method a SetupIntent saved, once it succeeded; None before."""
    try:
        intent = _client().v1.setup_intents.retrieve(setup_intent_id)
    except _UNKNOWN as error:
        raise _unknown_outcome(error) from error
    except stripe.StripeError as error:
        raise ProviderRefused(error.user_message or str(error)) from error
    if intent.status != "succeeded" or intent.payment_method is None:
        return None
    method = intent.payment_method
    return method if isinstance(method, str) else method.id


def card(payment_method_id: str) -> Card:
    try:
        method = _client().v1.payment_methods.retrieve(payment_method_id)
    except _UNKNOWN as error:
        raise _unknown_outcome(error) from error
    except stripe.StripeError as error:
        raise ProviderRefused(error.user_message or str(error)) from error
    details = method.card
    if details is None:
        return Card(payment_method_id, method.type, None, None, None, None)
    return Card(
        payment_method_id,
        details.brand,
        details.funding,
        details.last4,
        details.exp_month,
        details.exp_year,
    )


def _outcome(intent: Any) -> ChargeOutcome:
    """A PaymentIntent as the payment sees it. Off-session, a card that asks for the customer
    (3-D Secure) cannot be completed: that attempt failed."""
    status = intent.status
    if status == "succeeded":
        return ChargeOutcome("succeeded", intent.id)
    if status in ("processing", "requires_capture"):
        return ChargeOutcome("processing", intent.id)
    error = _plain(intent.last_payment_error)
    if status in ("requires_action", "requires_confirmation"):
        return ChargeOutcome(
            "failed", intent.id, "authentication_required", "The card asks for authentication."
        )
    return ChargeOutcome(
        "failed",
        intent.id,
        error.get("decline_code") or error.get("code") or "payment_failed",
        error.get("message") or f"The payment ended as {status}.",
    )


def charge(
    *,
    provider_customer_id: str,
    payment_method_id: str,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    metadata: dict[str, str],
) -> ChargeOutcome:
    """Create and confirm a PaymentIntent off-session for the saved method, once per key.

    Raises ProviderUnavailable when the outcome is unknown (then `find_charge` first)."""
    client = _client()
    try:
        intent = client.v1.payment_intents.create(
            params={
                "amount": amount_minor,
                "currency": currency.lower(),
                "customer": provider_customer_id,
                "payment_method": payment_method_id,
                "off_session": True,
                "confirm": True,
                "metadata": {**metadata, "idempotency_key": idempotency_key},
            },
            options={"idempotency_key": idempotency_key},
        )
    except stripe.CardError as error:
        return ChargeOutcome(
            "failed",
            _intent_of_error(client, error),
            (error.error and error.error.decline_code) or error.code or "card_declined",
            (error.user_message or str(error))[:500],
        )
    except _UNKNOWN as error:
        raise _unknown_outcome(error) from error
    except stripe.StripeError as error:
        # Refused outright (no such payment method, a bad amount): the attempt failed.
        return ChargeOutcome(
            "failed",
            None,
            error.code or "invalid_request",
            (error.user_message or str(error))[:500],
        )
    return _outcome(intent)


def _intent_of_error(client: stripe.StripeClient, error: stripe.CardError) -> str | None:
    """The declined PaymentIntent's id: Stripe names it in the error; localstripe names only
    the charge, which names it."""
    details = error.error
    if details is not None and details.payment_intent is not None:
        return details.payment_intent.id
    body = error.json_body if isinstance(error.json_body, dict) else {}
    inner = body.get("error")
    charge_id = inner.get("charge") if isinstance(inner, dict) else None
    if not charge_id:
        return None
    try:
        found = client.v1.charges.retrieve(charge_id)
    except stripe.StripeError:
        return None
    intent = found.payment_intent
    return intent if isinstance(intent, str) or intent is None else intent.id


def find_charge(
    *, provider_customer_id: str, idempotency_key: str, since: datetime
) -> ChargeOutcome | None:
    """The PaymentIntent an earlier call with this key created, if any money was asked for:
    the customer's charges since then, each with its PaymentIntent's key in the metadata."""
    client = _client()
    try:
        charges = client.v1.charges.list(
            params={
                "customer": provider_customer_id,
                "created": {"gt": int(since.timestamp()) - CLOCK_SKEW_SECONDS},
                "limit": 100,
            }
        )
        for found in charges.auto_paging_iter():
            intent_id = found.payment_intent
            if intent_id is None:
                continue
            if not isinstance(intent_id, str):
                intent_id = intent_id.id
            intent = client.v1.payment_intents.retrieve(intent_id)
            if _metadata(intent).get("idempotency_key") == idempotency_key:
                return _outcome(intent)
    except stripe.StripeError as error:
        raise _unknown_outcome(error) from error
    return None


def _plain(value: Any) -> dict:
    """A nested Stripe object as a plain dict (they are neither dicts nor mappings)."""
    if value is None:
        return {}
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def _metadata(obj: Any) -> dict[str, str]:
    return _plain(obj.metadata)


def payment_outcome(provider_payment_id: str) -> ChargeOutcome:
    """A PaymentIntent's current state (after a webhook, or for one still processing)."""
    try:
        return _outcome(_client().v1.payment_intents.retrieve(provider_payment_id))
    except stripe.StripeError as error:
        raise _unknown_outcome(error) from error


def refund(
    *, provider_payment_id: str, amount_minor: int, idempotency_key: str, metadata: dict[str, str]
) -> RefundOutcome:
    try:
        created = _client().v1.refunds.create(
            params={
                "payment_intent": provider_payment_id,
                "amount": amount_minor,
                "metadata": {**metadata, "idempotency_key": idempotency_key},
            },
            options={"idempotency_key": idempotency_key},
        )
    except _UNKNOWN as error:
        raise _unknown_outcome(error) from error
    except stripe.StripeError as error:
        return RefundOutcome("failed", None, (error.user_message or str(error))[:500])
    return _refund_outcome(created)


def _refund_outcome(created: Any) -> RefundOutcome:
    status = created.status
    if status == "succeeded":
        return RefundOutcome("succeeded", created.id)
    if status in ("failed", "canceled"):
        return RefundOutcome("failed", created.id, created.failure_reason or status)
    return RefundOutcome("pending", created.id)


def find_refund(*, provider_payment_id: str, idempotency_key: str) -> RefundOutcome | None:
    """The refund an earlier call with this key made, if any."""
    try:
        refunds = _client().v1.refunds.list(
            params={"payment_intent": provider_payment_id, "limit": 100}
        )
        for found in refunds.auto_paging_iter():
            if _metadata(found).get("idempotency_key") == idempotency_key:
                return _refund_outcome(found)
    except stripe.StripeError as error:
        raise _unknown_outcome(error) from error
    return None


def verify_event(payload: bytes, signature: str | None) -> dict:
    """The event Stripe signed, as plain JSON; InvalidSignature when the `Stripe-Signature`
    header does not verify with STRIPE_WEBHOOK_SECRET or its timestamp is more than five
    minutes off (a replay)."""
    if not signature or not settings.STRIPE_WEBHOOK_SECRET:
        raise InvalidSignature("No Stripe-Signature header.")
    try:
        stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
    except stripe.SignatureVerificationError as error:
        raise InvalidSignature(str(error)) from None
    except ValueError:
        raise InvalidSignature("The body is not JSON.") from None
    event = json.loads(payload)
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise InvalidSignature("The body is not a Stripe event.")
    return event
