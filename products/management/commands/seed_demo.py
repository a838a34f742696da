"""`manage.py seed_demo`: a small, realistic data set for the demo (customers and their usage)."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone
from tqdm import tqdm

from events.ingest import MAX_EVENTS, ingest
from products.models import Customer

DEMO_CUSTOMERS = [
    ("Acme Images", "billing@acme-images.example"),
    ("Pixel Forge", "ops@pixelforge.example"),
    ("Northwind API", "finance@northwind.example"),
    ("Globex Labs", "ap@globex.example"),
]
DAYS = 7


class Command(BaseCommand):
    help = "Load demo customers and a week of usage events (safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("--events-per-day", type=int, default=400)

    def handle(self, *args, events_per_day: int, **options):
        now = timezone.now()
        rng = random.Random(7)
        customers = [
            Customer.objects.get_or_create(email=email, defaults={"name": name})[0]
            for name, email in DEMO_CUSTOMERS
        ]
        events = []
        for day in range(DAYS):
            for n in range(events_per_day):
                customer = rng.choice(customers)
                at = now - timedelta(days=day, seconds=rng.randrange(86400))
                if rng.random() < 0.5:
                    name = "image.generated"
                    metadata = {"quality": rng.choice(["standard", "hd"]), "images": 1}
                else:
                    name = "tokens.used"
                    metadata = {"tokens": rng.randrange(50, 4000), "model": "m-large"}
                events.append(
                    {
                        "event_id": f"demo-{day}-{n}",
                        "customer_id": customer.customer_id,
                        "event_name": name,
                        "timestamp": at.isoformat(),
                        "metadata": metadata,
                    }
                )
        stored = 0
        for start in tqdm(range(0, len(events), MAX_EVENTS), desc="demo events", unit="batch"):
            body = json.dumps({"events": events[start : start + MAX_EVENTS]}).encode()
            stored += ingest(body, now=now)
        self.stdout.write(f"Demo data: {len(customers)} customers, {stored} new events.")
