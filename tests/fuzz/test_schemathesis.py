"""Schemathesis against the API's own OpenAPI schema (`/api/schema`), over real HTTP.

Every operation in the schema gets up to 50 generated requests, valid and invalid (schemathesis'
positive and negative modes), against pytest-django's live server. Ids, in paths and in bodies, are
either generated (mostly unknown: a clean 404 or 422 must come back) or, half the time, the id of a
real object seeded through the API first, so PATCH/DELETE/POST bodies reach the rules and writes
behind them.

Checked on every response: no 5xx; the documented content type and, where the schema describes the
body, that the body matches it; and the project's error contract: a 4xx is JSON with `code`,
`message` and `errors`, never a trace. Bugs this found are pinned in test_found_inputs.py.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

pytestmark = pytest.mark.slow


def seed(base: str, headers: dict) -> dict[str, str]:
    """One object of each kind, made through the API; returns their ids by path parameter name."""

    def post(path: str, body: dict) -> dict:
        response = requests.post(f"{base}/api/{path}", json=body, headers=headers, timeout=30)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return response.json()

    customer = post("customers", {"email": "fuzz@example.com", "name": "Fuzz"})
    meter = post(
        "meters",
        {
            "name": "Tokens",
            "event_name": "api.call",
            "measurement_unit": "tokens",
            "aggregation": {"type": "sum", "key": "tokens"},
            "filter": {
                "conjunction": "and",
                "clauses": [{"key": "model", "operator": "equals", "value": "large"}],
            },
        },
    )
    entitlement = post(
        "credit-entitlements",
        {
            "name": "Fuzz credits",
            "unit": "credits",
            "precision": 2,
            "rollover_enabled": False,
            "overage_enabled": False,
        },
    )
    product = post(
        "products",
        {
            "name": "Fuzz plan",
            "tax_category": "saas",
            "price": {
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 100,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "meters": [
                    {"meter_id": meter["id"], "price_per_unit": "0.5", "free_threshold": 10}
                ],
            },
            "credit_entitlements": [
                {"credit_entitlement_id": entitlement["id"], "credits_amount": "100"}
            ],
        },
    )
    subscription = post(
        "subscriptions",
        {
            "customer": {"customer_id": customer["customer_id"]},
            "product_id": product["product_id"],
            "quantity": 1,
            "billing": {"country": "US"},
        },
    )
    post(
        "events/ingest",
        {
            "events": [
                {
                    "event_id": "fuzz-seed-1",
                    "customer_id": customer["customer_id"],
                    "event_name": "api.call",
                    "metadata": {"tokens": 150, "model": "large"},
                }
            ]
        },
    )
    return {
        "customer_id": customer["customer_id"],
        "meter_id": meter["id"],
        "entitlement_id": entitlement["id"],
        "product_id": product["product_id"],
        "subscription_id": subscription["subscription_id"],
        "event_id": "fuzz-seed-1",
    }


@pytest.fixture
def auth_headers(live_api_key) -> dict:
    return {"Authorization": f"Bearer {live_api_key}"}


@pytest.fixture
def known_ids(live_server, auth_headers) -> dict[str, str]:
    return seed(live_server.url, auth_headers)


@pytest.fixture
def api_schema(live_server, auth_headers):
    schema = schemathesis.openapi.from_url(
        f"{live_server.url}/api/schema?format=json", headers=auth_headers, timeout=30
    )
    schema.config.update(base_url=live_server.url, headers=auth_headers)
    return schema


def errors_follow_the_contract(ctx, response, case):
    """The project's error contract: a 4xx is `{code, message, errors}`; no trace, ever."""
    assert "Traceback" not in response.text, response.text[:2000]
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict), body
        assert isinstance(body.get("code"), str) and body["code"], body
        assert isinstance(body.get("message"), str) and body["message"], body
        assert isinstance(body.get("errors"), list), body


CHECKS = [
    not_a_server_error,
    content_type_conformance,
    response_schema_conformance,
    errors_follow_the_contract,
]

schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=50,
    deadline=None,
    database=None,  # findings are reported with a curl line; nothing to replay from a cache
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_and_never_fails(case, data, known_ids):
    for name in list(case.path_parameters or {}):
        if name in known_ids and data.draw(st.booleans(), label=f"real {name}"):
            case.path_parameters[name] = known_ids[name]
    use_real_ids(case.body, known_ids, data)
    case.call_and_validate(checks=CHECKS, timeout=30)


# Ids inside bodies (`price.meters[0].meter_id`, `customer.customer_id`), by key.
BODY_ID_KEYS = {
    "meter_id": "meter_id",
    "product_id": "product_id",
    "customer_id": "customer_id",
    "subscription_id": "subscription_id",
    "credit_entitlement_id": "entitlement_id",
}


def use_real_ids(body: object, known_ids: dict[str, str], data) -> None:
    """Swap some generated ids in a body for real ones, so the rules behind them run too."""
    if isinstance(body, list):
        for item in body:
            use_real_ids(item, known_ids, data)
    elif isinstance(body, dict):
        for key, value in body.items():
            known = BODY_ID_KEYS.get(key)
            if known and isinstance(value, str) and data.draw(st.booleans(), label=f"real {key}"):
                body[key] = known_ids[known]
            else:
                use_real_ids(value, known_ids, data)
