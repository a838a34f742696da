"""The audit log in the admin: listed, filtered and searched; never added, changed or deleted,
not even by a superuser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.admin.utils import quote
from django.urls import reverse

from audit.models import AuditEntry
from tests.products.factories import make_meter
from tests.roles.helpers import staff_client as client_for

NOW = datetime(2026, 5, 1, tzinfo=UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture
def entry() -> AuditEntry:
    meter = make_meter("Calls", "api.call", now=NOW)
    return AuditEntry.objects.get(object_id=meter.pk)


def test_the_list_filters_by_type_actor_and_date_and_searches_ids(staff_client, entry):
    url = reverse("admin:audit_auditentry_changelist")
    for query in (
        {},
        {"object_type": "meters.meter"},
        {"actor_kind__exact": "system"},
        {"actor_name": "system"},
        {"created_at__year": entry.created_at.year, "created_at__month": entry.created_at.month},
        {"q": entry.object_id},
    ):
        page = staff_client.get(url, query)
        assert page.status_code == 200, query
        assert entry.object_id in page.content.decode(), query
    missing = staff_client.get(url, {"q": "mtr_nothing"})
    assert entry.object_id not in missing.content.decode()
    detail = staff_client.get(reverse("admin:audit_auditentry_change", args=[quote(entry.pk)]))
    assert detail.status_code == 200
    assert "api.call" in detail.content.decode()


def test_nobody_adds_changes_or_deletes_audit_rows(staff_client, entry):
    change = reverse("admin:audit_auditentry_change", args=[quote(entry.pk)])
    assert staff_client.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert staff_client.post(change, {"action": "deleted"}).status_code == 403
    delete = reverse("admin:audit_auditentry_delete", args=[entry.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    changelist = staff_client.get(reverse("admin:audit_auditentry_changelist"))
    assert "delete_selected" not in changelist.content.decode()
    entry.refresh_from_db()
    assert entry.action == "created"


def test_billing_admins_read_the_log_and_viewers_do_not(entry):
    url = reverse("admin:audit_auditentry_changelist")
    assert client_for("bill", "billing_admin").get(url).status_code == 200
    assert client_for("vera", "viewer").get(url).status_code == 403
