"""The SDK, with its default retries, sends a refused request once.

`dodopayments` retries 408, 409, 429 and 5xx unless the answer says `x-should-retry`; a 409 here
(a reused idempotency key, a taken entitlement name) fails the same way every time, so the
retries only added ~1.3 s of backoff before the same error. Every 4xx but 408 and 429 says
`x-should-retry: false`; 429 and 503 stay retryable (they carry Retry-After).
"""

from __future__ import annotations

import dodopayments
import httpx
import pytest
from dodopayments import DodoPayments
from rest_framework.test import APIClient

from billing_site.models import ApiKey
from products.models import Customer


@pytest.fixture
def retrying_sdk(live_server, live_api_key):
    """The SDK as a user gets it (max_retries=2, the default), counting what it sends."""
    sent: list[str] = []

    def count(request: httpx.Request) -> None:
        sent.append(f"{request.method} {request.url.path}")

    http_client = dodopayments.DefaultHttpxClient(event_hooks={"request": [count]})
    client = DodoPayments(
        bearer_token=live_api_key,
        base_url=f"{live_server.url}/api",
        http_client=http_client,
        _strict_response_validation=True,
    )
    assert client.max_retries == 2
    yield client, sent
    client.close()


def test_a_reused_idempotency_key_is_sent_once(retrying_sdk):
    client, sent = retrying_sdk
    entitlement = client.credit_entitlements.create(
        name="API credits",
        unit="credits",
        precision=2,
        rollover_enabled=False,
        overage_enabled=False,
    )
    customer = client.customers.create(email="ada@example.com", name="Ada")
    entry = {
        "credit_entitlement_id": entitlement.id,
        "amount": "25",
        "entry_type": "credit",
        "idempotency_key": "bonus-1",
    }
    client.credit_entitlements.balances.create_ledger_entry(customer.customer_id, **entry)
    sent.clear()
    with pytest.raises(dodopayments.ConflictError) as refused:
        client.credit_entitlements.balances.create_ledger_entry(customer.customer_id, **entry)
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert len(sent) == 1, sent


def test_a_taken_entitlement_name_is_sent_once(retrying_sdk):
    client, sent = retrying_sdk
    settings = {"unit": "credits", "precision": 2, "rollover_enabled": False}
    client.credit_entitlements.create(name="Taken", overage_enabled=False, **settings)
    sent.clear()
    with pytest.raises(dodopayments.ConflictError):
        client.credit_entitlements.create(name="Taken", overage_enabled=False, **settings)
    assert sent == ["POST /api/credit-entitlements"]


def test_validation_errors_are_sent_once(retrying_sdk):
    client, sent = retrying_sdk
    with pytest.raises(dodopayments.UnprocessableEntityError) as refused:
        client.customers.create(email="not an email", name="Ada")
    assert refused.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(dodopayments.NotFoundError):
        client.customers.retrieve("cus_nobody")
    assert sent == ["POST /api/customers", "GET /api/customers/cus_nobody"]
    assert Customer.objects.count() == 0


@pytest.mark.django_db
def test_rate_limited_and_unavailable_answers_stay_retryable():
    """429 (with Retry-After) is worth retrying, so it carries no `x-should-retry: false`."""
    _, raw_key = ApiKey.create(
        name="one a minute", rate_limit_per_second=0, rate_limit_per_minute=1
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    # Three requests against one a minute: a minute boundary can admit one more, not two.
    answers = [client.get("/api/customers") for _ in range(3)]
    limited = [answer for answer in answers if answer.status_code == 429]
    assert limited, [answer.status_code for answer in answers]
    assert all("x-should-retry" not in answer for answer in limited)
    assert all(answer["Retry-After"] for answer in limited)
