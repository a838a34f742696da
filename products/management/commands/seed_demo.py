"""`manage.py seed_demo`: a realistic demo data set, safe to run again.

Two businesses' worth of billing: an AI image generator (images counted by quality, GPU seconds,
HD images paid in prepaid credits) and an API business (calls after a free tier, tokens, peak
storage, seats). Customers subscribed 30 days ago to weekly plans, 30 days of events, then the
rollups and the billing cycle run, so closed periods have invoices and credits have a ledger.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from credits import services as credit_services
from credits.models import CreditEntitlement
from events.ingest import MAX_EVENTS
from meters import rollups
from meters import services as meter_services
from meters.models import Meter
from products import services
from products.billing import ingest_events, run_billing_cycle
from products.models import Customer, Product, Subscription

DAYS = 30
IMAGE_CUSTOMERS = [
    ("Acme Studio", "billing@acme-studio.example"),
    ("Blue Canvas", "ops@bluecanvas.example"),
    ("Nova Ads", "finance@nova-ads.example"),
]
API_CUSTOMERS = [
    ("Northwind API", "finance@northwind.example"),
    ("Globex Labs", "ap@globex.example"),
    ("Initech", "accounts@initech.example"),
]
CREDIT_CUSTOMERS = [("Pixel Kids", "hello@pixelkids.example")]


def _equals(key: str, value) -> dict:
    return {"conjunction": "and", "clauses": [{"key": key, "operator": "equals", "value": value}]}


METERS = [
    # name, event name, aggregation, key, unit, filter
    ("Standard images", "image.generated", "count", None, "images", _equals("quality", "standard")),
    ("HD images", "image.generated", "count", None, "images", _equals("quality", "hd")),
    ("GPU seconds", "image.generated", "sum", "gpu_seconds", "seconds", None),
    (
        "API calls",
        "api.request",
        "count",
        None,
        "calls",
        {
            "conjunction": "and",
            "clauses": [{"key": "status", "operator": "less_than", "value": 500}],
        },
    ),
    ("Tokens", "tokens.used", "sum", "tokens", "tokens", None),
    ("Peak storage", "storage.measured", "max", "gigabytes", "GB", None),
    ("Active seats", "seats.counted", "last", "seats", "seats", None),
]


class Command(BaseCommand):
    help = "Load demo customers, meters, products, 30 days of usage, invoices and credits."

    def add_arguments(self, parser):
        parser.add_argument("--events-per-day", type=int, default=600)

    def handle(self, *args, events_per_day: int, **options):
        now = timezone.now()
        start = (now - timedelta(days=DAYS)).replace(minute=0, second=0, microsecond=0)
        if Subscription.objects.filter(metadata__demo=True).exists():
            self.stdout.write("Demo data is already loaded; running rollups and billing only.")
        else:
            with transaction.atomic():
                meters = self._meters(start)
                subscriptions = self._subscriptions(meters, start)
            self._events(subscriptions, start, now, events_per_day)
        rollups.run_rollups()
        invoices = run_billing_cycle(now=now)
        self.stdout.write(
            f"Demo data ready: {Customer.objects.count()} customers, "
            f"{Meter.objects.count()} meters, {Product.objects.count()} products, "
            f"{len(invoices)} new invoices."
        )

    def _meters(self, start: datetime) -> dict[str, Meter]:
        meters = {}
        for name, event_name, kind, key, unit, filter in METERS:
            meters[name] = Meter.objects.filter(name=name).first() or meter_services.create_meter(
                name=name,
                event_name=event_name,
                measurement_unit=unit,
                aggregation={"type": kind, "key": key},
                filter=filter,
                now=start,
            )
        return meters

    def _subscriptions(self, meters: dict[str, Meter], start: datetime) -> list[Subscription]:
        weekly = {
            "type": "usage_based_price",
            "currency": "USD",
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Week",
        }
        image_pro = services.create_product(
            name="Image Pro",
            now=start,
            price={
                **weekly,
                "fixed_price": 2900,
                "meters": [
                    {
                        "meter_id": meters["Standard images"].id,
                        "price_per_unit": "4",
                        "free_threshold": 100,
                    },
                    {
                        "meter_id": meters["HD images"].id,
                        "price_per_unit": "8",
                        "free_threshold": 20,
                    },
                    {
                        "meter_id": meters["GPU seconds"].id,
                        "price_per_unit": "0.05",
                        "free_threshold": 0,
                    },
                ],
            },
        )
        api_growth = services.create_product(
            name="API Growth",
            now=start,
            price={
                **weekly,
                "fixed_price": 4900,
                "meters": [
                    {
                        "meter_id": meters["API calls"].id,
                        "price_per_unit": "0.1",
                        "free_threshold": 2000,
                    },
                    {
                        "meter_id": meters["Tokens"].id,
                        "price_per_unit": "0.002",
                        "free_threshold": 50000,
                    },
                    {
                        "meter_id": meters["Peak storage"].id,
                        "price_per_unit": "25",
                        "free_threshold": 10,
                    },
                    {
                        "meter_id": meters["Active seats"].id,
                        "price_per_unit": "500",
                        "free_threshold": 3,
                    },
                ],
            },
        )
        credits = CreditEntitlement.objects.filter(name="Image credits").first()
        if credits is None:
            credits = credit_services.create_entitlement(
                now=start,
                name="Image credits",
                unit="credits",
                precision=0,
                rollover_enabled=True,
                rollover_percentage=50,
                expires_after_days=7,
                max_rollover_count=2,
                overage_enabled=True,
                overage_behavior="invoice_at_billing",
                price_per_unit="6",
                currency="USD",
            )
        credits_starter = services.create_product(
            name="Credits Starter",
            now=start,
            credit_entitlements=[{"credit_entitlement_id": credits.id, "credits_amount": "150"}],
            price={
                **weekly,
                "fixed_price": 1500,
                "meters": [
                    {
                        "meter_id": meters["HD images"].id,
                        "credit_entitlement_id": credits.id,
                        "meter_units_per_credit": "1",
                        "free_threshold": 10,
                    },
                ],
            },
        )
        plans = (
            [(image_pro, c) for c in IMAGE_CUSTOMERS]
            + [(api_growth, c) for c in API_CUSTOMERS]
            + [(credits_starter, c) for c in CREDIT_CUSTOMERS]
        )
        subscriptions = []
        for product, (name, email) in plans:
            customer, _ = Customer.objects.get_or_create(
                email=email, defaults={"name": name, "created_at": start}
            )
            subscriptions.append(
                services.create_subscription(
                    customer=customer,
                    product=product,
                    now=start,
                    metadata={"demo": True},
                    billing={"country": "US"},  # Dodo's subscriptions always have an address
                )
            )
        return subscriptions

    def _events(self, subscriptions, start: datetime, now: datetime, per_day: int) -> None:
        rng = random.Random(2026)
        events = []
        total_seconds = int((now - start).total_seconds()) - 60
        for number in range(per_day * DAYS):
            subscription = rng.choice(subscriptions)
            at = start + timedelta(seconds=rng.randrange(total_seconds))
            name, metadata = self._usage(subscription.product.name, rng)
            events.append(
                {
                    "event_id": f"demo-{number:06d}",
                    "customer_id": subscription.customer_id,
                    "event_name": name,
                    "timestamp": at.isoformat(),
                    "metadata": metadata,
                }
            )
        # A few events from an app that sends an id no customer has yet: stored and flagged.
        events += [
            {
                "event_id": f"demo-unknown-{n}",
                "customer_id": "cus_not_created_yet",
                "event_name": "api.request",
                "timestamp": (now - timedelta(hours=n + 1)).isoformat(),
                "metadata": {"status": 200},
            }
            for n in range(5)
        ]
        for offset in tqdm(range(0, len(events), MAX_EVENTS), desc="demo events", unit="batch"):
            batch = {"events": events[offset : offset + MAX_EVENTS]}
            ingest_events(json.dumps(batch).encode(), now=now)

    @staticmethod
    def _usage(product_name: str, rng: random.Random) -> tuple[str, dict]:
        if product_name in ("Image Pro", "Credits Starter"):
            quality = rng.choices(["standard", "hd"], weights=[3, 1])[0]
            seconds = round(rng.uniform(0.5, 6.0), 2) if quality == "hd" else rng.randint(1, 3)
            return "image.generated", {"quality": quality, "gpu_seconds": seconds}
        roll = rng.random()
        if roll < 0.6:
            status = rng.choices([200, 201, 404, 503], weights=[80, 10, 7, 3])[0]
            return "api.request", {"status": status, "path": rng.choice(["/v1/chat", "/v1/embed"])}
        if roll < 0.9:
            tokens = rng.randint(50, 4000)
            # Now and then a client sends the number as a string: skipped, and shown as skipped.
            return "tokens.used", {"tokens": str(tokens) if rng.random() < 0.01 else tokens}
        if roll < 0.97:
            return "storage.measured", {"gigabytes": round(rng.uniform(2, 40), 1)}
        return "seats.counted", {"seats": rng.randint(1, 12)}
