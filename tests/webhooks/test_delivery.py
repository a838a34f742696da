"""Delivery: signed POSTs, every attempt recorded, retries with backoff, then failed."""

from __future__ import annotations

import ast
import socket
import threading
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.webhooks.factories import make_endpoint
from webhooks import delivery as deliveries
from webhooks.emit import emit
from webhooks.models import Delivery, DeliveryStatus, WebhookEvent

pytestmark = pytest.mark.django_db


def _emit_one(django_capture_on_commit_callbacks, data=None) -> Delivery:
    """One invoice.created event, its first attempt made at commit as in production."""
    with django_capture_on_commit_callbacks(execute=True):
        emit("invoice.created", [data or {"invoice_id": "inv_1", "total": 1999}])
    return Delivery.objects.get()


def _time_passes(delivery: Delivery):
    """Bring the delivery's next attempt to the present (rather than sending from the future,
    which a receiver would refuse as a timestamp too far ahead); returns now."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now)
    return now


def test_the_request_is_signed_for_the_endpoint_and_says_what_it_is(
    receiver, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(receiver.url)
    delivery = _emit_one(django_capture_on_commit_callbacks)

    [request] = receiver.requests
    assert request.path == "/hooks"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == delivery.event_id
    assert request.body == delivery.event.body
    body = request.verified(endpoint.secret)
    assert body["type"] == "invoice.created"
    assert body["data"] == {"invoice_id": "inv_1", "total": 1999}
    with pytest.raises(WebhookVerificationError):  # another endpoint's secret does not verify
        Webhook(make_endpoint(receiver.url, enabled=False).secret).verify(
            request.body, request.headers
        )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.next_attempt_at) == (
        DeliveryStatus.SUCCEEDED,
        1,
        None,
    )


def test_a_500_is_retried_after_the_backoff_and_then_succeeds(
    receiver, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(receiver.url)
    receiver.statuses = [500, 503]
    receiver.answer_body = b"x" * 10_000
    delivery = _emit_one(django_capture_on_commit_callbacks)

    delivery.refresh_from_db()
    [first] = delivery.attempts.all()
    assert (first.status_code, first.succeeded, first.number) == (500, False, 1)
    assert len(first.response_body) == deliveries.RESPONSE_BODY_LIMIT  # kept short
    assert delivery.status == DeliveryStatus.PENDING
    # The first retry waits 5 s, give or take the 10% jitter.
    wait = delivery.next_attempt_at - first.attempted_at
    assert timedelta(seconds=4.5) <= wait <= timedelta(seconds=5.5)

    # Not due yet: nothing is sent.
    assert deliveries.deliver_due(now=first.attempted_at + timedelta(seconds=4)) == 0
    assert len(receiver.requests) == 1

    assert deliveries.deliver_due(now=_time_passes(delivery)) == 1  # 503
    delivery.refresh_from_db()
    second = delivery.attempts.get(number=2)
    wait = delivery.next_attempt_at - second.attempted_at
    assert timedelta(seconds=270) <= wait <= timedelta(seconds=330)  # then 5 minutes

    assert deliveries.deliver_due(now=_time_passes(delivery)) == 1  # 200
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert [(a.number, a.status_code, a.succeeded) for a in delivery.attempts.all()] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert delivery.last_status_code == 200
    # Every attempt carried the same webhook-id, the same body and a fresh valid signature.
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.event_id}
    assert {r.body for r in receiver.requests} == {delivery.event.body}
    for request in receiver.requests:
        request.verified(endpoint.secret)
    assert deliveries.deliver_due(now=timezone.now() + timedelta(days=2)) == 0


@override_settings(WEBHOOK_RETRY_SCHEDULE=[1, 2])
def test_after_the_last_attempt_the_delivery_has_failed(
    receiver, django_capture_on_commit_callbacks
):
    make_endpoint(receiver.url)
    receiver.statuses = [500] * 10
    delivery = _emit_one(django_capture_on_commit_callbacks)
    for _ in range(5):
        delivery.refresh_from_db()
        if delivery.next_attempt_at is None:
            break
        deliveries.deliver_due(now=_time_passes(delivery))

    delivery.refresh_from_db()
    assert deliveries.max_attempts() == 3
    assert (delivery.status, delivery.attempt_count, delivery.next_attempt_at) == (
        DeliveryStatus.FAILED,
        3,
        None,
    )
    assert len(receiver.requests) == 3
    assert deliveries.deliver_due(now=timezone.now() + timedelta(days=30)) == 0


def test_a_receiver_that_is_not_listening_is_an_error_and_retried(
    django_capture_on_commit_callbacks,
):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    make_endpoint(f"http://127.0.0.1:{port}/hooks")
    delivery = _emit_one(django_capture_on_commit_callbacks)

    delivery.refresh_from_db()
    [attempt] = delivery.attempts.all()
    assert attempt.status_code is None and not attempt.succeeded
    assert "refused" in attempt.error.lower()
    assert delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at is not None


@override_settings(WEBHOOK_TIMEOUT_SECONDS=0.3)
def test_a_slow_receiver_times_out(receiver, django_capture_on_commit_callbacks):
    make_endpoint(receiver.url)
    receiver.delay_seconds = 1.5
    delivery = _emit_one(django_capture_on_commit_callbacks)

    [attempt] = delivery.attempts.all()
    assert attempt.status_code is None
    assert "timed out" in attempt.error.lower()
    assert attempt.duration_ms < 1400


def test_a_redirect_is_a_failed_attempt(receiver, django_capture_on_commit_callbacks):
    make_endpoint(receiver.url)
    receiver.statuses = [302]
    delivery = _emit_one(django_capture_on_commit_callbacks)

    [attempt] = delivery.attempts.all()
    assert (attempt.status_code, attempt.succeeded) == (302, False)
    assert len(receiver.requests) == 1


def test_a_delivery_is_sent_once_however_often_it_is_queued(
    receiver, django_capture_on_commit_callbacks
):
    make_endpoint(receiver.url)
    delivery = _emit_one(django_capture_on_commit_callbacks)
    now = timezone.now()
    assert deliveries.deliver(delivery.pk, now=now) is None  # succeeded already
    assert deliveries.deliver_due(now=now) == 0
    assert len(receiver.requests) == 1


def test_decimals_in_the_body_are_sent_exactly(receiver, django_capture_on_commit_callbacks):
    endpoint = make_endpoint(receiver.url)
    _emit_one(django_capture_on_commit_callbacks, {"metadata": {"rate": Decimal("0.1")}})
    [request] = receiver.requests
    assert '"rate":0.1' in request.body
    assert request.verified(endpoint.secret)["data"]["metadata"]["rate"] == Decimal("0.1")


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_send_a_delivery_once(receiver):
    endpoint = make_endpoint(receiver.url)
    receiver.delay_seconds = 0.5  # both workers look while the first request is under way
    event = WebhookEvent.objects.create(event_type="invoice.created", body='{"type":"x"}')
    Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=timezone.now())
    attempted = []

    def worker():
        try:
            attempted.append(deliveries.deliver_due(now=timezone.now()))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(attempted) == [0, 0, 1]
    assert len(receiver.requests) == 1
    assert Delivery.objects.get().attempt_count == 1


def test_delivery_does_not_import_its_task_module():
    """webhooks/tasks.py imports webhooks/delivery.py; the way back would be a cycle. The first
    attempt's task is sent by name instead (anywhere in the module, imports inside functions
    included)."""
    source = Path(deliveries.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert "webhooks.tasks" not in imported


def test_a_run_claims_no_new_attempt_once_its_time_budget_is_spent(receiver):
    endpoint = make_endpoint(receiver.url)
    event = WebhookEvent.objects.create(event_type="invoice.created", body='{"type":"x"}')
    for _ in range(3):
        Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=timezone.now())

    assert deliveries.deliver_due(now=timezone.now(), budget_seconds=0) == 1
    assert Delivery.objects.filter(attempt_count=0).count() == 2
    assert deliveries.deliver_due(now=timezone.now()) == 2  # the next run goes on
    assert len(receiver.requests) == 3
