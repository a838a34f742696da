"""Webhook endpoints for tests, as staff would register them."""

from __future__ import annotations

from webhooks.models import WebhookEndpoint


def make_endpoint(url: str, *event_types: str, enabled: bool = True) -> WebhookEndpoint:
    """An endpoint for `event_types` (none: every type)."""
    return WebhookEndpoint.objects.create(
        url=url, event_types=list(event_types), enabled=enabled, description="test receiver"
    )
