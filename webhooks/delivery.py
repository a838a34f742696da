"""Sending deliveries: sign the stored body (Standard Webhooks), POST it, record the attempt, and
schedule the retry after a failure, until a 2xx answer or the last attempt.

Retries live in the database (`Delivery.next_attempt_at`), picked up by a beat task, rather than
in Celery countdowns: a countdown of hours outlives Redis's visibility timeout and would be sent
twice, and a queued task is lost with a broker that loses its data. A delivery is claimed under
a row lock that pushes `next_attempt_at` past the request's timeout, so however many workers
look, one sends it.

HTTP goes through urllib from the standard library: the project has no HTTP client among its
dependencies (requests and httpx arrive only with the dev tools), and one POST with a timeout
needs none.
"""

from __future__ import annotations

import http.client
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from standardwebhooks import Webhook

from webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus

RESPONSE_BODY_LIMIT = 4096  # bytes of the receiver's answer kept with the attempt
ERROR_LIMIT = 1000
JITTER = 0.1  # each retry delay is moved by up to 10% either way, so retries do not stampede
LEASE_MARGIN = timedelta(seconds=60)  # beyond the timeout, before a claimed delivery is due again
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


@dataclass(frozen=True)
class Answer:
    """What one POST got back: a status code and the start of the body, or an error."""

    status_code: int | None
    body: str
    error: str
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect did not take the event: it is a failed attempt, not a GET somewhere else."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").replace("\x00", "")  # PostgreSQL text has no NUL


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Answer:
    """POST once; never raises for what the network or the receiver does."""
    started = time.monotonic()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    status, text, error = None, "", ""
    try:
        with _opener.open(request, timeout=timeout) as response:
            status, text = response.status, _text(response.read(RESPONSE_BODY_LIMIT))
    except urllib.error.HTTPError as response:  # answered, but not 2xx
        status = response.code
        try:
            text = _text(response.read(RESPONSE_BODY_LIMIT))
        except (OSError, http.client.HTTPException):
            pass
        finally:
            response.close()
    except (OSError, ValueError, http.client.HTTPException) as failure:  # no answer
        reason = getattr(failure, "reason", None) or failure
        error = f"{type(failure).__name__}: {reason}"[:ERROR_LIMIT]
    duration_ms = round((time.monotonic() - started) * 1000)
    return Answer(status, text, error, duration_ms)


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
            timeout = timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS)
            delivery.next_attempt_at = now + timeout + LEASE_MARGIN
            delivery.save(update_fields=["next_attempt_at"])
    return delivery


def _attempt(delivery: Delivery, *, now: datetime) -> DeliveryAttempt | None:
    """Send a claimed delivery once and record the answer and what happens next."""
    event, endpoint = delivery.event, delivery.endpoint
    answer = post(
        endpoint.url,
        event.body.encode(),
        signed_headers(endpoint.secret, event.id, event.body, at=now),
        timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
    )
    with transaction.atomic():
        locked = Delivery.objects.select_for_update().filter(pk=delivery.pk).first()
        if locked is None:  # its endpoint was deleted meanwhile
            return None
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
            ]
        )
    return attempt


def deliver(delivery_id: int, *, now: datetime) -> DeliveryAttempt | None:
    """Attempt one delivery if it is due and nobody else is sending it (the task queued when the
    delivery was written). None when there was nothing to do."""
    delivery = _claim(now=now, delivery_id=delivery_id)
    return None if delivery is None else _attempt(delivery, now=now)


def deliver_due(*, now: datetime, limit: int = 50) -> int:
    """Attempt due deliveries one at a time, oldest first: the retries, and first attempts whose
    queued task was lost. Returns how many were attempted.

    One at a time, so a slow receiver holds up only its own claim; the clock moves on with the
    time spent, so late attempts in a long run are signed and scheduled at their real time.
    """
    started = time.monotonic()
    attempted = 0
    while attempted < limit:
        current = now + timedelta(seconds=time.monotonic() - started)
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
    error from failing a caller whose change has already committed."""
    from webhooks.tasks import deliver as deliver_task  # the task module imports this one

    def queue(ids: list[int]) -> None:
        for delivery_id in ids:
            deliver_task.delay(delivery_id)

    transaction.on_commit(partial(queue, delivery_ids), robust=True)
