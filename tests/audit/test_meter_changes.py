"""Every change to a meter is in the audit log, with who made it and the meter before and after:
through the API (the key), the admin form and actions (the staff user), or code (system). A
refused change logs nothing."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from billing_site.jsonutil import exact_dumps
from meters.models import Meter
from tests.audit.helpers import SYSTEM, actor, api_key_actor, logged, user_actor
from tests.dashboard.test_meter_form import form_data
from tests.products.factories import make_meter

pytestmark = pytest.mark.django_db

TOKENS = {
    "name": "Tokens",
    "event_name": "tokens.used",
    "measurement_unit": "tokens",
    "aggregation": {"type": "sum", "key": "tokens"},
    "filter": {
        "conjunction": "and",
        "clauses": [{"key": "price", "operator": "greater_than", "value": Decimal("0.1")}],
    },
}


def send(api, method: str, url: str, body: dict | None = None):
    text = exact_dumps(body) if body is not None else ""
    return getattr(api, method)(url, text, content_type="application/json")


def test_a_meter_created_and_edited_through_the_api_is_logged_with_its_key(api):
    meter_id = send(api, "post", "/api/meters", TOKENS).json()["id"]
    response = send(api, "patch", f"/api/meters/{meter_id}", {"name": "Tokens v2"})
    assert response.status_code == 200

    created, updated = logged("meters.meter", meter_id)
    assert actor(created) == actor(updated) == api_key_actor()
    assert (created.action, created.before) == ("created", None)
    assert created.after["event_name"] == "tokens.used"
    # Exact decimals, kept through the jsonb column.
    assert created.after["filter"]["clauses"][0]["value"] == Decimal("0.1")
    assert updated.action == "updated"
    assert (updated.before["name"], updated.after["name"]) == ("Tokens", "Tokens v2")
    assert updated.before["aggregation_key"] == updated.after["aggregation_key"] == "tokens"


def test_archive_and_unarchive_through_the_api_are_logged(api):
    meter_id = send(api, "post", "/api/meters", TOKENS).json()["id"]
    assert api.delete(f"/api/meters/{meter_id}").status_code == 204
    assert api.delete(f"/api/meters/{meter_id}").status_code == 204  # already archived
    assert api.post(f"/api/meters/{meter_id}/unarchive").status_code == 200

    actions = [
        (e.action, e.before["archived_at"] is None if e.before else None)
        for e in logged("meters.meter", meter_id)
    ]
    assert actions == [("created", None), ("archived", True), ("unarchived", False)]
    archived = logged("meters.meter", meter_id)[1]
    assert archived.after["archived_at"] is not None


@pytest.mark.parametrize(
    "body",
    [
        {**TOKENS, "aggregation": {"type": "sum"}},  # sum without a key
        {**TOKENS, "filter": {"conjunction": "xor", "clauses": []}},
        {**TOKENS, "name": ""},
    ],
)
def test_a_refused_create_logs_nothing(api, body):
    response = send(api, "post", "/api/meters", body)
    assert 400 <= response.status_code < 500
    assert not Meter.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_refused_edit_logs_nothing(api):
    meter_id = send(api, "post", "/api/meters", TOKENS).json()["id"]
    response = send(api, "patch", f"/api/meters/{meter_id}", {"aggregation": {"type": "median"}})
    assert response.status_code == 422
    assert [e.action for e in logged("meters.meter", meter_id)] == ["created"]


def test_a_meter_created_and_edited_in_the_admin_is_logged_with_the_staff_user(
    staff_client, staff_user
):
    assert staff_client.post(reverse("admin:meters_meter_add"), form_data()).status_code == 302
    meter = Meter.objects.get()
    edit = reverse("admin:meters_meter_change", args=[quote(meter.pk)])
    response = staff_client.post(edit, form_data(name="Tokens v2", aggregation_type="max"))
    assert response.status_code == 302

    created, updated = logged("meters.meter", meter.pk)
    assert actor(created) == actor(updated) == user_actor(staff_user)
    assert created.after["filter"] == json.loads(form_data()["filter"], parse_float=Decimal)
    assert (updated.before["aggregation_type"], updated.after["aggregation_type"]) == (
        "sum",
        "max",
    )
    assert updated.after["name"] == "Tokens v2"


def test_a_refused_admin_form_logs_nothing(staff_client):
    response = staff_client.post(reverse("admin:meters_meter_add"), form_data(filter="{nope"))
    assert response.status_code == 200  # the form again, with its errors
    assert not AuditEntry.objects.exists()


def test_archiving_from_the_admin_list_is_logged_with_the_staff_user(staff_client, staff_user):
    meter = make_meter("Calls", "api.call", now=timezone.now())
    staff_client.post(
        reverse("admin:meters_meter_changelist"),
        {"action": "archive_meters", "_selected_action": [meter.pk], "index": 0},
    )
    created, archived = logged("meters.meter", meter.pk)
    assert actor(created) == SYSTEM  # made by code, outside any request
    assert (archived.action, actor(archived)) == ("archived", user_actor(staff_user))


def test_the_actor_does_not_outlive_the_request(api):
    send(api, "post", "/api/meters", TOKENS)
    make_meter("Calls", "api.call", now=timezone.now())
    assert actor(logged("meters.meter")[-1]) == SYSTEM
