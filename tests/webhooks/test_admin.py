"""Staff pages: register an endpoint and read its secret, browse deliveries, redeliver."""

from __future__ import annotations

import base64
import re

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from standardwebhooks import Webhook

from tests.webhooks.factories import make_endpoint
from webhooks.emit import emit
from webhooks.models import Delivery, DeliveryStatus, WebhookEndpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivered(receiver, django_capture_on_commit_callbacks) -> Delivery:
    """An invoice.created event delivered once to the receiver."""
    make_endpoint(receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        emit("invoice.created", [{"invoice_id": "inv_admin"}])
    return Delivery.objects.get()


def test_staff_register_an_endpoint_and_read_its_signing_secret(admin_client):
    form = admin_client.get("/admin/webhooks/webhookendpoint/add/").content.decode()
    assert "Generated when the endpoint is saved." in form
    assert 'value="credit.balance_low"' in form  # one checkbox per event type
    response = admin_client.post(
        "/admin/webhooks/webhookendpoint/add/",
        {
            "url": "https://example.com/hooks",
            "description": "Accounting",
            "enabled": "on",
            "event_types": ["invoice.created", "credit.balance_low"],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.event_types == ["invoice.created", "credit.balance_low"]
    assert endpoint.enabled
    assert endpoint.secret.startswith("whsec_")
    assert len(base64.b64decode(endpoint.secret.removeprefix("whsec_"))) == 24
    Webhook(endpoint.secret)  # a valid Standard Webhooks key

    page = admin_client.get(f"/admin/webhooks/webhookendpoint/{quote(endpoint.pk)}/change/")
    assert endpoint.secret in page.content.decode()
    assert "Accounting" in admin_client.get("/admin/webhooks/webhookendpoint/").content.decode()


def test_an_endpoint_with_no_type_ticked_receives_everything(admin_client):
    admin_client.post(
        "/admin/webhooks/webhookendpoint/add/",
        {"url": "https://example.com/all", "enabled": "on"},
    )
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.event_types == []
    assert endpoint.wants("credit.added") and endpoint.wants("invoice.created")


def test_rotating_the_secret_replaces_it(admin_client):
    endpoint = make_endpoint("https://example.com/hooks")
    old = endpoint.secret
    admin_client.post(
        "/admin/webhooks/webhookendpoint/",
        {"action": "rotate_secret", "_selected_action": [endpoint.pk]},
    )
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.secret.startswith("whsec_")


def test_delivery_pages_show_status_attempts_and_filter(admin_client, delivered):
    link = f"/admin/webhooks/delivery/{quote(delivered.pk)}/change/"
    for query in (
        "",
        "?status__exact=succeeded",
        "?event__event_type__exact=invoice.created",
        f"?endpoint__id__exact={delivered.endpoint_id}",
    ):
        page = admin_client.get("/admin/webhooks/delivery/" + query)
        assert page.status_code == 200 and link in page.content.decode(), query
    for query in ("?status__exact=failed", "?event__event_type__exact=credit.added"):
        page = admin_client.get("/admin/webhooks/delivery/" + query)
        assert page.status_code == 200 and link not in page.content.decode(), query
    for url in (
        "/admin/webhooks/webhookevent/",
        f"/admin/webhooks/webhookevent/{quote(delivered.event_id)}/change/",
    ):
        page = admin_client.get(url)
        assert page.status_code == 200 and delivered.event_id in page.content.decode(), url

    page = admin_client.get(link).content.decode()
    assert "inv_admin" in page  # the body
    assert 'id="attempts-group"' in page  # the attempts, read-only
    assert re.search(r'class="field-status_code">\s*<p>200</p>', page)
    assert 'id="redeliver-button"' in page
    # History is read-only: no save button, and a post changes nothing.
    assert 'name="_save"' not in page
    assert admin_client.post(link, {"status": "failed"}).status_code == 403


def test_the_redeliver_button_sends_the_event_again_as_a_new_delivery(
    admin_client, delivered, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/webhooks/delivery/{delivered.pk}/redeliver/")

    again = Delivery.objects.exclude(pk=delivered.pk).get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/webhooks/delivery/{quote(again.pk)}/change/"
    assert again.redelivery_of == delivered
    assert (again.status, again.attempt_count) == (DeliveryStatus.SUCCEEDED, 1)
    first, second = receiver.requests
    assert first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivered.event_id
    second.verified(delivered.endpoint.secret)
    assert (
        admin_client.get(f"/admin/webhooks/delivery/{delivered.pk}/redeliver/").status_code == 405
    )


def test_the_redeliver_action_queues_one_new_delivery_per_selected(
    admin_client, delivered, receiver, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/webhooks/delivery/",
            {"action": "redeliver_selected", "_selected_action": [delivered.pk]},
        )
    assert response.status_code == 302
    assert Delivery.objects.filter(redelivery_of=delivered).count() == 1
    assert len(receiver.requests) == 2


def test_only_staff_with_the_permission_may_redeliver(
    client, delivered, receiver, django_capture_on_commit_callbacks
):
    url = f"/admin/webhooks/delivery/{delivered.pk}/redeliver/"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)  # anonymous
        assert response.status_code == 302 and "/admin/login/" in response["Location"]

        User.objects.create_user("ada", password="pw-123456789")  # not staff
        client.login(username="ada", password="pw-123456789")
        response = client.post(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]

        viewer = User.objects.create_user("bob", password="pw-123456789", is_staff=True)
        viewer.user_permissions.add(Permission.objects.get(codename="view_delivery"))
        client.login(username="bob", password="pw-123456789")
        page = client.get(f"/admin/webhooks/delivery/{quote(delivered.pk)}/change/")
        assert page.status_code == 200
        assert 'id="redeliver-button"' not in page.content.decode()
        client.post(url)
        client.post(
            "/admin/webhooks/delivery/",
            {"action": "redeliver_selected", "_selected_action": [delivered.pk]},
        )
    assert Delivery.objects.count() == 1
    assert len(receiver.requests) == 1
