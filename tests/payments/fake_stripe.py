"""The fake Stripe's side of the payment tests: what a customer's browser does there (Stripe.js
confirming a SetupIntent), what Stripe itself would send us (signed events), and the fake's own
records, read through its API, to count what was really charged."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

SECRET_KEY = "sk_test_payments"
PUBLISHABLE_KEY = "pk_test_payments"
WEBHOOK_SECRET = "whsec_test_payments"
GOOD_CARD = "4242424242424242"
# Saved without trouble, declined on every charge ("chargeCustomerFail" in Stripe's test cards):
# what dunning needs. 4000000000000002 is declined already when it is saved.
DECLINED_ON_CHARGE = "4000000000000341"
DECLINED_WHEN_SAVED = "4000000000000002"


class FakeStripe:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def _get(self, path: str, **params) -> dict:
        answer = self.http.get(path, params=params, auth=(SECRET_KEY, ""))
        answer.raise_for_status()
        return answer.json()

    def flush(self) -> None:
        self.http.delete("/_config/data").raise_for_status()

    def confirm_setup(self, session: dict, card_number: str) -> httpx.Response:
        """What Stripe.js does with the session's client secret and the card typed in: with the
        publishable key, as a browser holds no secret key."""
        return self.http.post(
            f"/v1/setup_intents/{session['setup_intent_id']}/confirm",
            data={
                "key": PUBLISHABLE_KEY,
                "client_secret": session["client_secret"],
                "payment_method_data[type]": "card",
                "payment_method_data[card][number]": card_number,
                "payment_method_data[card][exp_month]": "12",
                "payment_method_data[card][exp_year]": "2034",
                "payment_method_data[card][cvc]": "123",
            },
        )

    def setup_intent(self, setup_intent_id: str) -> dict:
        return self._get(f"/v1/setup_intents/{setup_intent_id}")

    def payment_intents(self) -> list[dict]:
        """Every PaymentIntent the fake holds (its list is not filtered by customer)."""
        found: list[dict] = []
        params: dict = {"limit": 100}
        while True:
            page = self._get("/v1/payment_intents", **params)
            found += page["data"]
            if not page["has_more"]:
                return found
            params["starting_after"] = page["data"][-1]["id"]

    def succeeded_charges_of(self, invoice_id: str) -> list[dict]:
        return [
            intent
            for intent in self.payment_intents()
            if intent["metadata"].get("invoice_id") == invoice_id
            and intent["status"] == "succeeded"
        ]

    def payment_intent(self, intent_id: str) -> dict:
        return self._get(f"/v1/payment_intents/{intent_id}")


def signed(event: dict, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple:
    """(body, Stripe-Signature header) as Stripe signs a webhook: HMAC-SHA256 of
    "timestamp.body" with the endpoint's secret. A real signature, checked by the stripe
    library in the server."""
    body = json.dumps(event).encode()
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), b"%d.%s" % (timestamp, body), hashlib.sha256).hexdigest()
    return body, f"t={timestamp},v1={digest}"


def event(event_id: str, event_type: str, obj: dict) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }
