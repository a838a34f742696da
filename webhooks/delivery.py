"""Sending deliveries: sign the stored body (Standard Webhooks), POST it, record the attempt, and
schedule the retry after a failure, until a 2xx answer or the last attempt.

Retries live in the database (`Delivery.next_attempt_at`), picked up by a beat task, rather than
in Celery countdowns: a countdown of hours outlives Redis's visibility timeout and would be sent
twice, and a queued task is lost with a broker that loses its data. A delivery is claimed under
a row lock that pushes `next_attempt_at` (the lease) past the attempt's deadline and gives it a
new `claim_token`; the attempt is recorded only while the token is still its own, so however many
workers look, one sends it and one records it.

The POST itself (the deadline, the address checks) is webhooks/transport.py.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from datetime import datetime, timedelta
from functools import partial

from celery import current_app
from django.conf import settings
from django.db import transaction
from standardwebhooks import Webhook

from webhooks import transport
from webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus

logger = logging.getLogger(__name__)

RESPONSE_BODY_LIMIT = transport.RESPONSE_BODY_LIMIT  # bytes of the answer kept per attempt
JITTER = 0.1  # each retry delay is moved by up to 10% either way, so retries do not stampede
# The lease beyond the attempt's deadline (WEBHOOK_TIMEOUT_SECONDS): resolving the host name is
# the one step the deadline cannot cut short, and resolvers give up within about 30 s.
LEASE_MARGIN = timedelta(seconds=60)
USER_AGENT = "usage-billing-webhooks/1"


def retry_delay(attempts_made: int) -> timedelta | None:
    """How long to wait after the `attempts_made`-th failed attempt; None when it was the last.

    WEBHOOK_RETRY_SCHEDULE lists the waits in seconds, so a delivery gets one attempt more than
    the schedule has entries.
    """
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts_made > len(schedule):
        return None
    seconds = schedule[attempts_made - 1]
    return timedelta(seconds=seconds * (1 + random.uniform(-JITTER, JITTER)))


def max_attempts() -> int:
    return len(settings.WEBHOOK_RETRY_SCHEDULE) + 1


def signed_headers(secret: str, message_id: str, body: str, *, at: datetime) -> dict[str, str]:
    """The request headers, signed for the moment of sending (receivers refuse a timestamp more
    than five minutes off, so every attempt is signed anew)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }


def _claim(*, now: datetime, delivery_id: int | None = None) -> Delivery | None:
    """Take the oldest due delivery (or the given one, if due) for this worker alone."""
    with transaction.atomic():
        due = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event", "endpoint")
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now, endpoint__enabled=True)
        )
        if delivery_id is not None:
            due = due.filter(pk=delivery_id)
        delivery = due.order_by("next_attempt_at", "id").first()
        if delivery is not None:
            deadline = timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS)
            delivery.next_attempt_at = now + deadline + LEASE_MARGIN
            delivery.claim_token = uuid.uuid4()
            delivery.save(update_fields=["next_attempt_at", "claim_token"])
    return delivery


def _attempt(delivery: Delivery, *, now: datetime) -> DeliveryAttempt | None:
    """Send a claimed delivery once and record the answer and what happens next, unless the
    claim was lost meanwhile (then another worker has the delivery and records its own)."""
    event, endpoint = delivery.event, delivery.endpoint
    answer = transport.post(
        endpoint.url,
        event.body.encode(),
        signed_headers(endpoint.secret, event.id, event.body, at=now),
        timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
    )
    with transaction.atomic():
        locked = Delivery.objects.select_for_update().filter(pk=delivery.pk).first()
        if locked is None:  # its endpoint was deleted meanwhile
            return None
        if locked.claim_token != delivery.claim_token:
            logger.warning(
                "webhook delivery %s: the attempt outlived its lease and another worker claimed "
                "it; this attempt's answer (%s) is not recorded",
                delivery.pk,
                answer.error or answer.status_code,
            )
            return None
        locked.claim_token = None
        locked.attempt_count += 1
        attempt = DeliveryAttempt.objects.create(
            delivery=locked,
            number=locked.attempt_count,
            attempted_at=now,
            duration_ms=answer.duration_ms,
            status_code=answer.status_code,
            response_body=answer.body,
            error=answer.error,
            succeeded=answer.succeeded,
        )
        locked.last_attempt_at = now
        locked.last_status_code = answer.status_code
        if answer.succeeded:
            locked.status, locked.next_attempt_at = DeliveryStatus.SUCCEEDED, None
        elif (delay := retry_delay(locked.attempt_count)) is not None:
            locked.next_attempt_at = now + delay
        else:
            locked.status, locked.next_attempt_at = DeliveryStatus.FAILED, None
        locked.save(
            update_fields=[
                "attempt_count",
                "last_attempt_at",
                "last_status_code",
                "status",
                "next_attempt_at",
                "claim_token",
            ]
        )
    return attempt


def deliver(delivery_id: int, *, now: datetime) -> DeliveryAttempt | None:
    """Attempt one delivery if it is due and nobody else is sending it (the task queued when the
    delivery was written). None when there was nothing to do."""
    delivery = _claim(now=now, delivery_id=delivery_id)
    return None if delivery is None else _attempt(delivery, now=now)


# How long one run claims new attempts. Beat starts a run every 10 s; without a budget a run of
# slow receivers (50 attempts at the whole-attempt deadline each) would hold a worker of the
# webhooks queue for minutes while later runs queue up behind it.
DELIVER_DUE_BUDGET_SECONDS = 20.0


def deliver_due(
    *, now: datetime, limit: int = 50, budget_seconds: float = DELIVER_DUE_BUDGET_SECONDS
) -> int:
    """Attempt due deliveries one at a time, oldest first: the retries, and first attempts whose
    queued task was lost. Returns how many were attempted.

    One at a time, so a slow receiver holds up only its own claim; the clock moves on with the
    time spent, so late attempts in a long run are signed and scheduled at their real time. No
    new attempt is claimed once `budget_seconds` have passed: the next run goes on from there.
    """
    started = time.monotonic()
    attempted = 0
    while attempted < limit:
        elapsed = time.monotonic() - started
        if attempted and elapsed >= budget_seconds:
            break
        current = now + timedelta(seconds=elapsed)
        delivery = _claim(now=current)
        if delivery is None:
            break
        _attempt(delivery, now=current)
        attempted += 1
    return attempted


def redeliver(delivery: Delivery, *, now: datetime) -> Delivery:
    """Send the event to the endpoint again, now, as a new delivery with its own attempts (the
    same webhook-id, so a receiver that already processed it can tell)."""
    with transaction.atomic():
        again = Delivery.objects.create(
            event_id=delivery.event_id,
            endpoint_id=delivery.endpoint_id,
            next_attempt_at=now,
            redelivery_of=delivery,
            created_at=now,
        )
        queue_after_commit([again.pk])
    return again


def queue_after_commit(delivery_ids: list[int]) -> None:
    """Queue the first attempt of each delivery once the transaction commits. A broker that is
    down then costs only latency, as the beat task sends every due delivery; `robust` keeps its
    error from failing a caller whose change has already committed.

    The task is sent by name (webhooks/tasks.py imports this module, not the other way round),
    and the task routes put it on the `webhooks` queue.
    """

    def queue(ids: list[int]) -> None:
        for delivery_id in ids:
            current_app.send_task("webhooks.deliver", args=[delivery_id])

    transaction.on_commit(partial(queue, delivery_ids), robust=True)
