"""Pre-aggregates coarser than the daily buckets: one meter's daily totals across customers, and
each customer's weekly buckets.

`write_preaggregates` is the only writer of the totals. It runs in the transaction that changed
the daily buckets it derives from (the incremental rollup and each backfill chunk), so the totals
commit with them or not at all: exactly once under retries and any number of workers. A total is
recomputed from the day's daily buckets, not incremented, so it never depends on which worker
wrote what first. Queries read them in `meters.usage` (series over all customers).

Weekly buckets are incremented by the rollup, in the statement that increments the daily ones
(`meters.rollups`), and rewritten from the daily buckets by `rewrite_weekly_buckets` wherever
daily buckets are rebuilt or deleted: a week always equals the merge of its days.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.db import connection

from meters.models import Meter, MeterDailyTotal, WeeklyUsage
from meters.usage import BUCKET_COLUMNS, bucket_rows_sql, merged_aggregate_columns, week_start

DAILY_TOTALS_TABLE = MeterDailyTotal._meta.db_table
WEEKLY_TABLE = WeeklyUsage._meta.db_table
# pg_advisory_xact_lock(key, meter): apart from the dictionary's (15) and the backfill's locks.
_TOTALS_LOCK = 16


def _day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _periods(
    meter: Meter,
    first: datetime | None,
    last: datetime | None,
    start_of: Callable[[datetime], datetime],
    length: timedelta,
) -> tuple[str, list[str | datetime]]:
    """The condition, with `{column}` left to fill in, and its parameters, for the meter's
    periods (`start_of` a moment, `length` long) from the one holding `first` to the one holding
    `last`, both included (None: unbounded)."""
    bounds: list[str] = ["meter_id = %s"]
    params: list[str | datetime] = [meter.id]
    if first is not None:
        bounds.append("{column} >= %s")
        params.append(start_of(first))
    if last is not None:
        bounds.append("{column} < %s")
        params.append(start_of(last) + length)
    return " AND ".join(bounds), params


def write_preaggregates(meter: Meter, first: datetime | None, last: datetime | None) -> None:
    """Rewrite the meter's daily totals of the days from the one holding `first` to the one
    holding `last` (both included; None: unbounded) from its daily buckets as this transaction
    sees them. Call after writing those buckets, in the same transaction.

    The per-meter lock is held to commit and the totals are computed in a statement that starts
    after it is granted: under READ COMMITTED that statement sees every bucket committed by the
    transaction that held the lock before, so the last writer of a day always includes the work
    of all earlier ones. Workers already serialize on the current hour's bucket rows; meters
    are taken in id order everywhere, so the lock adds no deadlock.
    """
    if not meter.keeps_daily_totals:
        return
    condition, params = _periods(meter, first, last, _day, timedelta(days=1))
    where = condition.format(column="day")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_xact_lock({_TOTALS_LOCK}, hashtext(%s))", [meter.id])
        cursor.execute(f"DELETE FROM {DAILY_TOTALS_TABLE} WHERE {where}", params)
        days = f"(SELECT * FROM meters_dailyusage WHERE {where})"
        cursor.execute(
            f"""
            INSERT INTO {DAILY_TOTALS_TABLE} (meter_id, day, {BUCKET_COLUMNS})
            SELECT %s, day, {merged_aggregate_columns(meter)}
            FROM {bucket_rows_sql(meter, days)}
            GROUP BY day
            ORDER BY day
            """,
            [meter.id, *params],
        )


def rewrite_weekly_buckets(meter: Meter, first: datetime | None, last: datetime | None) -> None:
    """Rewrite the meter's weekly buckets of the weeks from the one holding `first` to the one
    holding `last` (None: unbounded) from its daily buckets as this transaction sees them.

    For rebuilds, which hold the meter row FOR UPDATE: the incremental rollup, which holds it
    FOR SHARE to add its deltas to the weekly buckets, cannot write between the two statements.
    Days of those weeks outside what the caller rebuilt are read as they are stored, so a week
    equals the merge of its days whichever of them are rebuilt later.
    """
    if not meter.keeps_weekly_buckets:
        return
    where, params = _periods(meter, first, last, week_start, timedelta(days=7))
    days = f"(SELECT * FROM meters_dailyusage WHERE {where.format(column='day')})"
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {WEEKLY_TABLE} WHERE {where.format(column='week')}", params)
        cursor.execute(
            f"""
            INSERT INTO {WEEKLY_TABLE} (meter_id, customer_id, week, {BUCKET_COLUMNS})
            SELECT %s, customer_id, date_trunc('week', day, 'UTC') AS week,
                   {merged_aggregate_columns(meter)}
            FROM {bucket_rows_sql(meter, days)}
            GROUP BY customer_id, date_trunc('week', day, 'UTC')
            ORDER BY customer_id, week
            """,
            [meter.id, *params],
        )
