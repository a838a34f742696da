"""A filter holds at most MAX_CONDITIONS (100) conditions, counting every level.

50 clauses a group over 3 levels allowed 125,000; an 87,500-condition filter took 4.3 s to create
and 5 s per rollup. The cap lives in `validate_filter`, which the API, the admin's meter form and
the builder's preview all go through.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing_site.jsonutil import exact_dumps
from meters import filters
from meters.filters import MAX_CONDITIONS
from meters.models import Meter
from tests.products.factories import make_meter

pytestmark = pytest.mark.django_db

METER = {
    "name": "Tokens",
    "event_name": "llm.request",
    "measurement_unit": "tokens",
    "aggregation": {"type": "count"},
}


def condition(index: int) -> dict:
    return {"key": "region", "operator": "not_equals", "value": f"r{index}"}


def filter_with(total: int) -> dict:
    """`total` conditions spread over 3 levels, each group within the 50-clause limit."""
    groups, remaining, index = [], total, 0
    while remaining:
        inner = []
        while remaining and len(inner) < 5:
            size = min(remaining, 10)
            inner.append(
                {"conjunction": "and", "clauses": [condition(index + i) for i in range(size)]}
            )
            index, remaining = index + size, remaining - size
        groups.append({"conjunction": "or", "clauses": inner})
    return {"conjunction": "and", "clauses": groups}


def independent_count(flt: dict) -> int:
    return sum(independent_count(clause) if "clauses" in clause else 1 for clause in flt["clauses"])


def assert_cap_error(errors: list[dict], conditions: int) -> None:
    assert errors == [
        {
            "field": "filter",
            "message": f"has {conditions} conditions; at most {MAX_CONDITIONS} are allowed "
            "in all, counting every level",
        }
    ]


def test_the_helper_builds_what_it_says():
    for total in (1, 100, 101, 2_500):
        assert independent_count(filter_with(total)) == total
        assert filters.count_conditions(filter_with(total)) == total


def test_the_api_accepts_100_conditions_and_refuses_101(api):
    accepted = api.post("/api/meters", {**METER, "filter": filter_with(100)}, format="json")
    assert accepted.status_code in (200, 201), accepted.content
    refused = api.post("/api/meters", {**METER, "filter": filter_with(101)}, format="json")
    assert refused.status_code == 422
    body = refused.json()
    assert body["code"] == "INVALID_FILTER"  # as for every other filter rule
    assert_cap_error(body["errors"], 101)
    assert Meter.objects.count() == 1


def test_the_audits_87500_condition_filter_is_refused_by_the_count(api):
    """50 x 50 x 35 conditions, as the audit sent (it took 4.3 s to create): refused by the
    count, before the clause-by-clause validation."""
    leaf = {"conjunction": "and", "clauses": [{"key": "k", "operator": "equals", "value": 1}] * 35}
    middle = {"conjunction": "or", "clauses": [leaf] * 50}
    huge = {"conjunction": "and", "clauses": [middle] * 50}
    refused = api.post("/api/meters", {**METER, "filter": huge}, format="json")
    assert refused.status_code == 422
    assert_cap_error(refused.json()["errors"], 87_500)
    assert Meter.objects.count() == 0


def test_patch_refuses_a_filter_over_the_cap_and_keeps_the_old_one(api):
    meter = make_meter("Calls", "llm.request", filter=filter_with(3), now=timezone.now())
    refused = api.patch(f"/api/meters/{meter.id}", {"filter": filter_with(150)}, format="json")
    assert refused.status_code == 422
    assert_cap_error(refused.json()["errors"], 150)
    meter.refresh_from_db()
    assert independent_count(meter.filter) == 3


@pytest.fixture
def staff_client(db) -> Client:
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw-staff")
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_meter_form_refuses_101_conditions(staff_client):
    data = {
        "name": "Tokens",
        "description": "",
        "event_name": "llm.request",
        "aggregation_type": "count",
        "aggregation_key": "",
        "measurement_unit": "tokens",
        "filter": exact_dumps(filter_with(101)),
    }
    response = staff_client.post(reverse("admin:meters_meter_add"), data)
    assert response.status_code == 200  # the form again
    form = response.context["form"]
    assert_cap_error(form.filter_errors, 101)
    assert "at most 100 are allowed" in str(form.errors["filter"])
    assert Meter.objects.count() == 0
    data["filter"] = exact_dumps(filter_with(100))
    assert staff_client.post(reverse("admin:meters_meter_add"), data).status_code == 302
    assert Meter.objects.count() == 1


def test_the_builder_preview_refuses_101_conditions(staff_client):
    body = {"event_name": "llm.request", "aggregation": {"type": "count"}}
    response = staff_client.post(
        reverse("admin:meters_meter_preview"),
        exact_dumps({**body, "filter": filter_with(101)}),
        content_type="application/json",
    )
    assert response.status_code == 422
    assert_cap_error(response.json()["errors"], 101)


def test_a_meter_stored_before_the_cap_still_compiles_and_matches():
    """Stored filters are re-checked without the cap, so usage and billing of a meter saved
    before it existed go on."""
    stored = filter_with(150)
    sql, params = filters.filter_sql(stored)
    assert sql.count("COALESCE") == 150 and len(params) == 300
    assert filters.matches(stored, {"region": "eu"}) is True
    with pytest.raises(filters.InvalidFilter):
        filters.validate_filter(stored)
