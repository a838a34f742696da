"""Pre-aggregates coarser than the per-customer buckets: one meter's daily totals across customers.

`write_preaggregates` is the only writer. It runs in the transaction that changed the daily
buckets it derives from (the incremental rollup and each backfill chunk), so the totals commit
with them or not at all: exactly once under retries and any number of workers. A total is
recomputed from the day's daily buckets, not incremented, so it never depends on which worker
wrote what first. Queries read them in `meters.usage` (series over all customers).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection

from meters.models import Meter, MeterDailyTotal
from meters.usage import BUCKET_COLUMNS, bucket_rows_sql, merged_aggregate_columns

DAILY_TOTALS_TABLE = MeterDailyTotal._meta.db_table
# pg_advisory_xact_lock(key, meter): apart from the dictionary's (15) and the backfill's locks.
_TOTALS_LOCK = 16


def _day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


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
    bounds: list[str] = ["meter_id = %s"]
    params: list[str | datetime] = [meter.id]
    if first is not None:
        bounds.append("day >= %s")
        params.append(_day(first))
    if last is not None:
        bounds.append("day < %s")
        params.append(_day(last) + timedelta(days=1))
    where = " AND ".join(bounds)
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
