"""Emission: in the same transaction as the change, to the endpoints that want the event type,
and nearly free when nobody listens."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credits import ledger
from credits.ledger import CreditRules
from credits.models import GrantSource, LedgerEntry
from tests.credits.factories import make_entitlement
from tests.factories import make_customer
from tests.webhooks.factories import make_endpoint
from webhooks.delivery import deliver_due
from webhooks.models import Delivery, WebhookEvent

START = datetime(2026, 6, 1, tzinfo=UTC)


def _grant(entitlement, customer, amount: str) -> None:
    balance = ledger.locked_balance(entitlement.id, customer.customer_id, now=START)
    ledger.grant(
        balance,
        Decimal(amount),
        rules=CreditRules.of(entitlement),
        now=START,
        source_type=GrantSource.API,
    )


class Abort(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_a_change_that_rolls_back_sends_nothing_and_leaves_no_rows(receiver):
    endpoint = make_endpoint(receiver.url)
    entitlement = make_entitlement(now=START)
    customer = make_customer()

    with pytest.raises(Abort), transaction.atomic():
        _grant(entitlement, customer, "10")
        assert WebhookEvent.objects.count() == 1  # written with the change...
        raise Abort
    assert LedgerEntry.objects.count() == 0
    assert (WebhookEvent.objects.count(), Delivery.objects.count()) == (0, 0)  # ...and undone
    assert receiver.requests == []

    with transaction.atomic():  # the same change, committed, is sent
        _grant(entitlement, customer, "11")
        assert receiver.requests == []  # not before the commit
    [body] = receiver.bodies(endpoint.secret)
    assert body["data"]["amount"] == "11"


@pytest.mark.django_db
def test_with_no_endpoint_an_emission_costs_one_query_and_writes_nothing(
    django_capture_on_commit_callbacks,
):
    entitlement = make_entitlement(now=START)
    customer = make_customer()
    balance = ledger.locked_balance(entitlement.id, customer.customer_id, now=START)
    rules = CreditRules.of(entitlement)
    with CaptureQueriesContext(connection) as without:
        ledger.grant(balance, Decimal(5), rules=rules, now=START, source_type=GrantSource.API)
    make_endpoint("http://127.0.0.1:9/hooks", "invoice.created")  # wants something else
    with (
        CaptureQueriesContext(connection) as other_type,
        django_capture_on_commit_callbacks() as callbacks,
    ):
        ledger.grant(balance, Decimal(5), rules=rules, now=START, source_type=GrantSource.API)

    webhook_queries = [q for q in without.captured_queries if "webhooks_" in q["sql"]]
    assert len(webhook_queries) == 1 and webhook_queries[0]["sql"].startswith("SELECT")
    assert len(other_type.captured_queries) == len(without.captured_queries)
    assert (WebhookEvent.objects.count(), Delivery.objects.count(), callbacks) == (0, 0, [])


@pytest.mark.django_db
def test_endpoints_get_only_the_types_they_asked_for_and_disabled_ones_get_nothing(
    receiver, django_capture_on_commit_callbacks
):
    everything = make_endpoint(receiver.url + "/all")
    added_only = make_endpoint(receiver.url + "/added", "credit.added")
    manual_only = make_endpoint(receiver.url + "/manual", "credit.manual_adjustment")
    make_endpoint(receiver.url + "/off", enabled=False)
    make_endpoint(receiver.url + "/off-added", "credit.added", enabled=False)
    entitlement = make_entitlement(now=START)
    customer = make_customer()

    with django_capture_on_commit_callbacks(execute=True):
        _grant(entitlement, customer, "3")

    paths = sorted(request.path for request in receiver.requests)
    assert paths == ["/hooks/added", "/hooks/all"]
    assert Delivery.objects.filter(endpoint=manual_only).count() == 0
    assert Delivery.objects.filter(endpoint__enabled=False).count() == 0
    assert {d.endpoint for d in Delivery.objects.all()} == {everything, added_only}
    for request in receiver.requests:  # each signed with its own endpoint's secret
        secret = everything.secret if request.path.endswith("/all") else added_only.secret
        assert request.verified(secret)["type"] == "credit.added"


@pytest.mark.django_db
def test_a_disabled_endpoint_keeps_its_queued_deliveries_until_enabled(
    receiver, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(receiver.url)
    entitlement = make_entitlement(now=START)
    customer = make_customer()
    with django_capture_on_commit_callbacks():  # written, but its task not run yet
        _grant(entitlement, customer, "4")
    endpoint.enabled = False
    endpoint.save()

    assert deliver_due(now=timezone.now()) == 0
    assert receiver.requests == []
    endpoint.enabled = True
    endpoint.save()
    assert deliver_due(now=timezone.now()) == 1
    assert receiver.bodies(endpoint.secret)[0]["data"]["amount"] == "4"
