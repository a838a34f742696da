"""Gating benchmark: `GET /api/customers/{id}/usage?meter_id=` and the usage-alert check over the
usage benchmark's events (10 million by default).

    python -m bench.portal                      # 10M events, 1,000 customers, 30 days
    python -m bench.portal --events 1000000     # quicker
    python -m bench.portal --skip-load          # reuse the loaded database

It loads the events as bench.usage does (its own database, COPY, every meter backfilled), then
gives each of the events' customers a monthly subscription to a product pricing the "LLM tokens"
meter (anchored before the first event, so the open period holds all 30 days) and one usage
alert, and measures, in-process and warm, median and p95 of `--runs` runs:

- the endpoint through Django's test client (authentication, query, JSON), a different customer
  each run, its answer checked against `meter_usage` over raw events;
- `portal.alerts.check_usage_alerts` over every subscription, the work the rollup task adds each
  run while no alert has fired (the costly case: once fired, an alert is skipped without usage
  queries).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from bench.common import DEFAULT_SERVER_URL, BenchmarkFailed, database_url, run_benchmark
from bench.usage import (
    _time,
    backfill_all,
    billing_anchor,
    customer_id,
    data_start_for,
    ensure_meters,
    load_events,
    loaded_data_start,
    prepare_database,
    raw_copy,
    setup_django,
)

GOAL_MS = 10.0


def subscribe_everyone(meter, customers: int, anchor: datetime) -> None:
    """A monthly plan on `meter` for every customer of the events, and an alert each (a threshold
    nobody reaches, so the check reads every subscription's usage)."""
    from portal.alerts import create_alert
    from products import services
    from products.models import Customer, Subscription

    if Subscription.objects.exists():
        return
    product = services.create_product(
        name="Tokens plan",
        now=anchor,
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 1000,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Month",
            "subscription_period_count": 1,
            "subscription_period_interval": "Year",
            "meters": [{"meter_id": meter.id, "price_per_unit": "0.001", "free_threshold": 1000}],
        },
    )
    Customer.objects.bulk_create(
        Customer(customer_id=customer_id(n), email=f"c{n}@example.com", name=f"C{n}")
        for n in range(customers)
    )
    for customer in Customer.objects.order_by("customer_id"):
        subscription = services.create_subscription(customer=customer, product=product, now=anchor)
        create_alert(
            subscription.pk,
            meter_id=meter.id,
            threshold_kind="units",
            threshold="100000000000000",
            now=anchor,
        )


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, round(len(ordered) * 0.95) - 1)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded database")
    parser.add_argument(
        "--server-url", default=os.environ.get("BENCH_SERVER_URL") or DEFAULT_SERVER_URL
    )
    parser.add_argument("--db-name", default="billing_bench_portal", help="dropped and recreated")
    parser.add_argument("--seed", type=int, default=20240601)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    if args.skip_load:
        db_url = database_url(args.server_url, args.db_name)
        start, loaded = loaded_data_start(db_url)
    else:
        start = data_start_for(datetime.now(UTC).date())
        db_url, _ = prepare_database(args.server_url, args.db_name)
        load_events(
            db_url, events=args.events, customers=args.customers, start=start, seed=args.seed
        )
        loaded = args.events
    setup_django(db_url)
    meters = ensure_meters(now=start)
    if not all(meter.rollups_ready for meter in meters):
        backfill_all(meters)
    # What autovacuum does after the backfill's bulk writes: without statistics the planner
    # reads a day's buckets of every customer to find one customer's.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE meters_dailyusage")
        conn.execute("ANALYZE meters_hourlyusage")
        conn.execute("ANALYZE meters_weeklyusage")
    from django.test import Client

    from billing_site.models import ApiKey
    from meters.models import Meter
    from meters.usage import meter_usage
    from portal.alerts import check_usage_alerts
    from products.models import Subscription

    tokens = Meter.objects.get(name="LLM tokens")
    subscribe_everyone(tokens, args.customers, billing_anchor(start))
    _, key = ApiKey.create(
        name="bench", rate_limit_per_second=1_000_000, rate_limit_per_minute=1_000_000
    )
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    rng = random.Random(args.seed)
    picks = [customer_id(rng.randrange(args.customers)) for _ in range(args.runs + 3)]
    raw = raw_copy(tokens)
    anchor = billing_anchor(start)
    anchor_end = Subscription.objects.first().current_period_end
    for pick in picks[:3]:
        [item] = client.get(f"/api/customers/{pick}/usage?meter_id={tokens.id}").json()["items"]
        exact = meter_usage(raw, pick, anchor, item_end(item))
        if Decimal(item["consumed_units"]) != exact.quantity:
            raise BenchmarkFailed(f"{pick}: {item['consumed_units']} != raw {exact.quantity}")

    def endpoint(i: int) -> None:
        response = client.get(f"/api/customers/{picks[i]}/usage?meter_id={tokens.id}")
        if response.status_code != 200:
            raise BenchmarkFailed(response.content.decode())

    endpoint_ms = _time(endpoint, args.runs, warmup=3)
    # For scale: the fixed cost of any API request here (key, middleware, one row, JSON),
    # and the one usage query the endpoint adds over it.
    baseline_ms = _time(lambda i: client.get(f"/api/customers/{picks[i]}"), args.runs, 3)
    query_ms = _time(lambda i: meter_usage(tokens, picks[i], anchor, anchor_end), args.runs, 3)
    now = datetime.now(UTC)
    check_ms = _time(lambda i: check_usage_alerts(now=now), max(3, args.runs // 10), warmup=1)
    median, p95 = summary(endpoint_ms)
    check_median, check_p95 = summary(check_ms)
    print(f"{loaded:,} events, {args.customers:,} customers; load average before {load_before}")
    print(
        f"GET /api/customers/{{id}}/usage?meter_id=: median {median:.1f} ms, p95 {p95:.1f} ms "
        f"(goal < {GOAL_MS:.0f} ms: {'met' if p95 < GOAL_MS else 'NOT met'})"
    )
    baseline, query = summary(baseline_ms)[0], summary(query_ms)[0]
    print(
        f"for scale: GET /api/customers/{{id}} median {baseline:.1f} ms; the usage query alone "
        f"(meter_usage) median {query:.1f} ms"
    )
    print(
        f"check_usage_alerts, {args.customers:,} subscriptions with an alert: "
        f"median {check_median:.0f} ms, p95 {check_p95:.0f} ms"
    )
    print(f"load average after {os.getloadavg()}")
    return 0


def item_end(item: dict) -> datetime:
    return datetime.fromisoformat(item["period_end"].replace("Z", "+00:00"))


if __name__ == "__main__":
    run_benchmark(main)
