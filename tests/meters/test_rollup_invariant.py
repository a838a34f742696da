"""The rollup invariant: usage from buckets equals a direct aggregation over the raw events,
for every meter, customer and unaligned window, under concurrent and duplicate batches, late
events, partially rolled-up state and meter edits."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters import rollups, services, usage
from meters.models import Meter
from meters.usage import meter_usage, usage_by_customer, usage_series
from products.billing import ingest_events as ingest
from tests.factories import roll_up_concurrently
from tests.meters.oracle import RawEvent, aggregate, is_number

NOW = datetime(2026, 3, 10, 12, 30, 17, 123456, tzinfo=UTC)
CUSTOMERS = ["cus_a", "cus_b", "cus_c"]
HISTORY = timedelta(days=4)

# Each meter: (event_name, kind, key, filter JSON, the same filter as a plain predicate).
METERS = {
    "calls": ("api.call", "count", None, None, lambda m: True),
    "hd_tokens": (
        "api.call",
        "sum",
        "tokens",
        {
            "conjunction": "and",
            "clauses": [{"key": "quality", "operator": "equals", "value": "hd"}],
        },
        lambda m: m.get("quality") == "hd",
    ),
    "peak": (
        "api.call",
        "max",
        "tokens",
        {
            "conjunction": "or",
            "clauses": [
                {"key": "tokens", "operator": "greater_than", "value": 5},
                {"key": "quality", "operator": "equals", "value": "sd"},
            ],
        },
        lambda m: (is_number(m.get("tokens")) and m["tokens"] > 5) or m.get("quality") == "sd",
    ),
    "gauge": ("gauge.read", "last", "level", None, lambda m: True),
    "floor": ("api.call", "min", "tokens", None, lambda m: True),
    "users": (
        "api.call",
        "unique_count",
        "user",
        {
            "conjunction": "or",
            "clauses": [
                {"key": "quality", "operator": "equals", "value": "hd"},
                {"key": "quality", "operator": "equals", "value": "sd"},
            ],
        },
        lambda m: m.get("quality") in ("hd", "sd"),
    ),
    "gauge_users": ("gauge.read", "unique_count", "level", None, lambda m: True),
}
# The meters whose filter the test edits (then rebuilt over history), and what they count after.
EDITED = ("hd_tokens", "users")

token_values = st.one_of(
    st.integers(min_value=-5, max_value=50),
    st.sampled_from([Decimal("0.1"), Decimal("2.75"), Decimal("-1.5"), Decimal("1e-3")]),
    st.sampled_from(["150", "abc", True]),  # skipped: not numbers
)
# Distinct values typed as filters compare: 1, 1.0 and 1.00 are one value, "1" another, True
# another; 2.5 and 2.50 one. Few of them, so they repeat across hours, days and customers.
user_values = st.sampled_from(
    [
        1,
        Decimal("1.0"),
        Decimal("1.00"),
        "1",
        True,
        False,
        "true",
        2,
        Decimal("2.5"),
        Decimal("2.50"),
        "u-7",
        "",
        -3,
        Decimal("-0.0"),
        0,
    ]
)


@st.composite
def raw_events(draw, prefix: str):
    count = draw(st.integers(min_value=1, max_value=40))
    events = []
    for i in range(count):
        metadata = {}
        if draw(st.booleans()):
            metadata["tokens"] = draw(token_values)
        if draw(st.integers(0, 3)):
            metadata["quality"] = draw(st.sampled_from(["hd", "sd", "HD"]))
        if draw(st.booleans()):
            metadata["level"] = draw(token_values)
        if draw(st.integers(0, 3)):
            metadata["user"] = draw(user_values)
        offset = draw(st.integers(min_value=0, max_value=int(HISTORY.total_seconds() * 1e6)))
        events.append(
            {
                "event_id": f"{prefix}-{i}",
                "customer_id": draw(st.sampled_from(CUSTOMERS)),
                "event_name": draw(st.sampled_from(["api.call", "gauge.read"])),
                "timestamp": NOW - timedelta(microseconds=offset),
                "metadata": metadata,
            }
        )
    return events


@st.composite
def windows(draw):
    start_offset = draw(st.integers(0, int(HISTORY.total_seconds())))
    length = draw(st.integers(1, int(HISTORY.total_seconds())))
    start = NOW - timedelta(seconds=start_offset, microseconds=draw(st.integers(0, 999999)))
    if draw(st.booleans()):
        start = start.replace(minute=0, second=0, microsecond=0)  # sometimes aligned
    return start, start + timedelta(seconds=length)


def _body(events: list[dict]) -> bytes:
    def encode(value):
        if isinstance(value, Decimal):
            return float(value) if value == Decimal(str(float(value))) else str(value)
        raise TypeError

    wire = [
        {**e, "timestamp": e["timestamp"].isoformat(), "metadata": e["metadata"]} for e in events
    ]
    text = json.dumps({"events": wire}, default=encode)
    return text.encode()


def _reset() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE events_event, events_eventkey, events_ingestbatch, meters_hourlyusage,"
            " meters_dailyusage, meters_meter CASCADE"
        )


def _ingest_concurrently(batches: list[list[dict]]) -> None:
    errors = []

    def run(batch):
        try:
            ingest(_body(batch), now=NOW)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def _stored(batches: list[list[dict]]) -> list[RawEvent]:
    """What the server must have kept: the first copy of each event_id (copies are identical)."""
    seen: dict[str, RawEvent] = {}
    for batch in batches:
        for e in batch:
            if e["event_id"] not in seen:
                metadata = {
                    k: (v if not isinstance(v, float) else Decimal(str(v)))
                    for k, v in e["metadata"].items()
                }
                seen[e["event_id"]] = RawEvent(
                    e["event_id"],
                    e["customer_id"],
                    e["event_name"],
                    e["timestamp"],
                    metadata,
                    len(seen),
                )
    return list(seen.values())


def _check(meters: dict[str, Meter], events: list[RawEvent], window_list) -> None:
    for label, meter in meters.items():
        event_name, kind, key, _, predicate = METERS[label]
        if meter.filter != METERS[label][3]:
            predicate = EDITED_PREDICATE

        def expected_usage(
            customer, start, end, kind=kind, key=key, event_name=event_name, predicate=predicate
        ):
            return aggregate(
                events,
                kind=kind,
                key=key,
                event_name=event_name,
                predicate=predicate,
                customer_id=customer,
                start=start,
                end=end,
            )

        for start, end in window_list:
            per_customer = usage_by_customer(meter, start, end)
            for customer in CUSTOMERS:
                expected = expected_usage(customer, start, end)
                got = meter_usage(meter, customer, start, end)
                assert (got.quantity, got.event_count, got.skipped_count) == expected, (
                    label,
                    customer,
                    start,
                    end,
                )
                table = per_customer.get(customer)
                if expected[1] or expected[2]:
                    assert (table.quantity, table.event_count, table.skipped_count) == expected
                else:
                    assert table is None
        # Every period of a series is the aggregation over its part of the window (all
        # customers together): for unique_count, the values distinct within that period.
        start, end = window_list[0]
        for granularity, step in (("hour", timedelta(hours=1)), ("day", timedelta(days=1))):
            series = dict(usage_series(meter, start, end, granularity))
            period = start.replace(minute=0, second=0, microsecond=0)
            if granularity == "day":
                period = period.replace(hour=0)
            while period < end:
                expected = expected_usage(None, max(period, start), min(period + step, end))
                got = series.pop(period, None)
                if expected[1] or expected[2]:
                    assert got is not None, (label, granularity, period)
                    assert (got.quantity, got.event_count, got.skipped_count) == expected, (
                        label,
                        granularity,
                        period,
                    )
                else:
                    assert got is None, (label, granularity, period)
                period += step
            assert not series, (label, granularity, sorted(series))
        if kind in ("count", "sum"):
            series = usage_series(meter, start, end, "day")
            total = sum((usage.quantity for _, usage in series), Decimal(0))
            assert total == expected_usage(None, start, end)[0]


EDITED_FILTER = {
    "conjunction": "and",
    "clauses": [{"key": "quality", "operator": "not_equals", "value": "hd"}],
}


def EDITED_PREDICATE(m):  # noqa: N802 - a constant that happens to be a function
    return "quality" in m and m["quality"] != "hd"


@pytest.mark.django_db(transaction=True)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=raw_events("a"),
    second=raw_events("b"),
    late=raw_events("c"),
    window_list=st.lists(windows(), min_size=2, max_size=4),
    partial=st.integers(0, 3),
    seed=st.integers(0, 1000),
)
def test_usage_from_rollups_equals_raw_aggregation(first, second, late, window_list, partial, seed):
    _reset()
    meters = {
        label: services.create_meter(
            name=label,
            event_name=name,
            measurement_unit="units",
            aggregation={"type": kind, "key": key},
            filter=flt,
            now=NOW - HISTORY * 2,
        )
        for label, (name, kind, key, flt, _) in METERS.items()
    }
    rollups.run_rollups()  # no events yet: every meter becomes current

    rng = random.Random(seed)
    repeats = rng.sample(first, k=min(len(first), 5))
    batches = [first, second, repeats + second[:3]]  # overlapping and repeated ids
    _ingest_concurrently(batches)
    for _ in range(partial):
        rollups.roll_up_pending(max_batches=1)  # part rolled up, part still pending
    meters = {label: Meter.objects.get(pk=m.pk) for label, m in meters.items()}
    events = _stored(batches)
    _check(meters, events, window_list)  # pending events are counted too

    rollups.run_rollups()
    # Late events land in hours that are already rolled up.
    late_batches = [late, late[:2] + first[:2]]
    _ingest_concurrently(late_batches)
    rollups.run_rollups()
    events = _stored(batches + late_batches)
    _check(meters, events, window_list)

    # Editing a filter rebuilds the meter over history; before and after, usage is exact.
    for label in EDITED:
        meters[label] = services.update_meter(meters[label], filter=EDITED_FILTER, now=NOW)
        assert not meters[label].rollups_ready
    _check(meters, events, window_list)
    # The rebuild runs while new batches are still waiting for the incremental path.
    after_edit = [[{**e, "event_id": f"d-{e['event_id']}"} for e in second]]
    _ingest_concurrently(after_edit)
    events = _stored(batches + late_batches + after_edit)
    for label in EDITED:
        assert rollups.backfill_meter(meters[label].pk)
    meters = {label: Meter.objects.get(pk=m.pk) for label, m in meters.items()}
    assert all(meters[label].rollups_ready for label in EDITED)
    _check(meters, events, window_list)
    rollups.run_rollups()
    _check(meters, events, window_list)


@pytest.mark.django_db(transaction=True)
def test_rollups_from_several_workers_at_once_count_each_event_once():
    _reset()
    meter = services.create_meter(
        name="calls",
        event_name="api.call",
        measurement_unit="calls",
        aggregation={"type": "sum", "key": "n"},
        now=NOW - HISTORY,
    )
    rollups.run_rollups()
    rng = random.Random(3)
    batches = [
        [
            {
                "event_id": f"w{b}-{i}",
                "customer_id": rng.choice(CUSTOMERS),
                "event_name": "api.call",
                "timestamp": NOW - timedelta(seconds=rng.randrange(3 * 86400)),
                "metadata": {"n": rng.randrange(1, 100)},
            }
            for i in range(50)
        ]
        for b in range(40)
    ]
    for batch in batches:
        ingest(_body(batch), now=NOW)

    roll_up_concurrently()

    events = _stored(batches)
    start, end = NOW - timedelta(days=4), NOW + timedelta(minutes=1)
    for customer in CUSTOMERS:
        expected = sum(
            (Decimal(e.metadata["n"]) for e in events if e.customer_id == customer), Decimal(0)
        )
        assert meter_usage(meter, customer, start, end).quantity == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT sum(event_count) FROM meters_hourlyusage")
        assert cursor.fetchone()[0] == len(events)
        cursor.execute("SELECT count(*) FROM events_ingestbatch")
        assert cursor.fetchone()[0] == 0


# A vocabulary large next to what an hour holds: an hour of a few users is a sparse bucket,
# a busy hour or a day a dense one (meters.usage.DENSE_FACTOR), so windows merge both forms.
TYPED_USERS = [1, Decimal("1.0"), "1", True, "true", Decimal("2.50"), Decimal("2.5"), "", 0]
FIRST_USERS = TYPED_USERS + [f"u{i}" for i in range(250)] + list(range(2, 150))
LATE_USERS = [f"late{i}" for i in range(200)] + list(range(150, 260))  # new: the dictionary grows
BUSY_HOURS = [NOW - timedelta(hours=h, minutes=NOW.minute) for h in (5, 30, 53)]


def _visitor_batches(rng: random.Random, prefix: str, count: int, users: list) -> list[list]:
    batches = []
    for b in range(count):
        events = []
        for i in range(40):
            if rng.random() < 0.3:
                moment = rng.choice(BUSY_HOURS) + timedelta(seconds=rng.randrange(3600))
            else:
                moment = NOW - timedelta(
                    microseconds=rng.randrange(int(HISTORY.total_seconds() * 1e6))
                )
            events.append(
                {
                    "event_id": f"{prefix}{b}-{i}",
                    "customer_id": rng.choice(CUSTOMERS),
                    "event_name": "api.call",
                    "timestamp": moment,
                    "metadata": {"user": rng.choice(users)} if rng.random() < 0.9 else {},
                }
            )
        batches.append(events)
    return batches


def _check_visitors(meter: Meter, events: list[RawEvent], rng: random.Random) -> None:
    """Random unaligned windows, per customer, the table and a daily series, against raw."""

    def expected(customer, start, end):
        return aggregate(
            events,
            kind="unique_count",
            key="user",
            event_name="api.call",
            predicate=lambda m: True,
            customer_id=customer,
            start=start,
            end=end,
        )

    whole = (NOW - HISTORY - timedelta(hours=1), NOW + timedelta(minutes=1))
    spans = [whole]
    for _ in range(2):
        start = NOW - timedelta(seconds=rng.randrange(int(HISTORY.total_seconds())))
        spans.append((start, start + timedelta(seconds=rng.randrange(3600, 3 * 86400))))
    for start, end in spans:
        table = usage_by_customer(meter, start, end)
        for customer in CUSTOMERS:
            want = expected(customer, start, end)
            got = meter_usage(meter, customer, start, end)
            assert (got.quantity, got.event_count, got.skipped_count) == want, (customer, start)
            row = table.get(customer)
            if want[1] or want[2]:
                assert (row.quantity, row.event_count, row.skipped_count) == want
            else:
                assert row is None
        for period, got in usage_series(meter, start, end, "day"):
            want = expected(None, max(period, start), min(period + timedelta(days=1), end))
            assert (got.quantity, got.event_count, got.skipped_count) == want, period


def _bucket_forms(meter: Meter) -> dict[str, tuple[int, int]]:
    with connection.cursor() as cursor:
        forms = {}
        for table in ("meters_hourlyusage", "meters_dailyusage"):
            cursor.execute(
                f"SELECT count(distinct_bits), count(distinct_positions) FROM {table}"
                " WHERE meter_id = %s",
                [meter.pk],
            )
            forms[table] = cursor.fetchone()
        return forms


@pytest.mark.django_db(transaction=True)
def test_unique_count_over_dense_and_sparse_buckets_equals_raw_with_concurrent_workers(
    monkeypatch,
):
    _reset()
    # Queries size their bit strings to the dictionary exactly: any growth between reading its
    # size and the statement's snapshot makes them run again (the retry is exercised).
    monkeypatch.setattr(usage, "DICTIONARY_SIZE_STEP", 1)
    meter = services.create_meter(
        name="visitors",
        event_name="api.call",
        measurement_unit="users",
        aggregation={"type": "unique_count", "key": "user"},
        now=NOW - HISTORY * 2,
    )
    rollups.run_rollups()
    rng = random.Random(15)
    first = _visitor_batches(rng, "f", 12, FIRST_USERS)

    # Ingestion and a rollup worker at once.
    ingesting = threading.Event()
    ingesting.set()
    errors: list[BaseException] = []

    def ingest_all():
        try:
            for batch in first:
                ingest(_body(batch), now=NOW)
        finally:
            ingesting.clear()

    def roll_up():
        while rollups.roll_up_pending(max_batches=1) or ingesting.is_set():
            time.sleep(0.01)

    threads = [_thread(ingest_all, errors), _thread(roll_up, errors)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    events = _stored(first)
    _check_visitors(meter, events, rng)
    hourly, daily = _bucket_forms(meter).values()
    assert hourly[0] and hourly[1] and daily[0], (hourly, daily)  # dense and sparse present

    # Late events with new values, into hours already rolled up; two workers apply them while
    # this thread queries: every answer is exact (pending events are read raw), whatever the
    # workers have committed and however the dictionary has grown since the last query.
    late = _visitor_batches(rng, "l", 24, LATE_USERS + FIRST_USERS[:20])
    for batch in late:
        ingest(_body(batch), now=NOW)
    events = _stored(first + late)
    before = len(_positions(meter))

    def worker():
        while rollups.roll_up_pending(max_batches=1):
            time.sleep(0.25)  # leave the queries time to run between commits

    workers = [_thread(worker, errors) for _ in range(2)]
    for thread in workers:
        thread.start()
    checks = 0
    while any(thread.is_alive() for thread in workers) or not checks:
        _check_visitors(meter, events, rng)
        checks += 1
    for thread in workers:
        thread.join()
    assert not errors, errors
    _check_visitors(meter, events, rng)
    positions = _positions(meter)
    assert checks > 1
    assert len(positions) > before  # the dictionary grew
    assert positions == list(range(1, len(positions) + 1))  # one position each, no gaps
    hourly, daily = _bucket_forms(meter).values()
    assert hourly[0] and hourly[1] and daily[0], (hourly, daily)


def _thread(body, errors: list) -> threading.Thread:
    """A thread running `body` on its own connection, its exception kept in `errors`."""

    def run():
        try:
            body()
        except BaseException as exc:  # pragma: no cover - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    return threading.Thread(target=run)


def _positions(meter: Meter) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT position FROM meters_distinctvalue WHERE meter_id = %s ORDER BY position",
            [meter.pk],
        )
        return [row[0] for row in cursor.fetchall()]
