"""usage.threshold_reached: an alert fires once per crossing per billing period, however often
the check runs (a restart, a second worker at the same moment), and again in the next period.
All on the billing clock: every `now` is given."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from billing_site.jsonutil import exact_loads
from meters import tasks as meter_tasks
from portal import alerts
from portal.models import UsageAlert, UsageAlertCrossing
from products.billing import run_billing_cycle
from tests.portal.helpers import portal_client
from tests.products.factories import make_meter, make_product, send_usage, subscribe
from tests.webhooks.factories import make_endpoint
from webhooks.models import Delivery, WebhookEvent

START = datetime(2026, 6, 1, tzinfo=UTC)
NEXT = datetime(2026, 7, 1, tzinfo=UTC)
TYPE = "usage.threshold_reached"


@pytest.fixture
def plan(db):
    """Calls at 0.5 cents after 10 free a month, one subscriber, a receiver for the alerts."""
    calls = make_meter("Calls", "api.call", now=START)
    product = make_product([(calls, "0.5", 10)], now=START, fixed_price=1000)
    subscription = subscribe(product, now=START)
    endpoint = make_endpoint("https://hooks.example.com/usage", TYPE)
    return calls, subscription, endpoint


def _calls(subscription, count: int, *, at: datetime, prefix: str) -> None:
    send_usage(subscription, "api.call", [{}] * count, start=at, prefix=prefix)


def _sent() -> list[dict]:
    return [
        exact_loads(event.body)
        for event in WebhookEvent.objects.filter(event_type=TYPE).order_by("created_at")
    ]


def test_fires_once_when_usage_crosses_the_threshold(plan):
    calls, subscription, endpoint = plan
    alert = alerts.create_alert(
        subscription.pk, meter_id=calls.pk, threshold_kind="units", threshold="20", now=START
    )
    _calls(subscription, 19, at=START + timedelta(days=2), prefix="a")
    assert alerts.check_usage_alerts(now=START + timedelta(days=3)) == 0
    assert _sent() == []

    _calls(subscription, 1, at=START + timedelta(days=4), prefix="b")  # 20: reached
    assert alerts.check_usage_alerts(now=START + timedelta(days=4, hours=1)) == 1
    [body] = _sent()
    assert body["type"] == TYPE
    data = body["data"]
    assert data["id"] == alert.pk and data["subscription_id"] == subscription.pk
    assert data["customer_id"] == subscription.customer_id and data["meter_id"] == calls.pk
    assert (data["threshold_kind"], data["threshold"], data["consumed_units"]) == (
        "units",
        "20",
        "20",
    )
    assert data["amount"] == 5  # 10 chargeable x 0.5 cents
    assert (data["period_start"], data["period_end"]) == (
        "2026-06-01T00:00:00Z",
        "2026-07-01T00:00:00Z",
    )
    assert Delivery.objects.filter(endpoint=endpoint).count() == 1

    # More usage, later checks, a restarted worker: the same period never fires it again.
    _calls(subscription, 30, at=START + timedelta(days=5), prefix="c")
    for hours in (1, 2, 3):
        assert alerts.check_usage_alerts(now=START + timedelta(days=5, hours=hours)) == 0
    assert len(_sent()) == 1
    assert UsageAlertCrossing.objects.get().consumed_units == 20


def test_fires_again_in_the_next_period(plan):
    calls, subscription, _ = plan
    alerts.create_alert(
        subscription.pk, meter_id=calls.pk, threshold_kind="units", threshold="5", now=START
    )
    _calls(subscription, 6, at=START + timedelta(days=1), prefix="a")
    assert alerts.check_usage_alerts(now=START + timedelta(days=1, hours=1)) == 1

    run_billing_cycle(now=NEXT + timedelta(seconds=1))
    assert alerts.check_usage_alerts(now=NEXT + timedelta(hours=1)) == 0  # nothing used yet
    _calls(subscription, 5, at=NEXT + timedelta(days=1), prefix="b")
    assert alerts.check_usage_alerts(now=NEXT + timedelta(days=1, hours=1)) == 1
    assert alerts.check_usage_alerts(now=NEXT + timedelta(days=2)) == 0
    periods = sorted(body["data"]["period_start"] for body in _sent())
    assert periods == ["2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"]


def test_an_amount_threshold_is_the_charge_so_far(plan):
    calls, subscription, _ = plan
    alerts.create_alert(
        subscription.pk, meter_id=calls.pk, threshold_kind="amount", threshold=5, now=START
    )
    # 18 calls: 8 chargeable x 0.5 = 4 cents; 19: 4.5, half-up 5 cents.
    _calls(subscription, 18, at=START + timedelta(days=1), prefix="a")
    assert alerts.check_usage_alerts(now=START + timedelta(days=2)) == 0
    _calls(subscription, 1, at=START + timedelta(days=2), prefix="b")
    assert alerts.check_usage_alerts(now=START + timedelta(days=3)) == 1
    [body] = _sent()
    assert (body["data"]["amount"], body["data"]["currency"]) == (5, "USD")


def test_the_crossing_row_refuses_a_second_firing(plan):
    """What a second worker meets when its check read the alert as pending: the crossing the
    first one committed (the unique row), so it writes no webhook."""
    calls, subscription, _ = plan
    alert = alerts.create_alert(
        subscription.pk, meter_id=calls.pk, threshold_kind="units", threshold="1", now=START
    )
    _calls(subscription, 3, at=START + timedelta(days=1), prefix="a")
    [standing] = alerts.meter_standings([subscription])
    now = START + timedelta(days=2)
    assert alerts._fire(alert, standing, now=now) is True
    assert alerts._fire(alert, standing, now=now) is False
    assert len(_sent()) == 1


def test_checking_the_pending_alerts_skips_fired_ones_without_usage_queries(
    plan, django_assert_max_num_queries
):
    calls, subscription, _ = plan
    alerts.create_alert(
        subscription.pk, meter_id=calls.pk, threshold_kind="units", threshold="1", now=START
    )
    _calls(subscription, 3, at=START + timedelta(days=1), prefix="a")
    alerts.check_usage_alerts(now=START + timedelta(days=2))
    with django_assert_max_num_queries(1):
        assert alerts.check_usage_alerts(now=START + timedelta(days=3)) == 0


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_fire_it_once():
    calls = make_meter("Calls", "api.call", now=START)
    product = make_product([(calls, "0.5", 10)], now=START)
    subscription = subscribe(product, now=START)
    make_endpoint("https://hooks.example.com/usage", TYPE)
    for threshold in ("1", "2", "3"):
        alerts.create_alert(
            subscription.pk,
            meter_id=calls.pk,
            threshold_kind="units",
            threshold=threshold,
            now=START,
        )
    _calls(subscription, 5, at=START + timedelta(days=1), prefix="a")
    barrier = threading.Barrier(2)
    fired: list[int] = []

    def worker() -> None:
        try:
            barrier.wait()
            fired.append(alerts.check_usage_alerts(now=START + timedelta(days=2)))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(fired) == 3
    assert UsageAlertCrossing.objects.count() == 3
    assert WebhookEvent.objects.filter(event_type=TYPE).count() == 3


def test_the_rollup_task_runs_the_check(db):
    # The task checks at the real now: a subscription whose open period holds the usage.
    now = datetime.now(UTC).replace(microsecond=0)
    calls = make_meter("Calls", "api.call", now=now - timedelta(days=1))
    product = make_product([(calls, "0.5", 10)], now=now - timedelta(days=1))
    subscription = subscribe(product, now=now - timedelta(hours=1))
    make_endpoint("https://hooks.example.com/usage", TYPE)
    alerts.create_alert(
        subscription.pk, meter_id=calls.pk, threshold_kind="units", threshold="2", now=now
    )
    _calls(subscription, 2, at=now - timedelta(minutes=30), prefix="t")
    meter_tasks.roll_up()
    [body] = _sent()
    assert body["data"]["subscription_id"] == subscription.pk
    meter_tasks.roll_up()
    assert len(_sent()) == 1


def test_the_portal_shows_a_reached_alert(db):
    now = datetime.now(UTC).replace(microsecond=0)
    calls = make_meter("Calls", "api.call", now=now - timedelta(days=1))
    product = make_product([(calls, "0.5", 10)], now=now - timedelta(days=1))
    subscription = subscribe(product, now=now - timedelta(hours=2))
    alerts.create_alert(
        subscription.pk, meter_id=calls.pk, threshold_kind="units", threshold="2", now=now
    )
    alerts.create_alert(
        subscription.pk, meter_id=calls.pk, threshold_kind="units", threshold="50", now=now
    )
    _calls(subscription, 3, at=now - timedelta(hours=1), prefix="p")
    assert alerts.check_usage_alerts(now=now) == 1
    page = portal_client(subscription.customer).get("/portal/").content.decode()
    assert page.count("alert reached") == 1 and page.count("not reached") == 1
    assert UsageAlert.objects.count() == 2


def test_the_check_reads_usage_once_per_period_window(db):
    """Subscriptions whose periods share a window are read in one usage query: the check costs
    the same for two subscribers as for six."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    calls = make_meter("Calls", "api.call", now=START)
    product = make_product([(calls, "0.5", 10)], now=START)

    def queries_for(count: int) -> int:
        for _ in range(count):
            subscription = subscribe(product, now=START)
            alerts.create_alert(
                subscription.pk,
                meter_id=calls.pk,
                threshold_kind="units",
                threshold=1000,
                now=START,
            )
        with CaptureQueriesContext(connection) as captured:
            assert alerts.check_usage_alerts(now=START + timedelta(days=1)) == 0
        UsageAlert.objects.all().delete()
        return len(captured.captured_queries)

    assert queries_for(2) == queries_for(6)
