"""Usage of a meter: one customer over a window, every customer over a window, or a time series.

A window is split into whole UTC days (daily buckets), whole hours (hourly buckets) and the partial
hours at its edges (raw events), so usage is exact for windows that start anywhere. Events stored
but not yet rolled up are read raw in the same statement, so an answer never lags ingestion. A
meter whose buckets are being rebuilt after an edit is answered from raw events alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection

from events.queries import EVENTS_TABLE, PENDING_EVENT_IDS_SQL, refuse_archived_ranges
from meters.filters import filter_sql
from meters.models import Aggregation, Meter

GRANULARITIES = ("hour", "day", "week", "month")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Usage:
    """The billable quantity of one meter, with what it was made of."""

    quantity: Decimal
    event_count: int = 0
    skipped_count: int = 0

    @classmethod
    def zero(cls) -> Usage:
        return cls(Decimal(0))


@dataclass(frozen=True)
class Aggregate:
    """Bucket-shaped partial aggregates; combining them is what every usage query does."""

    event_count: int
    skipped_count: int
    value_sum: Decimal | None
    value_max: Decimal | None
    last_value: Decimal | None
    value_min: Decimal | None = None
    distinct_count: int = 0

    def usage(self, aggregation: str) -> Usage:
        quantity: Decimal | None = {
            Aggregation.COUNT: Decimal(self.event_count),
            Aggregation.SUM: self.value_sum,
            Aggregation.MAX: self.value_max,
            Aggregation.LAST: self.last_value,
            Aggregation.MIN: self.value_min,
            Aggregation.UNIQUE_COUNT: Decimal(self.distinct_count),
        }[Aggregation(aggregation)]
        return Usage(_normalize(quantity), self.event_count, self.skipped_count)


def _normalize(value: Decimal | None) -> Decimal:
    """Drop trailing zeros (2.500 -> 2.5) but keep integers plain (1E+1 -> 10)."""
    if value is None:
        return Decimal(0)
    value = value.normalize()
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value


# --- SQL pieces --------------------------------------------------------------------------------


def matching_events_sql(meter: Meter, alias: str = "e") -> tuple[str, list]:
    """WHERE clause for the events a meter matches (its event name and its filter)."""
    condition, params = filter_sql(meter.filter, column=f"{alias}.metadata")
    return f"{alias}.event_name = %s AND ({condition})", [meter.event_name, *params]


def event_value_sql(meter: Meter, alias: str = "e") -> tuple[str, str, list]:
    """(valid, value) expressions for one matching event: whether it contributes, and how much.

    Count meters count every matching event. unique_count meters need `key` to hold a scalar
    (string, number or boolean: all that flat metadata can hold); the value is then the typed
    one of `distinct_value_sql`, and `value` here is NULL. Other meters need `key` to hold a
    JSON number; anything else (missing, a string such as "150", a boolean) is skipped, never
    coerced.
    """
    if meter.aggregation_type == Aggregation.COUNT:
        return "TRUE", "1::numeric", []
    key = meter.aggregation_key
    if meter.aggregation_type == Aggregation.UNIQUE_COUNT:
        valid = (
            f"coalesce(jsonb_typeof({alias}.metadata -> %s) IN ('string', 'number', 'boolean'), "
            "FALSE)"
        )
        return valid, "NULL::numeric", [key]
    valid = f"coalesce(jsonb_typeof({alias}.metadata -> %s) = 'number', FALSE)"
    value = f"CASE WHEN {valid} THEN ({alias}.metadata ->> %s)::numeric END"
    return valid, value, [key, key, key]


def distinct_value_sql(meter: Meter, alias: str = "e") -> tuple[str, list]:
    """The event's value of `key` in a typed text encoding, for unique_count (else NULL).

    Typed as filters compare: `n:` + the number without trailing zeros (1 and 1.0 are `n:1`),
    `s:` + the string (`"1"` is `s:1`), `b:true` / `b:false`; NULL when the key is missing or
    holds anything else. Collated "C": a plain byte order, the same on every server.
    """
    if meter.aggregation_type != Aggregation.UNIQUE_COUNT:
        return "NULL::text", []
    key = meter.aggregation_key
    sql = (
        f"(CASE jsonb_typeof({alias}.metadata -> %s)"
        f" WHEN 'string' THEN 's:' || ({alias}.metadata ->> %s)"
        f" WHEN 'number' THEN 'n:' || trim_scale(({alias}.metadata ->> %s)::numeric)::text"
        f" WHEN 'boolean' THEN 'b:' || ({alias}.metadata ->> %s)"
        ' END) COLLATE "C"'
    )
    return sql, [key, key, key, key]


def event_row_sql(meter: Meter, alias: str = "e") -> tuple[str, list]:
    """The columns every aggregation reads off one matching event:
    pk, ts, valid, value, distinct_value."""
    valid_sql, value_sql, value_params = event_value_sql(meter, alias)
    distinct_sql, distinct_params = distinct_value_sql(meter, alias)
    sql = (
        f"{alias}.id AS pk, {alias}.timestamp AS ts, {valid_sql} AS valid, "
        f"{value_sql} AS value, {distinct_sql} AS distinct_value"
    )
    return sql, [*value_params, *distinct_params]


_NO_LAST = (
    "NULL::numeric AS last_value, NULL::timestamptz AS last_timestamp, "
    "NULL::bigint AS last_event_pk"
)
_NO_DISTINCT = "NULL::text[] AS distinct_values"
# The sorted set of the rows' distinct values, as a bucket stores it.
_DISTINCT_SET = (
    "array_agg(DISTINCT distinct_value ORDER BY distinct_value) "
    "FILTER (WHERE distinct_value IS NOT NULL) AS distinct_values"
)


def _last_columns(ts: str, pk: str, value: str, condition: str) -> str:
    """last_value, last_timestamp, last_event_pk of the row with the latest (ts, pk).

    `max` over numeric arrays compares element by element, so [epoch, pk, value] finds the latest
    row without sorting: an ordered `array_agg` sorted every group and made the planner sort all
    input rows. EXTRACT returns an exact numeric (PostgreSQL 14+) and the value is returned as
    stored, so nothing is rounded; rows failing `condition` are left out, as NULLS LAST did.
    """
    latest = (
        f"max(ARRAY[extract(epoch FROM {ts}), {pk}::numeric, {value}]) FILTER (WHERE {condition})"
    )
    return (
        f"({latest})[3] AS last_value, "
        f"max({ts}) FILTER (WHERE {condition}) AS last_timestamp, "
        f"(({latest})[2])::bigint AS last_event_pk"
    )


def raw_aggregate_columns(meter: Meter) -> str:
    """Aggregate columns over rows of `event_row_sql`, in bucket column order."""
    if meter.aggregation_type == Aggregation.LAST:
        last = _last_columns("ts", "pk", "value", "valid")
    else:
        last = _NO_LAST
    distinct = _DISTINCT_SET if meter.aggregation_type == Aggregation.UNIQUE_COUNT else _NO_DISTINCT
    return (
        "count(*) FILTER (WHERE valid) AS event_count, "
        "count(*) FILTER (WHERE NOT valid) AS skipped_count, "
        f"sum(value) AS value_sum, max(value) AS value_max, {last}, "
        f"min(value) AS value_min, {distinct}"
    )


def bucket_rows_sql(meter: Meter, source: str) -> str:
    """`source` (a table or subquery of bucket-shaped rows) as rows `merged_aggregate_columns`
    reads: for unique_count, one row per distinct value of each bucket (`distinct_value`,
    `first_of_bucket` on one row of each, so counts are summed once); else the rows as they are.
    """
    if meter.aggregation_type != Aggregation.UNIQUE_COUNT:
        return f"{source} rows"
    return f"""(
        SELECT rows.*, dv.distinct_value COLLATE "C" AS distinct_value,
               coalesce(dv.position, 1) = 1 AS first_of_bucket
        FROM {source} rows
        LEFT JOIN LATERAL unnest(rows.distinct_values) WITH ORDINALITY
            AS dv(distinct_value, position) ON TRUE
    ) rows"""


def merged_aggregate_columns(meter: Meter, *, distinct_count: bool = False) -> str:
    """Aggregate columns that combine the rows of `bucket_rows_sql` into one bucket; with
    `distinct_count`, the last column is the number of distinct values instead of their set."""
    if meter.aggregation_type == Aggregation.LAST:
        last = _last_columns(
            "last_timestamp", "last_event_pk", "last_value", "last_timestamp IS NOT NULL"
        )
    else:
        last = _NO_LAST
    if meter.aggregation_type != Aggregation.UNIQUE_COUNT:
        distinct = "0::bigint AS distinct_count" if distinct_count else _NO_DISTINCT
        return (
            "sum(event_count)::bigint AS event_count, "
            "sum(skipped_count)::bigint AS skipped_count, "
            f"sum(value_sum) AS value_sum, max(value_max) AS value_max, {last}, "
            f"min(value_min) AS value_min, {distinct}"
        )
    # One row per distinct value of a bucket: the bucket's counts only on its first row. Its
    # other columns are NULL for a unique_count meter, and max/min would not mind repeats.
    distinct = (
        "count(DISTINCT distinct_value) AS distinct_count" if distinct_count else _DISTINCT_SET
    )
    return (
        "sum(event_count) FILTER (WHERE first_of_bucket)::bigint AS event_count, "
        "sum(skipped_count) FILTER (WHERE first_of_bucket)::bigint AS skipped_count, "
        f"NULL::numeric AS value_sum, NULL::numeric AS value_max, {last}, "
        f"NULL::numeric AS value_min, {distinct}"
    )


BUCKET_COLUMNS = (
    "event_count, skipped_count, value_sum, value_max, last_value, last_timestamp, last_event_pk, "
    "value_min, distinct_values"
)


# --- windows -----------------------------------------------------------------------------------


def _ceil(moment: datetime, step: timedelta) -> datetime:
    floored = _floor(moment, step)
    return floored if floored == moment else floored + step


def _floor(moment: datetime, step: timedelta) -> datetime:
    moment = moment.astimezone(UTC)
    if step == DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class WindowParts:
    raw: list[tuple[datetime, datetime]]
    hourly: list[tuple[datetime, datetime]]
    daily: list[tuple[datetime, datetime]]


def split_window(start: datetime, end: datetime, *, use_daily: bool = True) -> WindowParts:
    """Cut [start, end) into raw edges, whole hours and whole days (all half-open, UTC)."""
    if start >= end:
        return WindowParts([], [], [])
    first_hour, last_hour = _ceil(start, HOUR), _floor(end, HOUR)
    if first_hour >= last_hour:
        return WindowParts([(start, end)], [], [])
    raw = [r for r in ((start, first_hour), (last_hour, end)) if r[0] < r[1]]
    first_day, last_day = _ceil(first_hour, DAY), _floor(last_hour, DAY)
    if not use_daily or first_day >= last_day:
        return WindowParts(raw, [(first_hour, last_hour)], [])
    hourly = [r for r in ((first_hour, first_day), (last_day, last_hour)) if r[0] < r[1]]
    return WindowParts(raw, hourly, [(first_day, last_day)])


def _ranges_sql(column: str, ranges: list[tuple[datetime, datetime]]) -> tuple[str, list]:
    if not ranges:
        return "FALSE", []
    sql = " OR ".join(f"({column} >= %s AND {column} < %s)" for _ in ranges)
    return f"({sql})", [moment for pair in ranges for moment in pair]


# --- the query ---------------------------------------------------------------------------------


def _usage_rows(
    meter: Meter,
    start: datetime,
    end: datetime,
    *,
    customer_ids: Iterable[str] | None,
    by_customer: bool,
    granularity: str | None,
) -> list[tuple]:
    """One statement (one snapshot) that combines buckets, pending events and raw edges.

    Returns rows of (customer_id or NULL, period start or NULL, *bucket columns).
    """
    if granularity is not None and granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}")
    if meter.rollups_ready:
        parts = split_window(start, end, use_daily=granularity != "hour")
    else:
        parts = WindowParts([(start, end)], [], [])

    # Rollups keep archived months' usage; only their raw events (the edges) are gone.
    refuse_archived_ranges(parts.raw, f"Usage of meter {meter.id} from {start} to {end}")
    customer_list = list(customer_ids) if customer_ids is not None else None

    def group_exprs(customer_col: str, time_col: str) -> str:
        customer = customer_col if by_customer else "NULL::text"
        period = (
            f"date_trunc('{granularity}', {time_col}, 'UTC')"
            if granularity
            else ("NULL::timestamptz")
        )
        return f"{customer} AS customer_id, {period} AS period"

    def customer_clause(column: str) -> tuple[str, list]:
        if customer_list is None:
            return "TRUE", []
        return f"{column} = ANY(%s)", [customer_list]

    match_sql, match_params = matching_events_sql(meter)
    row_sql, row_params = event_row_sql(meter)
    selects: list[str] = []
    params: list = []

    def raw_part(time_condition: str, time_params: list, extra: str = "TRUE") -> None:
        customers_sql, customers_params = customer_clause("e.customer_id")
        selects.append(
            f"""
            SELECT customer_id, period, {raw_aggregate_columns(meter)}
            FROM (
                SELECT {group_exprs("e.customer_id", "e.timestamp")}, {row_sql}
                FROM {EVENTS_TABLE} e
                WHERE {match_sql} AND {time_condition} AND {customers_sql} AND {extra}
            ) matched
            GROUP BY customer_id, period
            """
        )
        params.extend([*row_params, *match_params, *time_params, *customers_params])

    raw_sql, raw_params = _ranges_sql("e.timestamp", parts.raw)
    if parts.raw:
        raw_part(raw_sql, raw_params)
    covered = parts.hourly + parts.daily
    if covered:
        covered_sql, covered_params = _ranges_sql("e.timestamp", covered)
        raw_part(covered_sql, covered_params, extra=f"e.id IN ({PENDING_EVENT_IDS_SQL})")
    for table, column, ranges in (
        ("meters_hourlyusage", "hour", parts.hourly),
        ("meters_dailyusage", "day", parts.daily),
    ):
        if not ranges:
            continue
        range_sql, range_params = _ranges_sql(f"b.{column}", ranges)
        customers_sql, customers_params = customer_clause("b.customer_id")
        selects.append(
            f"""
            SELECT {group_exprs("b.customer_id", f"b.{column}")}, {BUCKET_COLUMNS}
            FROM {table} b
            WHERE b.meter_id = %s AND {range_sql} AND {customers_sql}
            """
        )
        params.extend([meter.id, *range_params, *customers_params])

    if not selects:
        return []
    union = " UNION ALL ".join(f"({s})" for s in selects)
    sql = f"""
        SELECT customer_id, period, {merged_aggregate_columns(meter, distinct_count=True)}
        FROM {bucket_rows_sql(meter, f"({union})")}
        GROUP BY customer_id, period
        ORDER BY customer_id, period
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _aggregate(row: tuple) -> Aggregate:
    event_count, skipped_count, value_sum, value_max, last_value = row[2:7]
    value_min, distinct_count = row[9:11]
    return Aggregate(
        int(event_count or 0),
        int(skipped_count or 0),
        value_sum,
        value_max,
        last_value,
        value_min,
        int(distinct_count or 0),
    )


def meter_usage(meter: Meter, customer_id: str, start: datetime, end: datetime) -> Usage:
    """Usage of one customer in [start, end)."""
    rows = _usage_rows(
        meter, start, end, customer_ids=[customer_id], by_customer=False, granularity=None
    )
    if not rows:
        return Usage.zero()
    return _aggregate(rows[0]).usage(meter.aggregation_type)


def usage_by_customer(
    meter: Meter, start: datetime, end: datetime, customer_ids: Iterable[str] | None = None
) -> dict[str, Usage]:
    """Usage per customer in [start, end); customers without matching events are absent."""
    rows = _usage_rows(
        meter, start, end, customer_ids=customer_ids, by_customer=True, granularity=None
    )
    return {row[0]: _aggregate(row).usage(meter.aggregation_type) for row in rows}


def usage_series(
    meter: Meter,
    start: datetime,
    end: datetime,
    granularity: str,
    customer_id: str | None = None,
) -> list[tuple[datetime, Usage]]:
    """Usage per hour/day/week/month (UTC) in [start, end); periods with no events are absent.

    The first and last periods cover only the part of them inside the window.
    """
    rows = _usage_rows(
        meter,
        start,
        end,
        customer_ids=None if customer_id is None else [customer_id],
        by_customer=False,
        granularity=granularity,
    )
    return [(row[1], _aggregate(row).usage(meter.aggregation_type)) for row in rows]
