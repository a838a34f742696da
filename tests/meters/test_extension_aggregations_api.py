"""The unique_count and min aggregations on the meters API: extensions of Dodo's wire that its
SDK's strict client still parses (it types `aggregation.type` as Dodo's four values, so the
extension travels in `aggregation.extended_type`), and refused input that names the field."""

from __future__ import annotations

import json

import pytest
from dodopayments import DodoPayments

from meters.models import Meter

pytestmark = pytest.mark.django_db


def create(api, aggregation: dict):
    body = {
        "name": "Active users",
        "event_name": "app.opened",
        "measurement_unit": "users",
        "aggregation": aggregation,
    }
    return api.post("/api/meters", json.dumps(body), content_type="application/json")


@pytest.mark.parametrize(
    ("sent", "stored", "answered"),
    [
        (
            {"type": "unique_count", "key": "user_id"},
            "unique_count",
            {"type": "count", "key": "user_id", "extended_type": "unique_count"},
        ),
        (
            {"type": "min", "key": "latency_ms"},
            "min",
            {"type": "max", "key": "latency_ms", "extended_type": "min"},
        ),
        # The answer sent back as it came (read, edit, send) means the same meter.
        (
            {"type": "count", "key": "user_id", "extended_type": "unique_count"},
            "unique_count",
            {"type": "count", "key": "user_id", "extended_type": "unique_count"},
        ),
        (
            {"type": "min", "key": "latency_ms", "extended_type": "min"},
            "min",
            {"type": "max", "key": "latency_ms", "extended_type": "min"},
        ),
        # Only Dodo's fields: Dodo's behaviour, answered without the extension field.
        ({"type": "count", "key": None}, "count", {"type": "count", "key": None}),
        (
            {"type": "max", "key": "n", "extended_type": None},
            "max",
            {"type": "max", "key": "n"},
        ),
    ],
)
def test_extension_aggregations_are_stored_and_answered_in_a_shape_dodo_clients_parse(
    api, sent, stored, answered
):
    response = create(api, sent)
    assert response.status_code == 201, response.content
    assert response.json()["aggregation"] == answered
    meter = Meter.objects.get(pk=response.json()["id"])
    assert meter.aggregation_type == stored
    assert api.get(f"/api/meters/{meter.pk}").json()["aggregation"] == answered


@pytest.mark.parametrize(
    ("aggregation", "field"),
    [
        ({"type": "unique_count"}, "aggregation.key"),
        ({"type": "min", "key": None}, "aggregation.key"),
        ({"type": "median", "key": "n"}, "aggregation.type"),
        ({"type": "sum", "key": "n", "extended_type": "unique_count"}, "aggregation.extended_type"),
        ({"type": "count", "key": "n", "extended_type": "min"}, "aggregation.extended_type"),
        ({"type": "count", "key": "n", "extended_type": "median"}, "aggregation.extended_type"),
        # Nothing a client sends is dropped silently.
        ({"type": "sum", "key": "n", "distinct": True}, "aggregation.distinct"),
    ],
)
def test_bad_aggregations_are_refused_naming_the_field(api, aggregation, field):
    response = create(api, aggregation)
    assert response.status_code == 422, response.content
    assert field in [error["field"] for error in response.json()["errors"]]
    assert not Meter.objects.exists()


def test_patch_turns_a_sum_meter_into_unique_count_and_back(api):
    meter_id = create(api, {"type": "sum", "key": "n"}).json()["id"]
    response = api.patch(
        f"/api/meters/{meter_id}",
        json.dumps({"aggregation": {"type": "unique_count", "key": "user_id"}}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["aggregation"]["extended_type"] == "unique_count"
    response = api.patch(
        f"/api/meters/{meter_id}",
        json.dumps({"aggregation": {"type": "count", "key": "user_id"}}),
        content_type="application/json",
    )
    assert response.json()["aggregation"] == {"type": "count", "key": "user_id"}
    assert Meter.objects.get(pk=meter_id).aggregation_type == "count"


@pytest.mark.django_db(transaction=True)
def test_the_strict_sdk_creates_retrieves_and_lists_extension_meters(live_server, live_api_key):
    sdk = DodoPayments(
        bearer_token=live_api_key,
        base_url=f"{live_server.url}/api",
        max_retries=0,
        _strict_response_validation=True,
    )
    users = sdk.meters.create(
        name="Active users",
        event_name="app.opened",
        measurement_unit="users",
        # The SDK's type says count|sum|max|last; it sends what it is given.
        aggregation={"type": "unique_count", "key": "user_id"},  # type: ignore[typeddict-item]
    )
    fastest = sdk.meters.create(
        name="Fastest answer",
        event_name="api.answered",
        measurement_unit="ms",
        aggregation={"type": "min", "key": "latency_ms"},  # type: ignore[typeddict-item]
    )
    for meter, fallback, extension in ((users, "count", "unique_count"), (fastest, "max", "min")):
        again = sdk.meters.retrieve(meter.id)
        assert again.aggregation.type == fallback
        assert again.aggregation.extended_type == extension
        assert again.aggregation.to_dict()["extended_type"] == extension
    listed = {meter.id: meter for meter in sdk.meters.list()}
    assert listed[users.id].aggregation.extended_type == "unique_count"
    assert listed[fastest.id].aggregation.key == "latency_ms"
    # An SDK user who never heard of the extension reads a plain Dodo meter.
    plain = sdk.meters.create(
        name="Calls",
        event_name="api.call",
        measurement_unit="calls",
        aggregation={"type": "count"},
    )
    assert plain.aggregation.to_dict() == {"type": "count", "key": None}
