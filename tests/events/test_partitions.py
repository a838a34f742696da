"""Monthly partitions of events_event: ingest and the rollup invariant across a month boundary and
in the default partition, exact dedupe across partitions, pruned reads of claimed batches, the
conversion of a plain table with rows, and archiving old months."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from events.models import ArchivedMonth, Event
from events.partitions import (
    UNPARTITIONED_DDL,
    Month,
    convert_to_partitioned,
    create_month_partition,
    ensure_partitions,
    month_partitions,
)
from events.queries import (
    ClaimedEvents,
    EventsArchived,
    claim_pending_batches,
    claimed_events_relation,
)
from meters import rollups
from meters.models import Meter, MeterDailyTotal
from meters.usage import meter_usage, usage_by_customer, usage_series
from products import proofs
from products.archive import ArchiveRefused, archive_events
from products.billing import run_billing_cycle
from products.explain import explain_event
from products.models import Invoice, InvoiceLine
from tests.factories import ingest_events
from tests.meters.oracle import RawEvent, aggregate
from tests.meters.test_daily_totals import assert_weekly_buckets_are_merges_of_daily_buckets
from tests.products.factories import make_meter, make_product, subscribe

pytestmark = pytest.mark.django_db

FEBRUARY, MARCH = Month(2026, 2), Month(2026, 3)
BOUNDARY = MARCH.start
NOW = BOUNDARY + timedelta(hours=3, seconds=17, microseconds=5)
CUSTOMERS = ["cus_a", "cus_b"]


def _partition_of(event_id: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM events_event WHERE event_id = %s", [event_id]
        )
        return cursor.fetchone()[0]


def _events(prefix: str, count: int, seed: int) -> list[dict]:
    """Events spread over the 3 days before NOW, so across the February/March boundary."""
    rng = random.Random(seed)
    return [
        {
            "event_id": f"{prefix}-{i}",
            "customer_id": rng.choice(CUSTOMERS),
            "event_name": "api.call",
            "timestamp": (
                NOW - timedelta(microseconds=rng.randrange(3 * 86400 * 10**6))
            ).isoformat(),
            "metadata": {"tokens": rng.choice([1, 2, 7, "x"])},
        }
        for i in range(count)
    ]


def _raw(sent: list[dict]) -> list[RawEvent]:
    """What must be stored: the first copy of each event_id."""
    first: dict[str, dict] = {}
    for e in sent:
        first.setdefault(e["event_id"], e)
    return [
        RawEvent(
            e["event_id"],
            e["customer_id"],
            e["event_name"],
            datetime.fromisoformat(e["timestamp"]),
            e["metadata"],
            order,
        )
        for order, e in enumerate(first.values())
    ]


def _check_usage(meters, stored: list[RawEvent]) -> None:
    windows = [
        (BOUNDARY - timedelta(days=2, minutes=17), NOW),  # unaligned, across the boundary
        (BOUNDARY - timedelta(hours=5, seconds=3), BOUNDARY + timedelta(hours=1, seconds=9)),
        (BOUNDARY - timedelta(days=3), BOUNDARY),
        (BOUNDARY, NOW + timedelta(minutes=1)),
    ]
    for kind, key, meter in meters:
        oracle = partial(
            aggregate, stored, kind=kind, key=key, event_name="api.call", predicate=lambda m: True
        )
        for start, end in windows:
            by_customer = usage_by_customer(meter, start, end)
            for customer in CUSTOMERS:
                expected = oracle(customer_id=customer, start=start, end=end)
                got = meter_usage(meter, customer, start, end)
                assert (got.quantity, got.event_count, got.skipped_count) == expected
                assert by_customer[customer].quantity == expected[0]
        days = dict(usage_series(meter, BOUNDARY - timedelta(days=3), NOW, "day"))
        for day, usage in days.items():
            expected = oracle(customer_id=None, start=day, end=min(day + timedelta(days=1), NOW))
            assert usage.quantity == expected[0], (kind, day)


def test_rollup_invariant_across_a_month_boundary_while_a_partition_is_created():
    """February has its partition, March starts in the default one and gets its own midway:
    usage from rollups equals the raw aggregation before, during and after the move."""
    with connection.cursor() as cursor:
        create_month_partition(cursor, FEBRUARY)
    meters = [
        ("count", None, make_meter("Calls", "api.call", now=NOW - timedelta(days=4))),
        ("sum", "tokens", make_meter("Tokens", "api.call", "sum", "tokens", now=NOW)),
        ("last", "tokens", make_meter("Last", "api.call", "last", "tokens", now=NOW)),
    ]
    rollups.run_rollups()
    first = _events("a", 300, seed=1)
    for offset in range(0, 300, 100):
        ingest_events(first[offset : offset + 100], now=NOW)
    assert _partition_of("a-0") in {"events_event_p2026_02", "events_event_default"}
    rollups.roll_up_pending(max_batches=1)  # part rolled up, part pending
    _check_usage(meters, _raw(first))

    created = ensure_partitions(now=NOW, months_ahead=0)
    assert MARCH in created
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM events_event_default WHERE timestamp >= %s", [BOUNDARY]
        )
        assert cursor.fetchone()[0] == 0
    march_ids = [e["event_id"] for e in first if datetime.fromisoformat(e["timestamp"]) >= BOUNDARY]
    assert {_partition_of(i) for i in march_ids[:5]} == {"events_event_p2026_03"}
    _check_usage(meters, _raw(first))

    # Repeats across batches (and across partitions: a new timestamp in the other month) are
    # ignored; new events go on.
    second = _events("b", 150, seed=2) + [
        {**e, "timestamp": (BOUNDARY - timedelta(hours=1)).isoformat()} for e in first[:50]
    ]
    stored = sum(ingest_events(second[o : o + 100], now=NOW) for o in range(0, len(second), 100))
    assert stored == 150
    assert Event.objects.count() == 450
    _check_usage(meters, _raw(first + second))
    rollups.roll_up_all_pending()
    _check_usage(meters, _raw(first + second))


def test_an_event_in_the_default_partition_is_found_everywhere():
    moment = datetime(2031, 5, 10, 12, 0, tzinfo=UTC)  # no partition that far ahead
    meter = make_meter("Calls", "api.call", now=moment - timedelta(days=1))
    rollups.run_rollups()
    ingest_events(
        [{"event_id": "far", "customer_id": "cus_a", "event_name": "api.call"}], now=moment
    )
    assert _partition_of("far") == "events_event_default"
    window = (moment - timedelta(minutes=7), moment + timedelta(minutes=3))
    assert meter_usage(meter, "cus_a", *window).event_count == 1  # pending
    rollups.roll_up_all_pending()
    assert meter_usage(meter, "cus_a", *window).event_count == 1  # from the hourly bucket
    assert Event.objects.get(event_id="far").customer_id == "cus_a"
    assert explain_event("far")["stored"] is True

    assert Month(2031, 5) in ensure_partitions(now=moment, months_ahead=0)
    assert _partition_of("far") == "events_event_p2031_05"
    assert meter_usage(meter, "cus_a", *window).event_count == 1
    # A repeat after the move is still a repeat.
    assert (
        ingest_events([{"event_id": "far", "customer_id": "x", "event_name": "y"}], now=moment) == 0
    )


def test_reading_claimed_batches_prunes_to_their_months():
    with connection.cursor() as cursor:
        for month in (Month(2026, 1), FEBRUARY, MARCH):
            create_month_partition(cursor, month)
    ingest_events(
        [
            {
                "event_id": "late",
                "customer_id": "c",
                "event_name": "n",
                "timestamp": "2026-02-27T23:00:00Z",
            },
            {
                "event_id": "now",
                "customer_id": "c",
                "event_name": "n",
                "timestamp": NOW.isoformat(),
            },
        ],
        now=NOW,
    )
    claim = claim_pending_batches(10)
    assert claim.first_timestamp == datetime(2026, 2, 27, 23, tzinfo=UTC)
    sql, params = claimed_events_relation(claim)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN SELECT e.id FROM {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(f"SELECT count(*) FROM {sql}", params)
        assert cursor.fetchone()[0] == 2
    assert "events_event_p2026_02" in plan and "events_event_p2026_03" in plan
    assert "events_event_p2026_01" not in plan and "events_event_default" not in plan
    # A batch logged before the ranges were (null range) is still read, unpruned.
    unknown = ClaimedEvents(claim.event_ids, None, None)
    sql, params = claimed_events_relation(unknown)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {sql}", params)
        assert cursor.fetchone()[0] == 2


def test_converting_a_plain_table_keeps_rows_ids_sequence_and_indexes():
    """The migration's conversion, run on a plain events table (as 0001-0004 left it) with rows
    over three months, in a schema of its own."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA conversion")
        cursor.execute("SET LOCAL search_path = conversion")
        cursor.execute(UNPARTITIONED_DDL)
        cursor.execute(
            """
            INSERT INTO events_event (event_id, customer_id, event_name, timestamp, metadata,
                                      ingested_at)
            SELECT 'e' || g, 'c' || g % 7, 'api.call',
                   '2026-01-15T00:00:00Z'::timestamptz + g * interval '1 hour', '{"n": 1}', now()
            FROM generate_series(1, 1500) g
            """
        )
        cursor.execute("SELECT nextval(pg_get_serial_sequence('events_event', 'id'))")
        cursor.execute("SELECT array_agg(id ORDER BY id), max(id) FROM events_event")
        ids_before, max_before = cursor.fetchone()

        moved = convert_to_partitioned(cursor, now=datetime(2026, 3, 5, tzinfo=UTC), months_ahead=2)

        assert moved == 1500
        cursor.execute("SELECT array_agg(id ORDER BY id) FROM events_event")
        assert cursor.fetchone()[0] == ids_before
        assert month_partitions(cursor) == [Month(2026, m) for m in (1, 2, 3, 4, 5)]
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = 'events_event'::regclass")
        assert cursor.fetchone()[0] == "p"
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'conversion' "
            "AND tablename = 'events_event'"
        )
        assert {row[0] for row in cursor.fetchall()} == {
            "events_event_pkey",
            "event_event_id",
            "event_customer_name_ts",
            "event_name_ts",
            "event_ingested_at_brin",
        }
        cursor.execute(
            "INSERT INTO events_event (event_id, customer_id, event_name, timestamp, metadata, "
            "ingested_at) VALUES ('new', 'c', 'n', '2026-03-06Z', '{}', now()) RETURNING id"
        )
        assert cursor.fetchone()[0] == max_before + 2  # the sequence went on (one was taken)
        cursor.execute("SELECT count(*) FROM events_eventkey")
        assert cursor.fetchone()[0] == 1500
        cursor.execute("SELECT to_regclass('events_event_unpartitioned')")
        assert cursor.fetchone()[0] is None
        cursor.execute("SET LOCAL search_path = public")


# --- archiving -----------------------------------------------------------------------------------

ANCHOR = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
AFTER = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)  # February ended more than 35 days ago


def _billed_january():
    meter = make_meter("Calls", "api.call", now=ANCHOR - timedelta(days=1))
    subscription = subscribe(make_product([(meter, "2", 0)], now=ANCHOR), now=ANCHOR)
    events = [
        {
            "event_id": f"jan-{i}",
            "customer_id": subscription.customer_id,
            "event_name": "api.call",
            "timestamp": (ANCHOR + timedelta(hours=5 * i, seconds=11)).isoformat(),
        }
        for i in range(200)  # Jan 5 to Feb 15, so across the first two periods
    ]
    ingest_events(events[:100], now=ANCHOR + timedelta(days=21))
    ingest_events(events[100:], now=ANCHOR + timedelta(days=42))
    return meter, subscription


def _lines() -> list[tuple]:
    return list(
        InvoiceLine.objects.order_by("invoice_id", "position").values_list(
            "invoice_id", "position", "consumed_units", "amount_minor", "events_digest"
        )
    )


def _usage_from_rollups(meter, customer_id):
    meter.refresh_from_db()
    assert meter.rollups_ready
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    return (
        [(day, usage.quantity) for day, usage in usage_series(meter, start, end, "day")],
        meter_usage(meter, customer_id, start, end).quantity,
        meter_usage(meter, customer_id, ANCHOR.replace(minute=0), end).quantity,
    )


def test_archive_is_refused_while_a_period_is_open_and_accepted_once_invoiced(tmp_path, api):
    meter, subscription = _billed_january()
    rollups.run_rollups()

    with pytest.raises(ArchiveRefused) as refused:
        archive_events(before=FEBRUARY, now=AFTER)
    assert subscription.subscription_id in refused.value.message
    assert "still open" in refused.value.message
    with pytest.raises(CommandError, match=subscription.subscription_id):
        call_command("archive_events", "--before", "2026-02", "--as-of", AFTER.isoformat())
    # Too recent for the late window, whatever the invoices.
    with pytest.raises(ArchiveRefused, match="may still arrive"):
        archive_events(before=MARCH, now=AFTER)

    invoices = run_billing_cycle(now=AFTER)
    assert len(invoices) == 2  # Jan 5 - Feb 5, Feb 5 - Mar 5
    rollups.run_rollups()
    before = _usage_from_rollups(meter, subscription.customer_id)
    assert before[1] == 200
    lines_before = _lines()
    totals_before = sorted(Invoice.objects.values_list("invoice_id", "total_minor"))
    assert proofs.verify().mismatch_count == 0

    archived = archive_events(before=FEBRUARY, now=AFTER, dump_dir=tmp_path)

    # January's rows were in the default partition: they got a partition, then left with it.
    [january] = archived
    jan_rows = sum(
        1 for i in range(200) if ANCHOR + timedelta(hours=5 * i, seconds=11) < FEBRUARY.start
    )
    assert (january.month, january.rows) == (Month(2026, 1), jan_rows)
    with january.dump.open() as dump:
        rows = list(csv.reader(dump))
    assert rows[0][:2] == ["id", "event_id"] and len(rows) == jan_rows + 1
    assert ArchivedMonth.objects.get().rows == jan_rows
    assert Event.objects.filter(timestamp__lt=FEBRUARY.start).count() == 0
    assert Month(2026, 1) not in month_partitions(connection.cursor())

    # Usage from rollups and the invoices are unchanged.
    assert _usage_from_rollups(meter, subscription.customer_id) == before
    assert _lines() == lines_before
    assert sorted(Invoice.objects.values_list("invoice_id", "total_minor")) == totals_before
    # What needs raw January events answers clearly.
    with pytest.raises(EventsArchived, match="archived"):
        meter_usage(meter, subscription.customer_id, ANCHOR, ANCHOR + timedelta(days=3))
    with pytest.raises(EventsArchived, match="jan-0"):
        explain_event("jan-0")
    answer = api.get("/api/events/jan-0/explain")
    assert answer.status_code == 409 and answer.json()["code"] == "EVENTS_ARCHIVED"
    result = proofs.verify()
    assert result.archived_lines == 1 and result.mismatch_count == 0
    # The keys of archived events stay: a repeat (stamped later) is still ignored.
    repeat = {"event_id": "jan-1", "customer_id": "x", "event_name": "api.call"}
    assert ingest_events([repeat], now=AFTER) == 0
    # A meter rebuilt after archiving keeps its archived months' buckets and daily totals
    # (the series over all customers above reads January from those).
    january_totals = list(
        MeterDailyTotal.objects.filter(meter=meter, day__lt=FEBRUARY.start)
        .order_by("day")
        .values_list("day", "event_count")
    )
    assert sum(count for _, count in january_totals) == jan_rows
    Meter.objects.filter(id=meter.id).update(backfilled_version=0)
    assert rollups.backfill_meter(meter.id)
    assert _usage_from_rollups(meter, subscription.customer_id) == before
    # The week across the archive's end (Jan 26 - Feb 2) kept its archived days.
    assert_weekly_buckets_are_merges_of_daily_buckets({"sum": meter})
    assert (
        list(
            MeterDailyTotal.objects.filter(meter=meter, day__lt=FEBRUARY.start)
            .order_by("day")
            .values_list("day", "event_count")
        )
        == january_totals
    )


def test_archive_names_every_reason_to_wait():
    meter, subscription = _billed_january()
    with pytest.raises(ArchiveRefused) as refused:
        archive_events(before=FEBRUARY, now=AFTER)
    message = refused.value.message
    assert "2 ingest batches with such events are not rolled up yet" in message
    assert f"meter {meter.id} is being backfilled" in message
    assert f"subscription {subscription.subscription_id} has its period" in message
    assert not ArchivedMonth.objects.exists()


def test_the_beat_task_keeps_months_ahead_and_rescues_the_default_partition():
    from billing_site.celery import app
    from events.tasks import create_partitions

    assert app.conf.beat_schedule["create-event-partitions"]["task"] == "events.create_partitions"
    ingest_events(
        [
            {
                "event_id": "stray",
                "customer_id": "c",
                "event_name": "n",
                "timestamp": "2026-01-05T08:00:00Z",
            }
        ],
        now=datetime(2026, 1, 20, tzinfo=UTC),
    )
    assert _partition_of("stray") == "events_event_default"
    created = create_partitions.apply().get()
    assert "2026-01" in created
    assert _partition_of("stray") == "events_event_p2026_01"
    with connection.cursor() as cursor:
        months = month_partitions(cursor)
    this_month = Month.of(datetime.now(UTC))
    assert {this_month, this_month.next(), this_month.next().next()} <= set(months)
    assert create_partitions.apply().get() == []  # idempotent
