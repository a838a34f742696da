"""Creating and editing meters in the admin: the custom form behind "Add meter", saved through
meters.services, with the rules' errors shown next to the field (filter errors by their path)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone

from billing_site.jsonutil import exact_dumps
from meters.models import Meter
from tests.factories import event, ingest_events
from tests.products.factories import make_meter

FILTER = {
    "conjunction": "and",
    "clauses": [
        {"key": "region", "operator": "equals", "value": "eu"},
        {
            "conjunction": "or",
            "clauses": [
                {"key": "model", "operator": "contains", "value": "gpt"},
                {"key": "tokens", "operator": "greater_than", "value": Decimal("0.1")},
            ],
        },
    ],
}


def form_data(**overrides) -> dict:
    data = {
        "name": "Tokens",
        "description": "",
        "event_name": "llm.request",
        "aggregation_type": "sum",
        "aggregation_key": "tokens",
        "measurement_unit": "tokens",
        "filter": exact_dumps(FILTER),
    }
    return data | overrides


def test_add_meter_opens_the_builder_with_known_event_names(staff_client):
    ingest_events([event("e1", "cus_1", "llm.request", metadata={"tokens": 3})])
    page = staff_client.get(reverse("admin:meters_meter_add"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="filter-builder"' in html
    assert '<option value="llm.request">' in html
    assert 'id="preview"' in html


def test_saving_goes_through_the_meter_service_and_keeps_numbers_exact(staff_client):
    response = staff_client.post(reverse("admin:meters_meter_add"), form_data())
    meter = Meter.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:meters_meter_analytics", args=[quote(meter.pk)])
    assert meter.filter == FILTER
    assert meter.filter["clauses"][1]["clauses"][1]["value"] == Decimal("0.1")
    assert (meter.aggregation_type, meter.aggregation_key) == ("sum", "tokens")
    history = staff_client.get(reverse("admin:meters_meter_history", args=[quote(meter.pk)]))
    assert "Added." in history.content.decode()


def test_a_count_meter_stores_no_key(staff_client):
    staff_client.post(
        reverse("admin:meters_meter_add"),
        form_data(aggregation_type="count", aggregation_key="tokens", filter=""),
    )
    meter = Meter.objects.get()
    assert (meter.aggregation_type, meter.aggregation_key, meter.filter) == ("count", None, None)


def test_filter_errors_are_shown_with_their_path_and_nothing_is_saved(staff_client):
    bad = {
        "conjunction": "and",
        "clauses": [
            {"key": "region", "operator": "equals", "value": "eu"},
            {"key": "tokens", "operator": "greater_than", "value": "100"},
        ],
    }
    page = staff_client.post(reverse("admin:meters_meter_add"), form_data(filter=json.dumps(bad)))
    assert page.status_code == 200
    assert not Meter.objects.exists()
    assert page.context["filter_errors"] == [
        {
            "field": "filter.clauses[1].value",
            "message": "operator 'greater_than' requires a number value",
        }
    ]
    assert "filter.clauses[1].value" in page.content.decode()
    # The builder comes back with the staff member's work, typed as they left it.
    assert page.context["builder_state"]["clauses"][1] == {
        "key": "tokens",
        "operator": "greater_than",
        "type": "string",
        "value": "100",
    }


def test_a_sum_without_key_is_refused_next_to_the_key_field(staff_client):
    page = staff_client.post(reverse("admin:meters_meter_add"), form_data(aggregation_key=""))
    assert page.status_code == 200
    assert page.context["form"].errors["aggregation_key"] == ["Is required for a sum aggregation."]
    assert not Meter.objects.exists()


def test_unparsable_filter_json_is_an_error_not_a_crash(staff_client):
    page = staff_client.post(reverse("admin:meters_meter_add"), form_data(filter="{nope"))
    assert page.status_code == 200
    assert page.context["form"].errors["filter"] == ["The filter is not valid JSON."]


@pytest.fixture
def meter(db) -> Meter:
    return make_meter("Calls", "api.call", now=timezone.now())


def test_change_page_is_the_builder_prefilled_from_the_meter(staff_client):
    meter = make_meter("Tokens", "llm.request", "sum", "tokens", FILTER, now=timezone.now())
    page = staff_client.get(reverse("admin:meters_meter_change", args=[quote(meter.pk)]))
    assert page.status_code == 200
    assert page.context["form"]["event_name"].value() == "llm.request"
    nested = page.context["builder_state"]["clauses"][1]
    assert nested["conjunction"] == "or"
    assert nested["clauses"][1] == {
        "key": "tokens",
        "operator": "greater_than",
        "type": "number",
        "value": "0.1",
    }


def test_editing_what_a_meter_counts_starts_a_new_definition(staff_client, meter):
    url = reverse("admin:meters_meter_change", args=[quote(meter.pk)])
    staff_client.post(
        url,
        form_data(
            name="Calls", event_name="api.call", aggregation_type="count", aggregation_key=""
        ),
    )
    meter.refresh_from_db()
    assert meter.filter == FILTER
    assert meter.definition_version == 2
    # Renaming alone changes nothing that was counted.
    staff_client.post(
        url,
        form_data(
            name="API calls", event_name="api.call", aggregation_type="count", aggregation_key=""
        ),
    )
    meter.refresh_from_db()
    assert (meter.name, meter.definition_version) == ("API calls", 2)
    history = staff_client.get(reverse("admin:meters_meter_history", args=[quote(meter.pk)]))
    assert "Changed Name." in history.content.decode()


def test_meters_are_archived_not_deleted(staff_client, meter):
    staff_client.post(
        reverse("admin:meters_meter_changelist"),
        {"action": "archive_meters", "_selected_action": [meter.pk]},
    )
    meter.refresh_from_db()
    assert meter.is_archived
    delete = reverse("admin:meters_meter_delete", args=[quote(meter.pk)])
    assert staff_client.get(delete).status_code == 403


def test_preview_endpoint_answers_counts_sample_and_key_suggestions(staff_client):
    now = timezone.now()
    ingest_events(
        [
            event("a", "cus_1", "llm.request", metadata={"region": "eu", "tokens": 10}),
            event("b", "cus_1", "llm.request", metadata={"region": "eu", "tokens": "x"}),
            event("c", "cus_2", "llm.request", metadata={"region": "us", "tokens": 5}),
        ],
        now=now,
    )
    body = '{"event_name": "llm.request", "aggregation": {"type": "sum", "key": "tokens"},'
    body += ' "filter": {"conjunction": "and", "clauses": [{"key": "region", "operator": '
    body += '"equals", "value": "eu"}]}}'
    answer = staff_client.post(
        reverse("admin:meters_meter_preview"), body, content_type="application/json"
    ).json()
    assert (answer["examined"], answer["matched"], answer["contributing"]) == (3, 2, 1)
    assert (answer["skipped_missing_key"], answer["skipped_not_a_number"]) == (0, 1)
    assert [(s["event_id"], s["value"], s["skip_reason"]) for s in answer["sample"]] == [
        ("b", None, "not a number"),
        ("a", "10", None),
    ]
    assert {"key": "tokens", "type": "number"} in answer["keys"]


def test_preview_endpoint_answers_422_with_field_paths(staff_client):
    body = {
        "event_name": "llm.request",
        "aggregation": {"type": "max"},
        "filter": {"conjunction": "xor", "clauses": []},
    }
    response = staff_client.post(
        reverse("admin:meters_meter_preview"), body, content_type="application/json"
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [
        "aggregation.key",
        "filter.conjunction",
        "filter.clauses",
    ]
