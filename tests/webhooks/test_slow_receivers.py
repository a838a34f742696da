"""A slow receiver costs one attempt of at most WEBHOOK_TIMEOUT_SECONDS, is sent each delivery
once at a time, and holds only the webhooks queue's workers."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from billing_site.celery import app as celery_app
from tests.webhooks.factories import make_endpoint
from tests.webhooks.receivers import ENDLESS_BODY, ENDLESS_HEADERS, DripReceiver
from webhooks import delivery as deliveries
from webhooks.emit import emit
from webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, WebhookEvent

DEADLINE_SECONDS = 2


def _due_delivery(url: str) -> Delivery:
    endpoint = make_endpoint(url)
    event = WebhookEvent.objects.create(event_type="invoice.created", body='{"type":"x"}')
    return Delivery.objects.create(event=event, endpoint=endpoint, next_attempt_at=timezone.now())


def _in_thread(function, *args, **kwargs) -> tuple[threading.Thread, list]:
    results: list = []

    def run():
        try:
            results.append(function(*args, **kwargs))
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, results


def _wait_for(condition, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "opening",
    [
        ENDLESS_BODY,
        ENDLESS_HEADERS,
    ],
    ids=["dripping-body", "dripping-headers"],
)
def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline(settings, opening):
    settings.WEBHOOK_TIMEOUT_SECONDS = DEADLINE_SECONDS
    receiver = DripReceiver(opening)
    try:
        delivery = _due_delivery(receiver.url)
        attempt, results = _in_thread(deliveries.deliver, delivery.pk, now=timezone.now())
        _wait_for(lambda: receiver.requests == 1, "the request")

        # Another worker looking meanwhile, even past the deadline, finds nothing due: the
        # delivery is leased for longer than the attempt can last.
        after_deadline = timezone.now() + timedelta(seconds=DEADLINE_SECONDS + 1)
        assert deliveries.deliver_due(now=after_deadline) == 0

        # Generously more than the deadline: only an attempt with no total deadline runs on.
        attempt.join(timeout=30)
        still_running = attempt.is_alive()
    finally:
        receiver.stop()
    attempt.join(timeout=10)
    assert not still_running, "the attempt was still running 30 s after a 2 s deadline"

    [recorded] = DeliveryAttempt.objects.all()
    assert recorded == results[0]
    assert recorded.error.startswith("timeout"), recorded.error
    assert "timed out" in recorded.error
    assert not recorded.succeeded
    assert recorded.duration_ms >= DEADLINE_SECONDS * 1000  # it ran to the deadline, no further
    assert receiver.requests == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count, delivery.claim_token) == (
        DeliveryStatus.PENDING,
        1,
        None,
    )
    assert delivery.next_attempt_at is not None  # retried later, like any failed attempt


@pytest.mark.django_db(transaction=True)
def test_an_attempt_that_outlived_its_lease_does_not_record_over_the_next(settings, receiver):
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    receiver.delay_seconds = 1.0
    delivery = _due_delivery(receiver.url)
    first, first_result = _in_thread(deliveries.deliver, delivery.pk, now=timezone.now())
    _wait_for(lambda: len(receiver.requests) == 1, "the first request")

    # As if the first attempt had hung past its lease: another worker takes the delivery.
    lease = timedelta(seconds=5) + deliveries.LEASE_MARGIN
    assert deliveries.deliver_due(now=timezone.now() + lease + timedelta(seconds=1)) == 1
    first.join(timeout=30)

    assert len(receiver.requests) == 2
    assert first_result == [None]  # its answer came too late to count
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == (DeliveryStatus.SUCCEEDED, 1)
    assert [a.number for a in delivery.attempts.all()] == [1]


def test_webhook_tasks_have_a_queue_of_their_own():
    def queue_of(task_name: str, **options) -> str:
        return celery_app.amqp.router.route(options, task_name)["queue"].name

    assert queue_of("webhooks.deliver") == "webhooks"
    assert queue_of("webhooks.deliver_due") == "webhooks"
    for name in ("products.bill", "credits.deduct", "meters.roll_up"):
        assert queue_of(name) == "celery", name
    # Beat sends its entries through the same routes.
    for entry in celery_app.conf.beat_schedule.values():
        expected = "webhooks" if entry["task"].startswith("webhooks.") else "celery"
        assert queue_of(entry["task"], **entry.get("options", {})) == expected, entry
    # A worker started without -Q consumes both, so webhooks are never left unsent by it.
    assert set(celery_app.amqp.queues) == {"celery", "webhooks"}


@pytest.mark.django_db
def test_a_delivery_is_queued_on_the_webhooks_queue(
    receiver, celery_eager, django_capture_on_commit_callbacks
):
    make_endpoint(receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        emit("invoice.created", [{"invoice_id": "inv_1"}])
    assert celery_eager == [("webhooks.deliver", "webhooks")]
    assert len(receiver.requests) == 1
