"""Pre-aggregates (meters.preaggregates): series over all customers, read from the daily totals,
and per-customer tables, read from weekly buckets, equal the aggregation over raw events for
random unaligned windows, for every aggregation, after two workers rolled up at once, after late
events, and after a meter edit and its backfill; and every stored total and weekly bucket equals
the merge of its daily buckets (nothing counted twice, nothing missing)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from meters import rollups, services
from meters.models import Meter, MeterDailyTotal, WeeklyUsage
from meters.usage import meter_usage, split_window, usage_by_customer, usage_series
from products.billing import ingest_events as ingest
from tests.meters.oracle import aggregate
from tests.meters.test_rollup_invariant import _body, _reset, _stored

NOW = datetime(2026, 3, 10, 12, 30, 17, 123456, tzinfo=UTC)
HISTORY = timedelta(days=33)  # inside the late-event window, across a month's end
CUSTOMERS = ["cus_a", "cus_b", "cus_c", "cus_d"]
KINDS = ("count", "sum", "max", "min", "last", "unique_count")
EDITED_FILTER = {
    "conjunction": "and",
    "clauses": [{"key": "quality", "operator": "not_equals", "value": "hd"}],
}


def _events(rng: random.Random, prefix: str, count: int, *, ties: bool = False) -> list[dict]:
    events = []
    for i in range(count):
        moment = NOW - timedelta(microseconds=rng.randrange(int(HISTORY.total_seconds() * 1e6)))
        if ties and i % 5 == 0 and events:
            moment = events[-1]["timestamp"]  # same timestamp: last is by ingestion order
        metadata: dict = {"quality": rng.choice(["hd", "sd"])}
        if rng.random() < 0.85:
            metadata["n"] = rng.choice(
                [rng.randrange(-20, 100), Decimal("0.1"), Decimal("2.75"), "7", True]
            )
        events.append(
            {
                "event_id": f"{prefix}-{i}",
                "customer_id": rng.choice(CUSTOMERS),
                "event_name": "api.call",
                "timestamp": moment,
                "metadata": metadata,
            }
        )
    return events


def _roll_up_with_two_workers() -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while rollups.roll_up_pending(max_batches=1):
                pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    rollups.run_rollups()


def _expected(kind, events, customer, start, end, edited):
    def predicate(metadata):
        return metadata.get("quality") != "hd" if edited else True

    return aggregate(
        events,
        kind=kind,
        key=None if kind == "count" else "n",
        event_name="api.call",
        predicate=predicate,
        customer_id=customer,
        start=start,
        end=end,
    )


def _windows(rng: random.Random) -> list[tuple[datetime, datetime]]:
    windows = []
    for _ in range(6):
        start = NOW - HISTORY + timedelta(seconds=rng.randrange(int(HISTORY.total_seconds())))
        length = timedelta(seconds=rng.randrange(3600, int(HISTORY.total_seconds())))
        windows.append((start, min(start + length, NOW + timedelta(minutes=1))))
    return windows


def _check(meters: dict[str, Meter], events, windows, edited: set[str]) -> None:
    for kind, meter in meters.items():
        meter = Meter.objects.get(pk=meter.pk)
        assert meter.rollups_ready
        for start, end in windows:
            for granularity in ("day", "week", "month"):
                series = dict(usage_series(meter, start, end, granularity))
                for period, got in series.items():
                    step_end = {
                        "day": period + timedelta(days=1),
                        "week": period + timedelta(days=7),
                        "month": (period + timedelta(days=32)).replace(day=1),
                    }[granularity]
                    expected = _expected(
                        kind, events, None, max(period, start), min(step_end, end), kind in edited
                    )
                    assert (got.quantity, got.event_count, got.skipped_count) == expected, (
                        kind,
                        granularity,
                        period,
                        start,
                        end,
                    )
                # No period is missing: the periods' events add up to the window's.
                whole = _expected(kind, events, None, start, end, kind in edited)
                assert sum(u.event_count + u.skipped_count for u in series.values()) == (
                    whole[1] + whole[2]
                )
            table = usage_by_customer(meter, start, end)
            for customer in CUSTOMERS:
                expected = _expected(kind, events, customer, start, end, kind in edited)
                got = table.get(customer)
                if expected[1] or expected[2]:
                    assert (got.quantity, got.event_count, got.skipped_count) == expected
                else:
                    assert got is None
                one = meter_usage(meter, customer, start, end)
                assert (one.quantity, one.event_count, one.skipped_count) == expected
                weeks = dict(usage_series(meter, start, end, "week", customer_id=customer))
                for period, got in weeks.items():
                    expected = _expected(
                        kind,
                        events,
                        customer,
                        max(period, start),
                        min(period + timedelta(days=7), end),
                        kind in edited,
                    )
                    assert (got.quantity, got.event_count, got.skipped_count) == expected


def _assert_totals_are_merges_of_daily_buckets(meters: dict[str, Meter]) -> None:
    with connection.cursor() as cursor:
        for kind, meter in meters.items():
            cursor.execute(
                """
                SELECT day, sum(event_count), sum(skipped_count), sum(value_sum), max(value_max),
                       min(value_min), max(last_timestamp)
                FROM meters_dailyusage WHERE meter_id = %s GROUP BY day ORDER BY day
                """,
                [meter.pk],
            )
            merged = cursor.fetchall()
            cursor.execute(
                """
                SELECT day, event_count, skipped_count, value_sum, value_max, value_min,
                       last_timestamp
                FROM meters_meterdailytotal WHERE meter_id = %s ORDER BY day
                """,
                [meter.pk],
            )
            totals = cursor.fetchall()
            if kind == "unique_count":
                assert totals == []  # not kept: its series read the daily buckets
            else:
                assert merged and totals == merged, kind


def assert_weekly_buckets_are_merges_of_daily_buckets(meters: dict[str, Meter]) -> None:
    """Every weekly bucket is the merge of its week's daily buckets, and every week with daily
    buckets has one (unique_count meters keep none)."""
    with connection.cursor() as cursor:
        for kind, meter in meters.items():
            cursor.execute(
                """
                SELECT customer_id, date_trunc('week', day, 'UTC') AS week, sum(event_count),
                       sum(skipped_count), sum(value_sum), max(value_max), min(value_min),
                       max(last_timestamp),
                       (array_agg(last_value ORDER BY last_timestamp DESC NULLS LAST,
                                  last_event_pk DESC))[1]
                FROM meters_dailyusage WHERE meter_id = %s
                GROUP BY customer_id, week ORDER BY customer_id, week
                """,
                [meter.pk],
            )
            merged = cursor.fetchall()
            cursor.execute(
                """
                SELECT customer_id, week, event_count, skipped_count, value_sum, value_max,
                       value_min, last_timestamp, last_value
                FROM meters_weeklyusage WHERE meter_id = %s ORDER BY customer_id, week
                """,
                [meter.pk],
            )
            weekly = cursor.fetchall()
            if kind == "unique_count":
                assert weekly == []  # not kept: its per-customer queries read the daily buckets
            else:
                assert merged and weekly == merged, kind


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("seed", [1, 2])
def test_series_from_daily_totals_equal_raw_events_for_every_aggregation(seed):
    _reset()
    rng = random.Random(seed)
    meters = {
        kind: services.create_meter(
            name=kind,
            event_name="api.call",
            measurement_unit="units",
            aggregation={"type": kind, "key": None if kind == "count" else "n"},
            now=NOW - HISTORY * 2,
        )
        for kind in KINDS
    }
    rollups.run_rollups()

    first = _events(rng, "a", 400, ties=True)
    batches = [first[i : i + 40] for i in range(0, len(first), 40)]
    for batch in batches:
        ingest(_body(batch), now=NOW)
    _roll_up_with_two_workers()
    events = _stored(batches)
    windows = _windows(rng)
    _check(meters, events, windows, set())
    _assert_totals_are_merges_of_daily_buckets(meters)
    assert_weekly_buckets_are_merges_of_daily_buckets(meters)

    # Late events land in days already rolled up (and repeated ids count once).
    late = _events(rng, "c", 120)
    late_batches = [late[:60], late[60:] + first[:5]]
    for batch in late_batches:
        ingest(_body(batch), now=NOW)
    _roll_up_with_two_workers()
    events = _stored(batches + late_batches)
    _check(meters, events, windows, set())
    _assert_totals_are_merges_of_daily_buckets(meters)
    assert_weekly_buckets_are_merges_of_daily_buckets(meters)

    # An edit rebuilds the meter's buckets and totals over history, while new batches wait.
    edited = {"sum", "last"}
    for kind in edited:
        services.update_meter(meters[kind], filter=EDITED_FILTER, now=NOW)
    more = [_events(rng, "d", 50)]
    ingest(_body(more[0]), now=NOW)
    for kind in sorted(edited):
        steps = 0
        while not rollups.backfill_step(meters[kind].pk, now=NOW):
            # Between chunks, events arrive and are rolled up, into days (and weeks) rebuilt
            # already, being rebuilt, or not rebuilt yet.
            steps += 1
            batch = _events(rng, f"e-{kind}-{steps}", 6)
            ingest(_body(batch), now=NOW)
            more.append(batch)
            assert rollups.roll_up_pending()
        assert steps > 5
    rollups.run_rollups()
    events = _stored(batches + late_batches + more)
    _check(meters, events, windows, edited)
    _assert_totals_are_merges_of_daily_buckets(meters)
    assert_weekly_buckets_are_merges_of_daily_buckets(meters)
    assert MeterDailyTotal.objects.filter(meter_id=meters["sum"].pk).count() > 20
    assert WeeklyUsage.objects.filter(meter_id=meters["sum"].pk).count() >= 4 * len(CUSTOMERS)


@pytest.mark.django_db(transaction=True)
def test_a_series_over_all_customers_reads_daily_totals_not_daily_buckets():
    from django.test.utils import CaptureQueriesContext

    _reset()
    meter = services.create_meter(
        name="tokens",
        event_name="api.call",
        measurement_unit="units",
        aggregation={"type": "last", "key": "n"},
        now=NOW - HISTORY,
    )
    rollups.run_rollups()
    ingest(_body(_events(random.Random(5), "a", 100)), now=NOW)
    rollups.run_rollups()
    meter = Meter.objects.get(pk=meter.pk)
    start, end = NOW - timedelta(days=20, minutes=17), NOW - timedelta(days=1)
    with CaptureQueriesContext(connection) as series_queries:
        usage_series(meter, start, end, "day")
    with CaptureQueriesContext(connection) as table_queries:
        usage_by_customer(meter, start, end)
    series_sql = " ".join(q["sql"] for q in series_queries.captured_queries)
    table_sql = " ".join(q["sql"] for q in table_queries.captured_queries)
    assert "meters_meterdailytotal" in series_sql and "meters_dailyusage" not in series_sql
    assert "meters_weeklyusage" not in series_sql
    # Per customer, whole weeks come from weekly buckets and the days around them from daily ones.
    assert "meters_weeklyusage" in table_sql and "meters_dailyusage" in table_sql
    assert "meters_meterdailytotal" not in table_sql
    assert sum(u.event_count for _, u in usage_series(meter, start, end, "day")) == sum(
        u.event_count for u in usage_by_customer(meter, start, end).values()
    )


def test_a_window_is_cut_into_weeks_days_hours_and_raw_edges_that_tile_it():
    rng = random.Random(3)
    for _ in range(2000):
        start = NOW - timedelta(
            seconds=rng.randrange(90 * 86400), microseconds=rng.randrange(10**6)
        )
        end = start + timedelta(seconds=rng.randrange(1, 60 * 86400))
        parts = split_window(start, end, use_weekly=True)
        pieces = sorted(parts.raw + parts.hourly + parts.daily + parts.weekly)
        assert pieces[0][0] == start and pieces[-1][1] == end
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))
        for first, last in parts.weekly:
            assert first.weekday() == 0 and first.time() == datetime.min.time()
            assert (last - first).days % 7 == 0 and last.weekday() == 0
        # Days outside whole weeks: under a week on each side, or under two with none.
        longest = timedelta(days=7 if parts.weekly else 14)
        for first, last in parts.daily:
            assert first.time() == last.time() == datetime.min.time() and last - first < longest
        if end - start >= timedelta(days=15):  # always holds a whole week
            assert parts.weekly
