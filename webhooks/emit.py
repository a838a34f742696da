"""The generic webhook outbox: called by the code that makes a change, inside its transaction.

Each call asks once which enabled endpoints want the event type; with none it writes nothing.
Otherwise it writes the events and one delivery per endpoint in the caller's transaction, and
queues the sending for when that transaction commits: a change that rolls back sends nothing.

It knows nothing of credits or invoices: each domain builds its own payloads (credits/
webhook_events.py, products/webhook_events.py) from its wire representation and hands them here.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing_site.jsonutil import exact_dumps
from billing_site.wire import timestamp_text
from webhooks.delivery import queue_after_commit
from webhooks.models import Delivery, WebhookEndpoint, WebhookEvent


def subscribed_endpoint_ids(event_type: str) -> list[int]:
    """The enabled endpoints that want `event_type`: one small query, the cost of an emission
    when nobody listens."""
    return list(
        WebhookEndpoint.objects.filter(enabled=True)
        .filter(Q(event_types=[]) | Q(event_types__contains=[event_type]))
        .values_list("id", flat=True)
    )


def emit(
    event_type: str, payloads: Iterable[dict], *, endpoint_ids: list[int] | None = None
) -> int:
    """Write one event per payload and a delivery per subscribed endpoint, and send them after
    the transaction commits. Returns the number of events written (0 when nobody listens)."""
    if endpoint_ids is None:
        endpoint_ids = subscribed_endpoint_ids(event_type)
    payloads = list(payloads)
    if not endpoint_ids or not payloads:
        return 0
    now = timezone.now()
    envelope = {
        "business_id": settings.BUSINESS_ID,
        "type": event_type,
        "timestamp": timestamp_text(now),
    }
    # The caller's transaction (without a savepoint: no extra queries), or its own outside one.
    with transaction.atomic(savepoint=False):
        events = WebhookEvent.objects.bulk_create(
            WebhookEvent(
                event_type=event_type, body=exact_dumps({**envelope, "data": data}), created_at=now
            )
            for data in payloads
        )
        deliveries = Delivery.objects.bulk_create(
            Delivery(event=event, endpoint_id=endpoint_id, next_attempt_at=now, created_at=now)
            for event in events
            for endpoint_id in endpoint_ids
        )
        queue_after_commit([delivery.pk for delivery in deliveries])
    return len(events)
