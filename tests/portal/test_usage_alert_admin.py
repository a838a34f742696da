"""Staff set usage alerts in the admin with the API's rules; an alert is removed, not edited;
both are audit-logged. Portal sessions can be ended there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from audit.models import AuditEntry
from audit.roles import BILLING_ADMIN, VIEWER
from portal.models import PortalSession, UsageAlert
from tests.portal.helpers import portal_link
from tests.products.factories import make_meter, make_product, subscribe
from tests.roles.helpers import staff_client

pytestmark = pytest.mark.django_db
NOW = datetime.now(UTC).replace(microsecond=0)
ADD = "/admin/portal/usagealert/add/"


@pytest.fixture
def plan():
    calls = make_meter("Calls", "api.call", now=NOW - timedelta(days=1))
    other = make_meter("Other", "other", now=NOW - timedelta(days=1))
    product = make_product([(calls, "0.5", 10)], now=NOW - timedelta(days=1))
    return calls, other, subscribe(product, now=NOW)


def _form(subscription, meter, kind="units", threshold="100") -> dict:
    return {
        "subscription": subscription.pk,
        "meter": meter.pk,
        "threshold_kind": kind,
        "threshold": threshold,
        "crossings-TOTAL_FORMS": "0",
        "crossings-INITIAL_FORMS": "0",
    }


def test_a_billing_admin_adds_and_deletes_an_alert(plan):
    calls, _, subscription = plan
    admin = staff_client("alice", BILLING_ADMIN)
    response = admin.post(ADD, _form(subscription, calls))
    assert response.status_code == 302, response.content.decode()[:3000]
    alert = UsageAlert.objects.get()
    assert alert.threshold == 100 and alert.meter_id == calls.pk
    assert AuditEntry.objects.filter(object_id=alert.pk, action="created").exists()
    url = f"/admin/portal/usagealert/{alert.pk}/delete/"
    assert admin.post(url, {"post": "yes"}).status_code == 302
    assert UsageAlert.objects.count() == 0
    assert AuditEntry.objects.filter(object_id=alert.pk, action="deleted").exists()


@pytest.mark.parametrize(
    ("kind", "threshold", "meter"),
    [("units", "0", "calls"), ("amount", "2.5", "calls"), ("units", "5", "other")],
)
def test_the_apis_rules_apply(plan, kind, threshold, meter):
    calls, other, subscription = plan
    admin = staff_client("alice", BILLING_ADMIN)
    chosen = calls if meter == "calls" else other
    response = admin.post(ADD, _form(subscription, chosen, kind, threshold))
    assert response.status_code == 200  # the form again, with the error
    assert UsageAlert.objects.count() == 0


def test_a_viewer_cannot_add(plan):
    calls, _, subscription = plan
    viewer = staff_client("victor", VIEWER)
    assert viewer.get("/admin/portal/usagealert/").status_code == 200
    assert viewer.post(ADD, _form(subscription, calls)).status_code == 403
    assert UsageAlert.objects.count() == 0


def test_staff_end_a_portal_session(plan):
    _, _, subscription = plan
    link = portal_link(subscription.customer)
    admin = staff_client("root", superuser=True)
    session = PortalSession.objects.get()
    response = admin.post(
        "/admin/portal/portalsession/",
        {"action": "end_sessions", "_selected_action": [session.pk]},
    )
    assert response.status_code == 302
    assert Client().get(link).status_code == 403
