"""Explain benchmark: `GET /api/events/{event_id}/explain` over a large events table.

    python -m bench.explain                       # 10M events, 1,000 customers, 30 days
    python -m bench.explain --events 1000000      # quicker
    python -m bench.explain --skip-load           # reuse the loaded database
    python -m bench.explain --help

It creates its own database (dropped, recreated, migrated), loads the events with bench.usage's
COPY loader (10 event names, 1,000 customers, 30 days), then runs Django in-process against it
and adds: bench.usage's 10 meters plus 4 whose event names differ by case or one edit (so every
explanation considers several meters), the 1,000 customers with a subscription each to one
product pricing every meter, a final invoice per subscription for the loaded month with one usage
line per meter (written directly: the figures are about reading them), and `--refused` refused
events in `events_refusedevent` (what a week of refusals could leave).

Timed, warm, median and p95 of `--runs` requests each, through Django's test client with an API
key (authentication, middleware, view, queries, JSON rendering; no network): a random stored
event (billed on its invoice), a random refused event, and an id never seen (404). Goal: 100 ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from bench.common import DEFAULT_SERVER_URL, BenchmarkFailed, database_url, run_benchmark
from bench.usage import (
    billing_anchor,
    customer_id,
    data_start_for,
    ensure_meters,
    load_events,
    machine,
    prepare_database,
    setup_django,
)

GOAL_MS = 100.0
NEAR_NAMES = (("API call (case)", "API.Call"), ("API calls (typo)", "api.calls"))


def event_count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM events_event").fetchone()[0]


def add_fixtures(*, customers: int, anchor: datetime, refused: int, seed: int) -> None:
    """Meters with near names, customers, subscriptions, an issued invoice each, refusals."""
    from django.db import connection

    from events.models import RefusedEvent
    from meters import services as meter_services
    from meters.models import Meter
    from products import services
    from products.models import (
        Customer,
        Invoice,
        InvoiceLine,
        InvoiceStatus,
        LineKind,
        Subscription,
    )

    if Subscription.objects.exists():
        return
    meters = ensure_meters(anchor)
    for name, event_name in NEAR_NAMES:
        for kind in ("count", "sum"):
            if not Meter.objects.filter(name=f"{name} {kind}").exists():
                meter_services.create_meter(
                    name=f"{name} {kind}",
                    event_name=event_name,
                    measurement_unit="units",
                    aggregation={"type": kind, "key": "value" if kind == "sum" else None},
                    filter=None,
                    now=anchor,
                )
    product = services.create_product(
        name="Bench plan",
        now=anchor,
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 1000,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Month",
            "subscription_period_count": 1,
            "subscription_period_interval": "Year",
            "meters": [
                {"meter_id": m.id, "price_per_unit": "1", "free_threshold": 0} for m in meters
            ],
        },
    )
    Customer.objects.bulk_create(
        Customer(customer_id=customer_id(n), email=f"c{n}@example.com", name=f"Customer {n}")
        for n in range(customers)
    )
    for customer in Customer.objects.all():
        services.create_subscription(customer=customer, product=product, now=anchor)
    invoices = []
    for number, subscription in enumerate(Subscription.objects.all(), 1):
        period = subscription.period(0)
        invoices.append(
            Invoice(
                subscription=subscription,
                customer_id=subscription.customer_id,
                period_index=0,
                period_start=period.start,
                period_end=period.end,
                status=InvoiceStatus.ISSUED,
                number=f"BENCH-{number:06d}",
                currency="USD",
                total_minor=1000,
                created_at=period.end,
                issued_at=period.end,
            )
        )
    Invoice.objects.bulk_create(invoices)
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=position,
            kind=LineKind.USAGE,
            meter=meter,
            description=meter.name,
            consumed_units=Decimal(0),
            amount_minor=0,
            events_counted=0,
        )
        for invoice in invoices
        for position, meter in enumerate(meters, 1)
    )
    rng = random.Random(seed)
    now = datetime.now(UTC)
    RefusedEvent.objects.bulk_create(
        (
            RefusedEvent(
                event_id=f"refused_{n:08d}",
                code="TIMESTAMP_TOO_OLD",
                field="events[0].timestamp",
                message="timestamp is more than 35 days in the past.",
                customer_id=customer_id(rng.randrange(customers)),
                event_name="api.call",
                timestamp=(now - timedelta(days=60)).isoformat(),
                refused_at=now - timedelta(seconds=n),
            )
            for n in range(refused)
        ),
        batch_size=10_000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def time_requests(paths: list[str], *, expect: int) -> list[float]:
    from django.test import Client

    from billing_site.models import ApiKey

    logging.getLogger("django.request").setLevel(logging.ERROR)  # the 404s are expected
    _, key = ApiKey.create(
        name="bench", rate_limit_per_second=1_000_000, rate_limit_per_minute=1_000_000
    )
    client = Client(headers={"Authorization": f"Bearer {key}"})
    samples = []
    for path in paths[:2]:  # warm-up
        client.get(path)
    for path in paths:
        began = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - began) * 1000)
        if response.status_code != expect:
            raise BenchmarkFailed(f"{path}: {response.status_code} {response.content[:300]!r}")
    return samples


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.explain",
        description="Latency of GET /api/events/{id}/explain over a large events table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--refused", type=int, default=200_000, help="refused events kept")
    parser.add_argument("--runs", type=int, default=200, help="timed requests per kind")
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded database")
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--db-name", default="billing_bench_explain")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    results: dict = {"machine": machine(args.server_url)}
    print(f"explain benchmark; load average {results['machine']['load_average_before']}")
    data_start = data_start_for(datetime.now(UTC).date())
    db_url = database_url(args.server_url, args.db_name)
    if not args.skip_load:
        db_url, _ = prepare_database(args.server_url, args.db_name)
        results["load"] = load_events(
            db_url, events=args.events, customers=args.customers, start=data_start, seed=args.seed
        )
    total = event_count(db_url)
    results["events"] = total
    print(f"{total:,} events")
    setup_django(db_url)
    fixture_started = time.perf_counter()
    add_fixtures(
        customers=args.customers,
        anchor=billing_anchor(data_start),
        refused=args.refused,
        seed=args.seed,
    )
    results["fixtures_s"] = round(time.perf_counter() - fixture_started, 1)

    from products.explain import explain_event

    rng = random.Random(args.seed)
    stored = [f"/api/events/evt_{rng.randrange(total):010d}/explain" for _ in range(args.runs)]
    refused = [
        f"/api/events/refused_{rng.randrange(args.refused):08d}/explain" for _ in range(args.runs)
    ]
    unseen = [f"/api/events/never_{n}/explain" for n in range(args.runs)]
    sample = explain_event(stored[0].split("/")[3])
    assert sample is not None
    print(f"sample: {sample['summary']} ({len(sample['meters'])} meters considered)")
    results["sample_summary"] = sample["summary"]
    results["stored"] = summary(time_requests(stored, expect=200))
    results["refused"] = summary(time_requests(refused, expect=200))
    results["never_seen"] = summary(time_requests(unseen, expect=404))
    results["load_average_after"] = os.getloadavg()
    results["total_s"] = round(time.perf_counter() - started)
    for kind in ("stored", "refused", "never_seen"):
        figures = results[kind]
        verdict = "meets" if figures["p95_ms"] < GOAL_MS else "MISSES"
        print(
            f"{kind:<11} median {figures['median_ms']:>6.1f} ms, p95 {figures['p95_ms']:>6.1f} "
            f"ms, max {figures['max_ms']:>6.1f} ms: {verdict} the {GOAL_MS:.0f} ms goal"
        )
    print(json.dumps(results, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    run_benchmark(main)
