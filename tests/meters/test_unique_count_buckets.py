"""unique_count and min, from raw events and from buckets: typed distinct values, exact minima,
and bucket merges that are commutative and idempotent (set union), so the stored buckets do not
depend on which worker applied which batch first."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction

from billing_site.jsonutil import exact_dumps
from meters import rollups, services, usage
from meters.usage import meter_usage, usage_by_customer
from products.billing import ingest_events
from tests.factories import roll_up_concurrently
from tests.meters.oracle import typed_value

NOW = datetime(2026, 5, 20, 15, 40, tzinfo=UTC)


def make(kind: str, key: str, *, event_name: str = "app.opened"):
    meter = services.create_meter(
        name=f"{kind} of {key}",
        event_name=event_name,
        measurement_unit="units",
        aggregation={"type": kind, "key": key},
        now=NOW - timedelta(days=30),
    )
    rollups.run_rollups()  # no events yet: current
    meter.refresh_from_db()
    return meter


def send(customer: str, values: list, *, key: str, prefix: str, start: datetime, step: timedelta):
    """One event per value (MISSING: without the key), `step` apart from `start`."""
    events = []
    for i, value in enumerate(values):
        events.append(
            {
                "event_id": f"{prefix}-{i}",
                "customer_id": customer,
                "event_name": "app.opened",
                "timestamp": (start + step * i).isoformat(),
                "metadata": {} if value is MISSING else {key: value},
            }
        )
    ingest(events)


def ingest(events: list[dict]) -> None:
    """Through the real ingestion; exact JSON, so `1.000` reaches the server as written."""
    ingest_events(exact_dumps({"events": events}, default=_float).encode(), now=NOW)


def _float(value):
    if isinstance(value, float):
        return Decimal(repr(value))
    raise TypeError(value)


MISSING = object()
# Typed as filters compare: 1, 1.0 and 1.000 are one value; "1" another; true another, and
# "true" another again; 1.5 and 1.50 one; -0.0 and 0 one; "" is a value; a missing key is not.
TYPED_VALUES = [1, 1.0, "1", True, "true", False, 1.5, "1.5", 0, -0.0, "", MISSING, MISSING]
TYPED_DISTINCT = 9  # n:1, s:1, b:true, s:true, b:false, n:1.5, s:1.5, n:0, s:


@pytest.mark.django_db(transaction=True)
def test_distinct_values_are_typed_as_filters_compare_from_raw_events_and_from_buckets():
    meter = make("unique_count", "user_id")
    # Spread over many hours and two days, each value twice, so buckets overlap in values.
    values = TYPED_VALUES + [Decimal("1.000"), Decimal("1.50")] + TYPED_VALUES
    send("cus_1", values, key="user_id", prefix="t", start=NOW - timedelta(days=2), step=HOUR)
    window = (NOW - timedelta(days=3), NOW + timedelta(minutes=5))

    pending = meter_usage(meter, "cus_1", *window)  # nothing rolled up yet: read raw
    rollups.run_rollups()
    rolled = meter_usage(meter, "cus_1", *window)
    contributing = len(values) - values.count(MISSING)
    expected = (Decimal(TYPED_DISTINCT), contributing, values.count(MISSING))
    assert (pending.quantity, pending.event_count, pending.skipped_count) == expected
    assert (rolled.quantity, rolled.event_count, rolled.skipped_count) == expected
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM meters_dailyusage WHERE meter_id = %s"
            " AND (distinct_bits IS NOT NULL OR distinct_positions IS NOT NULL)",
            [meter.pk],
        )
        assert cursor.fetchone()[0] >= 2  # the answer really came from daily buckets


@pytest.mark.django_db(transaction=True)
def test_min_is_the_smallest_number_exactly_and_skips_non_numbers():
    meter = make("min", "latency")
    values = [Decimal("0.30"), "0.01", True, MISSING, Decimal("0.1"), 7, Decimal("-0.000001")]
    send("cus_1", values, key="latency", prefix="m", start=NOW - timedelta(hours=7), step=HOUR)
    rollups.run_rollups()
    usage = meter_usage(meter, "cus_1", NOW - timedelta(days=1), NOW)
    assert (usage.quantity, usage.event_count, usage.skipped_count) == (
        Decimal("-0.000001"),
        4,
        3,
    )
    # Mid-hour edges (raw) around whole hours (buckets): 0.1 and 7 only.
    later = meter_usage(
        meter, "cus_1", NOW - timedelta(hours=4, minutes=30), NOW - timedelta(hours=1, minutes=30)
    )
    assert (later.quantity, later.event_count, later.skipped_count) == (Decimal("0.1"), 2, 1)
    assert meter_usage(meter, "cus_2", NOW - timedelta(days=1), NOW).quantity == 0


HOUR = timedelta(hours=1)
HALF_HOUR = timedelta(minutes=30)


def _dictionary(meter) -> dict[int, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT position, value FROM meters_distinctvalue WHERE meter_id = %s", [meter.pk]
        )
        return dict(cursor.fetchall())


def _buckets(meter) -> dict[str, list[tuple]]:
    """Every bucket with its set of values as text, decoded from its bit string or positions
    through the meter's dictionary (positions differ with the order values first came)."""
    dictionary = _dictionary(meter)
    assert sorted(dictionary) == list(range(1, len(dictionary) + 1))  # dense, no gaps
    with connection.cursor() as cursor:
        result = {}
        for table, column in (("meters_hourlyusage", "hour"), ("meters_dailyusage", "day")):
            cursor.execute(
                f"SELECT customer_id, {column}, event_count, skipped_count, distinct_bits::text,"
                f" distinct_positions FROM {table} WHERE meter_id = %s"
                f" ORDER BY customer_id, {column}",
                [meter.pk],
            )
            rows = []
            for customer, moment, events, skipped, bits, positions in cursor.fetchall():
                assert bits is None or positions is None  # one form
                if positions is not None:
                    assert positions == sorted(set(positions))
                else:
                    positions = [i + 1 for i, bit in enumerate(bits or "") if bit == "1"]
                values = sorted(dictionary[p] for p in positions)
                rows.append((customer, moment, events, skipped, values))
            result[table] = rows
        return result


def _batches(seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    users = [*range(8), *(f"u{i}" for i in range(8)), True, Decimal("2.50")]
    return [
        [
            {
                "event_id": f"b{b}-{i}",
                "customer_id": rng.choice(["cus_a", "cus_b"]),
                "event_name": "app.opened",
                "timestamp": (NOW - timedelta(seconds=rng.randrange(2 * 86400))).isoformat(),
                "metadata": {"user_id": rng.choice(users)} if rng.random() < 0.9 else {},
            }
            for i in range(40)
        ]
        for b in range(30)
    ]


def _ingest(batches):
    for batch in batches:
        ingest(batch)


def _reset():
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE events_event, events_eventkey, events_ingestbatch, meters_hourlyusage,"
            " meters_dailyusage, meters_meter CASCADE"
        )


@pytest.mark.django_db(transaction=True)
def test_buckets_are_the_same_sets_whatever_order_and_workers_applied_the_batches():
    batches = _batches(seed=11)

    # One worker, batches in ingestion order, one per transaction.
    meter = make("unique_count", "user_id")
    _ingest(batches)
    while rollups.roll_up_pending(max_batches=1):
        pass
    in_order = _buckets(meter)

    # The same events ingested in reverse order, applied by four workers at once.
    _reset()
    meter = make("unique_count", "user_id")
    _ingest(list(reversed(batches)))

    roll_up_concurrently()
    concurrent = _buckets(meter)

    # And rebuilt from scratch over history, as after an edit (there and back).
    services.update_meter(meter, aggregation={"type": "count"}, now=NOW)
    meter = services.update_meter(
        meter, aggregation={"type": "unique_count", "key": "user_id"}, now=NOW
    )
    assert not meter.rollups_ready
    assert rollups.backfill_meter(meter.pk)
    rebuilt = _buckets(meter)

    assert in_order == concurrent == rebuilt
    # And the numbers: every customer's distinct users, from buckets and from the events.
    events = [e for batch in batches for e in batch]
    window = (NOW - timedelta(days=3), NOW + timedelta(minutes=1))
    per_customer = usage_by_customer(meter, *window)
    assert sorted(per_customer) == ["cus_a", "cus_b"]
    for customer, got in per_customer.items():
        typed = {
            typed_value(e["metadata"]["user_id"])
            for e in events
            if e["customer_id"] == customer and "user_id" in e["metadata"]
        }
        assert got.quantity == len(typed)


def _advisory_lock_awaited() -> bool:
    """Whether a session of this database waits for an advisory lock (the dictionary's)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return cursor.fetchone()[0] > 0


class _RolledBack(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_two_rollup_transactions_adding_the_same_new_values_give_each_one_position_no_gaps():
    meter = make("unique_count", "user_id")
    start = NOW - timedelta(hours=3)
    # Two batches sharing new values (b, c, the number 1), each with values of its own.
    send(
        "cus_1",
        ["a", "b", "c", 1, Decimal("1.0")],
        key="user_id",
        prefix="x",
        start=start,
        step=HALF_HOUR,
    )
    send("cus_2", ["c", "b", "d", "1", 1], key="user_id", prefix="y", start=start, step=HALF_HOUR)
    first_open, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first():
        try:
            with transaction.atomic():  # held open: its positions are not committed yet
                assert rollups.roll_up_pending(max_batches=1) == 5
                first_open.set()
                assert release.wait(20)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            first_open.set()
        finally:
            connection.close()

    def second():
        try:
            assert first_open.wait(20)
            assert rollups.roll_up_pending(max_batches=1) == 5  # the other batch (SKIP LOCKED)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    # The second saw new values (the first's are uncommitted) and waits for the dictionary lock.
    for _ in range(200):
        if _advisory_lock_awaited() or errors:
            break
        time.sleep(0.05)
    waited = _advisory_lock_awaited()
    release.set()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert waited
    dictionary = _dictionary(meter)
    assert sorted(dictionary) == [1, 2, 3, 4, 5, 6]
    assert sorted(dictionary.values()) == ["n:1", "s:1", "s:a", "s:b", "s:c", "s:d"]

    # A rollup that rolls back leaves no gap: its values get the next positions when applied.
    send("cus_1", ["e", "a"], key="user_id", prefix="z", start=start, step=HALF_HOUR)
    with pytest.raises(_RolledBack), transaction.atomic():
        assert rollups.roll_up_pending(max_batches=1) == 2
        assert len(_dictionary(meter)) == 7
        raise _RolledBack
    send("cus_2", ["f"], key="user_id", prefix="w", start=start, step=HALF_HOUR)
    rollups.roll_up_all_pending()
    dictionary = _dictionary(meter)
    assert sorted(dictionary) == list(range(1, 9))
    assert {dictionary[7], dictionary[8]} == {"s:e", "s:f"}
    window = (NOW - timedelta(days=1), NOW)
    assert meter_usage(meter, "cus_1", *window).quantity == 5  # a b c e, 1 (= 1.0)
    assert meter_usage(meter, "cus_2", *window).quantity == 6  # c b d f, 1 and "1"


@pytest.mark.django_db(transaction=True)
def test_a_query_whose_dictionary_size_is_stale_runs_again_and_stays_exact(monkeypatch):
    """A rollup committing between a query's read of the dictionary's size and its statement
    leaves bit strings longer than the size: the query sees it and runs again."""
    meter = make("unique_count", "user_id")
    users = [f"u{i}" for i in range(300)]
    start = NOW - timedelta(days=2)
    send("cus_1", users * 2, key="user_id", prefix="s", start=start, step=timedelta(minutes=1))
    rollups.run_rollups()
    assert _bucket_forms_present(meter)
    monkeypatch.setattr(usage, "DICTIONARY_SIZE_STEP", 1)
    real_size = usage.dictionary_size
    sizes: list[int] = []

    def stale_then_real(meter):
        sizes.append(real_size(meter) if sizes else 1)  # the first read predates the rollup
        return sizes[-1]

    monkeypatch.setattr(usage, "dictionary_size", stale_then_real)
    got = meter_usage(meter, "cus_1", start - HOUR, NOW)
    assert (got.quantity, got.event_count) == (300, 600)
    assert sizes[0] == 1 and sizes[-1] == 300 and len(sizes) >= 2


def _bucket_forms_present(meter) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(distinct_bits) FROM meters_dailyusage WHERE meter_id = %s", [meter.pk]
        )
        return cursor.fetchone()[0] > 0
