"""The seed examples, end to end: events go through ingestion, `manage.py rollup` folds them into
buckets, and `meter_usage` / `usage_by_customer` answer what the plain-Python oracle and a hand
calculation say. Each example runs twice: with the meter created before its events (incremental
rollups) and after them (backfill over history)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from meters import services
from meters.models import HourlyUsage, Meter
from meters.usage import Usage, meter_usage, usage_by_customer
from tests.factories import event, ingest_events
from tests.meters.oracle import RawEvent, aggregate

pytestmark = pytest.mark.django_db

NOW = timezone.now().astimezone(UTC)
# Three days of history, starting on an hour; events sit at minutes that no window edge shares.
BASE = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
GB = 1_000_000_000


def at(hours: float, minute: int = 7) -> datetime:
    return BASE + timedelta(hours=hours, minutes=minute)


# Everything; an unaligned window with whole days, whole hours and raw edges; one inside an hour.
WINDOWS = [
    (BASE - timedelta(days=1, minutes=13), NOW + timedelta(minutes=1)),
    (BASE + timedelta(hours=1, minutes=31), BASE + timedelta(days=2, hours=5, minutes=3)),
    (BASE + timedelta(minutes=5), BASE + timedelta(minutes=40)),
]
EVERYTHING = WINDOWS[0]


def rollup() -> None:
    call_command("rollup", stdout=StringIO())


def stored(batches: list[list[dict]]) -> list[RawEvent]:
    """The events as the oracle sees them, numbered in ingestion order (batch by batch)."""
    rows = []
    for batch in batches:
        for e in batch:
            metadata = {
                k: Decimal(str(v)) if isinstance(v, float) else v
                for k, v in e.get("metadata", {}).items()
            }
            timestamp = datetime.fromisoformat(e["timestamp"])
            rows.append(
                RawEvent(
                    e["event_id"], e["customer_id"], e["event_name"], timestamp, metadata, len(rows)
                )
            )
    return rows


def run_example(
    *, meter_first: bool, batches: list[list[dict]], predicate, **meter_fields
) -> tuple[Meter, list[RawEvent]]:
    """Create the meter and ingest the batches (rolling up after each), checking usage against
    the oracle both while the last batch is still pending and after it is rolled up."""
    fields = {"measurement_unit": "units", "now": BASE - timedelta(days=1), **meter_fields}
    meter = services.create_meter(**fields) if meter_first else None
    rollup()
    for batch in batches[:-1]:
        ingest_events(batch, now=NOW)
        rollup()
    ingest_events(batches[-1], now=NOW)
    events = stored(batches)
    if meter is None:
        meter = services.create_meter(**fields)  # answered from raw events until backfilled
    check_against_oracle(Meter.objects.get(pk=meter.pk), events, predicate)
    rollup()
    meter = Meter.objects.get(pk=meter.pk)
    assert meter.rollups_ready
    assert HourlyUsage.objects.filter(meter=meter).exists()
    check_against_oracle(meter, events, predicate)
    return meter, events


def check_against_oracle(meter: Meter, events: list[RawEvent], predicate) -> None:
    customers = sorted({e.customer_id for e in events})
    for start, end in WINDOWS:
        table = usage_by_customer(meter, start, end)
        for customer in customers:
            expected = aggregate(
                events,
                kind=meter.aggregation_type,
                key=meter.aggregation_key,
                event_name=meter.event_name,
                predicate=predicate,
                customer_id=customer,
                start=start,
                end=end,
            )
            got = meter_usage(meter, customer, start, end)
            assert (got.quantity, got.event_count, got.skipped_count) == expected, (customer, start)
            row = table.get(customer, Usage.zero())
            assert (row.quantity, row.event_count, row.skipped_count) == expected, (customer, start)


def usage(meter: Meter, customer: str) -> Usage:
    return meter_usage(meter, customer, *EVERYTHING)


both_ways = pytest.mark.parametrize(
    "meter_first", [True, False], ids=["meter-then-events", "events-then-meter"]
)


@both_ways
def test_tokens_used_is_the_sum_of_tokens(meter_first):
    tokens = [("cus_a", 0, 100), ("cus_a", 5, 250), ("cus_b", 5, 75), ("cus_a", 30, 1200)]
    tokens += [("cus_b", 49, 5), ("cus_a", 70, 3)]
    batch = [
        event(f"tok-{i}", customer, "tokens.used", timestamp=at(hour), metadata={"tokens": n})
        for i, (customer, hour, n) in enumerate(tokens)
    ]
    batch.append(event("noise", "cus_a", "tokens.counted", timestamp=at(1), metadata={"tokens": 9}))
    meter, _ = run_example(
        meter_first=meter_first,
        batches=[batch[:3], batch[3:]],
        predicate=lambda m: True,
        name="Tokens",
        event_name="tokens.used",
        aggregation={"type": "sum", "key": "tokens"},
    )
    assert usage(meter, "cus_a") == Usage(Decimal(1553), 4, 0)
    assert usage(meter, "cus_b") == Usage(Decimal(80), 2, 0)


@both_ways
def test_hd_images_are_counted_with_a_quality_filter(meter_first):
    qualities = ["hd", "sd", "hd", "HD", None, "hd ", "hd", "sd"]
    batch = []
    for i, quality in enumerate(qualities):
        metadata = {"model": "sdxl"} if quality is None else {"quality": quality}
        customer = "cus_a" if i % 4 else "cus_b"
        batch.append(
            event(f"img-{i}", customer, "image.generated", timestamp=at(i * 7), metadata=metadata)
        )
    meter, events = run_example(
        meter_first=meter_first,
        batches=[batch],
        predicate=lambda m: m.get("quality") == "hd",
        name="HD images",
        event_name="image.generated",
        aggregation={"type": "count"},
        filter={
            "conjunction": "and",
            "clauses": [{"key": "quality", "operator": "equals", "value": "hd"}],
        },
    )
    # hd at i = 0 (cus_b), 2 and 6 (cus_a); "HD", "hd " and a missing quality never match.
    assert usage(meter, "cus_a") == Usage(Decimal(2), 2, 0)
    assert usage(meter, "cus_b") == Usage(Decimal(1), 1, 0)


@both_ways
def test_storage_sums_bytes_exactly(meter_first):
    sizes = [5 * GB, 7_500_000_000, 1, 2 * GB + 500_000_000, 999_999_999]
    hours = [2, 26, 27, 50, 51]
    batch = [
        event(f"up-{i}", "cus_a", "file.uploaded", timestamp=at(h), metadata={"bytes": size})
        for i, (size, h) in enumerate(zip(sizes, hours, strict=True))
    ]
    meter, _ = run_example(
        meter_first=meter_first,
        batches=[batch[:2], batch[2:]],
        predicate=lambda m: True,
        name="Storage",
        event_name="file.uploaded",
        aggregation={"type": "sum", "key": "bytes"},
    )
    # 12.5 GB from the first two uploads alone, then the rest.
    assert meter_usage(meter, "cus_a", BASE, at(26, 30)).quantity == Decimal(12_500_000_000)
    assert usage(meter, "cus_a").quantity == Decimal(16_000_000_000)


@both_ways
def test_a_gauge_reports_its_last_value_and_a_tie_goes_to_the_later_ingested(meter_first):
    tie = at(40, 30)
    first = [
        event("g-1", "cus_a", "gauge.read", timestamp=at(1), metadata={"level": 90}),
        event("g-2", "cus_a", "gauge.read", timestamp=at(20), metadata={"level": 12.5}),
        # Stored first, with the larger event_id: ingestion order, not id order, breaks the tie.
        event("g-z", "cus_a", "gauge.read", timestamp=tie, metadata={"level": 7}),
        event("g-3", "cus_b", "gauge.read", timestamp=at(2), metadata={"level": 1}),
    ]
    second = [
        event("g-a", "cus_a", "gauge.read", timestamp=tie, metadata={"level": 3}),
        # Older than the tie: stored later but never the last value.
        event("g-4", "cus_a", "gauge.read", timestamp=at(30), metadata={"level": 55}),
        # Newer, but not a number: skipped, so it is not the last value either.
        event("g-5", "cus_a", "gauge.read", timestamp=at(41), metadata={"level": "n/a"}),
    ]
    meter, _ = run_example(
        meter_first=meter_first,
        batches=[first, second],
        predicate=lambda m: True,
        name="Gauge",
        event_name="gauge.read",
        aggregation={"type": "last", "key": "level"},
    )
    assert usage(meter, "cus_a") == Usage(Decimal(3), 5, 1)
    assert usage(meter, "cus_b") == Usage(Decimal(1), 1, 0)
    # A window that ends before the tie sees the older reading.
    assert meter_usage(meter, "cus_a", BASE, at(35)).quantity == Decimal(55)


@both_ways
def test_a_string_150_is_skipped_by_a_sum_and_shown_as_skipped(meter_first):
    values = [100, "150", 50, True, None, 0.25]
    batch = []
    for i, value in enumerate(values):
        metadata = {"model": "m"} if value is None else {"tokens": value}
        batch.append(
            event(f"s-{i}", "cus_a", "tokens.used", timestamp=at(3 * i), metadata=metadata)
        )
    meter, _ = run_example(
        meter_first=meter_first,
        batches=[batch[:2], batch[2:]],
        predicate=lambda m: True,
        name="Tokens",
        event_name="tokens.used",
        aggregation={"type": "sum", "key": "tokens"},
    )
    # "150", true and a missing key are skipped; never coerced.
    assert usage(meter, "cus_a") == Usage(Decimal("150.25"), 3, 3)
    assert usage_by_customer(meter, *EVERYTHING)["cus_a"].skipped_count == 3


@both_ways
def test_ten_tenths_sum_to_exactly_one(meter_first):
    # Spread over hours and days, so buckets of both sizes and raw edges all take part.
    batch = [
        event(f"d-{i}", "cus_a", "credit.used", timestamp=at(7 * i, 3 * i), metadata={"x": 0.1})
        for i in range(10)
    ]
    meter, _ = run_example(
        meter_first=meter_first,
        batches=[batch[:4], batch[4:]],
        predicate=lambda m: True,
        name="Tenths",
        event_name="credit.used",
        aggregation={"type": "sum", "key": "x"},
    )
    total = usage(meter, "cus_a").quantity
    assert total == Decimal("1")
    assert str(total) == "1"
    assert usage_by_customer(meter, *EVERYTHING)["cus_a"].quantity == Decimal("1")
