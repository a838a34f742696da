"""The official SDK's strict client: every answer must parse into the SDK's own types."""

from __future__ import annotations

import pytest


@pytest.fixture
def strict(sdk):
    """The suite's `sdk` client (tests/conftest.py), which is strict: a missing required field,
    a wrong type or an enum value outside the SDK's raises `APIResponseValidationError`."""
    return sdk


@pytest.fixture
def strict_in_process(api_key):
    """The same strict client, its requests handed to this process's WSGI application instead
    of a socket: the server runs inside the test's transaction, and a call costs milliseconds."""
    import httpx
    from django.core import signals
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import close_old_connections
    from dodopayments import DodoPayments

    # As Django's test client does: a request must not close the test transaction's connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    transport = httpx.WSGITransport(app=WSGIHandler())
    client = DodoPayments(
        bearer_token=api_key,
        base_url="http://testserver/api",
        max_retries=0,
        _strict_response_validation=True,
        http_client=httpx.Client(transport=transport),
    )
    try:
        yield client
    finally:
        client.close()
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
