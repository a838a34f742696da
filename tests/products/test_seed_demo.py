"""The demo data set loads, bills its closed weeks once, and can be loaded again safely."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db.models import Sum

from events.models import Event
from products.models import Invoice, Subscription


@pytest.mark.django_db
def test_seed_demo_bills_every_closed_week_once():
    call_command("seed_demo", events_per_day=30, stdout=io.StringIO(), stderr=io.StringIO())
    subscriptions = Subscription.objects.count()
    assert subscriptions == 7
    # 30 days of weekly periods: 4 closed weeks per subscription.
    assert Invoice.objects.count() == subscriptions * 4
    for invoice in Invoice.objects.all():
        assert invoice.total_minor == invoice.lines.aggregate(total=Sum("amount_minor"))["total"]
    assert Event.objects.filter(customer_id="cus_not_created_yet").count() == 5
    events = Event.objects.count()

    call_command("seed_demo", events_per_day=30, stdout=io.StringIO(), stderr=io.StringIO())
    assert Invoice.objects.count() == subscriptions * 4
    assert Event.objects.count() == events
