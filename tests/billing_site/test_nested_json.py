"""Deeply nested JSON: refused with a 422 naming the field, wherever it is sent, never a 500.

600 levels once passed the parser and blew the stack later (`RecursionError` in `exact_dumps`,
or in DRF's JSONField check): a 500 with a 120 KB trace per request. Bodies are bounded at
MAX_JSON_DEPTH levels while parsing, and serializing no longer recurses at all.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from billing_site.jsonutil import MAX_JSON_DEPTH, JSONTooDeep, exact_dumps, exact_loads
from events.models import Event
from meters.models import Meter
from products.models import Customer, Product
from tests.factories import make_customer
from tests.products.factories import make_meter

pytestmark = pytest.mark.django_db

DEPTH = 600


def nested_list(levels: int) -> str:
    return "[" * levels + "]" * levels


def nested_object(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def send(api, method: str, path: str, text: str):
    api.raise_request_exception = False  # a 500 must come back as an answer, not a test error
    return api.generic(method, path, text, content_type="application/json")


def assert_refused(response, field: str) -> dict:
    text = response.content.decode()
    assert response.status_code == 422, text
    assert "Traceback" not in text and len(text) < 1000
    body = json.loads(text)
    assert body["code"] == "INVALID_REQUEST_BODY"
    assert [error["field"] for error in body["errors"]] == [field], body
    assert f"more than {MAX_JSON_DEPTH} levels" in body["errors"][0]["message"]
    return body


METER = {"name": "M", "event_name": "x", "measurement_unit": "u", "aggregation": {"type": "count"}}
CUSTOMER = {"email": "a@example.com", "name": "A"}


def with_raw(fields: dict, **raw: str) -> str:
    """A JSON object of `fields`, plus members whose values are given as JSON text."""
    members = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in fields.items()]
    members += [f"{json.dumps(k)}:{text}" for k, text in raw.items()]
    return "{" + ",".join(members) + "}"


def wrap(key: str, text: str) -> str:
    return "{" + json.dumps(key) + ":" + text + "}"


@pytest.mark.parametrize("levels", [DEPTH, 100_000])
def test_nested_ingest_metadata_is_refused_naming_the_event(api, levels):
    good = {"event_id": "ok", "customer_id": "c", "event_name": "x"}
    bad = with_raw(
        {"event_id": "e1", "customer_id": "c", "event_name": "x"},
        metadata=wrap("k", nested_list(levels)),
    )
    body = '{"events":[' + json.dumps(good) + "," + bad + "]}"
    answer = assert_refused(send(api, "POST", "/api/events/ingest", body), "events[1].metadata.k")
    assert answer["errors"][0]["index"] == 1
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("path", "body", "field", "model"),
    [
        pytest.param(
            "/api/customers",
            with_raw(CUSTOMER, metadata=wrap("k", nested_object(DEPTH))),
            "metadata",
            Customer,
            id="customer-metadata",
        ),
        pytest.param(
            "/api/meters",
            with_raw(METER, filter=nested_object(DEPTH)),
            "filter",
            Meter,
            id="meter-filter",
        ),
        pytest.param(
            "/api/meters",
            with_raw(
                METER,
                filter='{"conjunction":"and","clauses":['
                + with_raw({"key": "k", "operator": "equals"}, value=nested_list(DEPTH))
                + "]}",
            ),
            "filter",
            Meter,
            id="meter-filter-value",
        ),
        pytest.param(
            "/api/products",
            with_raw({"name": "P", "tax_category": "saas"}, price=nested_object(DEPTH)),
            "price",
            Product,
            id="product-price",
        ),
        pytest.param("/api/customers", nested_list(DEPTH), "body", Customer, id="whole-body"),
        # Deeper than the parser can go: still the field, found in the text.
        pytest.param(
            "/api/customers",
            with_raw(CUSTOMER, metadata=nested_object(100_000)),
            "metadata",
            Customer,
            id="beyond-the-parser",
        ),
    ],
)
def test_nested_create_bodies_are_refused_naming_the_field(api, path, body, field, model):
    assert_refused(send(api, "POST", path, body), field)
    assert model.objects.count() == 0


def test_nested_updates_are_refused_and_change_nothing(api):
    customer = make_customer()
    meter = make_meter("Calls", "api.call", now=timezone.now())
    assert_refused(
        send(
            api,
            "PATCH",
            f"/api/customers/{customer.customer_id}",
            with_raw({"name": "B"}, metadata=nested_object(DEPTH)),
        ),
        "metadata",
    )
    assert_refused(
        send(api, "PATCH", f"/api/meters/{meter.id}", with_raw({}, filter=nested_list(DEPTH))),
        "filter",
    )
    customer.refresh_from_db()
    meter.refresh_from_db()
    assert customer.name != "B" and customer.metadata == {}
    assert meter.filter is None


def test_the_deepest_legitimate_bodies_still_parse(api):
    """A 3-level filter is the deepest body the API takes (8 levels); 32 are allowed."""
    condition = {"key": "tier", "operator": "equals", "value": "pro"}
    filter = {
        "conjunction": "and",
        "clauses": [
            {"conjunction": "or", "clauses": [{"conjunction": "and", "clauses": [condition]}]}
        ],
    }
    answer = api.post("/api/meters", {**METER, "filter": filter}, format="json")
    assert answer.status_code in (200, 201), answer.content
    assert exact_loads(nested_list(MAX_JSON_DEPTH)) is not None
    with pytest.raises(JSONTooDeep):
        exact_loads(nested_list(MAX_JSON_DEPTH + 1))


def test_serializing_never_recurses():
    """`exact_dumps` writes any depth (it once raised RecursionError near 330 levels) and keeps
    its output byte for byte."""
    deep: list = []
    innermost = deep
    for _ in range(100_000):
        innermost.append([])
        innermost = innermost[0]
    assert exact_dumps(deep) == nested_list(100_001)
    value = {"a": [1, Decimal("0.10"), "x\u00e9", None, True, False, {}, [], (2,)], "b": {"c": {}}}
    assert exact_dumps(value) == '{"a":[1,0.10,"x\u00e9",null,true,false,{},[],[2]],"b":{"c":{}}}'
    assert json.loads(exact_dumps(value), parse_float=Decimal) == json.loads(
        json.dumps(value, default=str).replace('"0.10"', "0.10"), parse_float=Decimal
    )


def test_the_admin_refuses_nested_json_in_its_json_fields(admin_client: Client):
    """The admin's JSON fields parse with the same bound (ExactJSONDecoder): a form error,
    not a RecursionError on save."""
    customer = make_customer()
    url = f"/admin/products/customer/{customer.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields}
    data["metadata"] = nested_object(DEPTH)
    response = admin_client.post(url, data)
    assert response.status_code == 200  # the form again, with its error
    assert "metadata" in response.context["adminform"].form.errors
    customer.refresh_from_db()
    assert customer.metadata == {}
