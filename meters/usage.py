"""Usage of a meter: one customer over a window, every customer over a window, or a time series.

A window is split into whole UTC weeks (per customer: weekly buckets), whole UTC days (daily
buckets, or over all customers the meter's daily totals), whole hours (hourly buckets) and the
partial hours at its edges (raw events), so usage is exact for windows that start anywhere.
Events stored but not yet rolled up are read raw in the same statement, so an answer never lags
ingestion. A meter whose buckets are being rebuilt after an edit is answered from raw events
alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection

from events.queries import EVENTS_TABLE, PENDING_EVENT_IDS_SQL, refuse_archived_ranges
from meters.filters import filter_sql
from meters.models import Aggregation, Meter, MeterDailyTotal, WeeklyUsage

GRANULARITIES = ("hour", "day", "week", "month")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)


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
        quantity = getattr(self, _QUANTITY_FIELDS[aggregation])
        if isinstance(quantity, int):
            quantity = Decimal(quantity)
        return Usage(_normalize(quantity), self.event_count, self.skipped_count)


# The field of `Aggregate` each aggregation bills (a table of 1,000 customers calls this 1,000
# times: a lookup, not a dict built per call).
_QUANTITY_FIELDS: dict[str, str] = {
    Aggregation.COUNT: "event_count",
    Aggregation.SUM: "value_sum",
    Aggregation.MAX: "value_max",
    Aggregation.LAST: "last_value",
    Aggregation.MIN: "value_min",
    Aggregation.UNIQUE_COUNT: "distinct_count",
}


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
_NO_DISTINCT = "NULL::bit varying AS distinct_bits, NULL::integer[] AS distinct_positions"
# The sorted positions of the rows' distinct values (a bucket's set before `encoded_columns`
# chooses its form). Rows read through `dictionary_join_sql`.
_POSITION_SET = (
    "NULL::bit varying AS distinct_bits, "
    "array_agg(DISTINCT dv.position ORDER BY dv.position) FILTER (WHERE dv.position IS NOT NULL)"
    " AS distinct_positions"
)
# Values the dictionary does not hold yet (raw events read by a query), as text.
_UNKNOWN_COUNT = (
    "count(DISTINCT distinct_value)"
    " FILTER (WHERE dv.position IS NULL AND distinct_value IS NOT NULL) AS unknown_count"
)
_NO_UNKNOWN = "0::bigint AS unknown_count"

# A bucket is stored dense (a bit string as long as the dictionary) when it holds at least one
# value per DENSE_FACTOR values of the dictionary, else sparse (its positions, 4 bytes each): a
# bit string then takes at most DENSE_FACTOR / 32 times the bytes of the positions. Either form
# is exact; dense buckets are what make a query's merge cost follow the buckets, not the values.
DENSE_FACTOR = 128
# Queries cast bit strings to the dictionary's size rounded up to this: room for it to grow a
# little between reading the size and the statement, without a retry.
DICTIONARY_SIZE_STEP = 256


def _last_columns(ts: str, pk: str, value: str, condition: str) -> str:
    """last_value, last_timestamp, last_event_pk of the row with the latest (ts, pk).

    `max` over numeric arrays compares element by element, so [epoch, pk, value] finds the latest
    row without sorting: an ordered `array_agg` sorted every group and made the planner sort all
    input rows. EXTRACT returns an exact numeric (PostgreSQL 14+) and the value is returned as
    stored, so nothing is rounded; rows failing `condition` are left out, as NULLS LAST did.
    """
    latest = _latest_row(ts, pk, value, condition)
    return (
        f"({latest})[3] AS last_value, "
        f"max({ts}) FILTER (WHERE {condition}) AS last_timestamp, "
        f"(({latest})[2])::bigint AS last_event_pk"
    )


def _latest_row(ts: str, pk: str, value: str, condition: str) -> str:
    return (
        f"max(ARRAY[extract(epoch FROM {ts}), {pk}::numeric, {value}]) FILTER (WHERE {condition})"
    )


def _latest_value(ts: str, pk: str, value: str) -> str:
    """The value of the bucket with the latest (ts, pk), over buckets that hold one."""
    return f"({_latest_row(ts, pk, value, f'{ts} IS NOT NULL')})[3]"


def dictionary_join_sql(meter: Meter, rows: str = "matched") -> tuple[str, list]:
    """For unique_count, a LEFT JOIN of rows of `event_row_sql` (alias `rows`) to the meter's
    dictionary, as `dv` (`dv.position` NULL for a value not in it); else nothing."""
    if meter.aggregation_type != Aggregation.UNIQUE_COUNT:
        return "", []
    return (
        " LEFT JOIN (SELECT value AS dictionary_value, position FROM meters_distinctvalue"
        f" WHERE meter_id = %s) dv ON dv.dictionary_value = {rows}.distinct_value",
        [meter.id],
    )


def raw_aggregate_columns(meter: Meter, *, unknown_values: bool = False) -> str:
    """Aggregate columns over rows of `event_row_sql` (joined by `dictionary_join_sql`), in
    bucket column order; unique_count's set as raw positions (`encoded_columns` stores it).
    With `unknown_values`, one more column: how many distinct values are not in the dictionary.
    """
    if meter.aggregation_type == Aggregation.LAST:
        last = _last_columns("ts", "pk", "value", "valid")
    else:
        last = _NO_LAST
    unique = meter.aggregation_type == Aggregation.UNIQUE_COUNT
    distinct = _POSITION_SET if unique else _NO_DISTINCT
    if unknown_values:
        distinct += ", " + (_UNKNOWN_COUNT if unique else _NO_UNKNOWN)
    return (
        "count(*) FILTER (WHERE valid) AS event_count, "
        "count(*) FILTER (WHERE NOT valid) AS skipped_count, "
        f"sum(value) AS value_sum, max(value) AS value_max, {last}, "
        f"min(value) AS value_min, {distinct}"
    )


def encoded_columns(meter: Meter, dictionary_size: int) -> str:
    """BUCKET_COLUMNS of rows whose unique_count set is raw positions, as a bucket stores them:
    dense or sparse by `DENSE_FACTOR` against the dictionary's size (a trusted int)."""
    if meter.aggregation_type != Aggregation.UNIQUE_COUNT:
        return BUCKET_COLUMNS
    size = int(dictionary_size)
    dense = f"cardinality(distinct_positions) * {DENSE_FACTOR} >= {size}"
    return (
        "event_count, skipped_count, value_sum, value_max, last_value, last_timestamp, "
        f"last_event_pk, value_min, "
        f"CASE WHEN {dense} THEN meters_positions_bits(distinct_positions, {size}) END"
        " AS distinct_bits, "
        f"CASE WHEN NOT ({dense}) THEN distinct_positions END AS distinct_positions"
    )


def merge_distinct_sql(dictionary_size: int | str, *, old: str = "b", new: str = "excluded") -> str:
    """SET clauses that merge bucket `new` into bucket `old` (ON CONFLICT DO UPDATE): the union
    of their sets, dense if either is or if the union is dense by `DENSE_FACTOR`. The size is
    an int or a trusted SQL expression of it (one upsert for several meters: per row)."""
    size = f"({dictionary_size})" if isinstance(dictionary_size, str) else int(dictionary_size)
    union = f"meters_positions_union({old}.distinct_positions, {new}.distinct_positions)"
    dense = (
        f"({old}.distinct_bits IS NOT NULL OR {new}.distinct_bits IS NOT NULL"
        f" OR cardinality({union}) * {DENSE_FACTOR} >= {size})"
    )
    as_bits = "coalesce({0}.distinct_bits, meters_positions_bits({0}.distinct_positions, 0))".format
    return (
        f"distinct_bits = CASE WHEN {dense} THEN meters_bits_or({as_bits(old)}, {as_bits(new)})"
        " END,\n"
        f"    distinct_positions = CASE WHEN {dense} THEN NULL ELSE {union} END"
    )


def bucket_rows_sql(meter: Meter, source: str) -> str:
    """`source` (a table or subquery of bucket-shaped rows whose unique_count sets are raw
    positions) as rows `merged_aggregate_columns` reads: for unique_count, one row per position
    of each row (`distinct_position`, `first_of_bucket` on one row of each, so counts are summed
    once); else the rows as they are.
    """
    if meter.aggregation_type != Aggregation.UNIQUE_COUNT:
        return f"{source} rows"
    return f"""(
        SELECT rows.*, dv.distinct_position, coalesce(dv.ordinal, 1) = 1 AS first_of_bucket
        FROM {source} rows
        LEFT JOIN LATERAL unnest(rows.distinct_positions) WITH ORDINALITY
            AS dv(distinct_position, ordinal) ON TRUE
    ) rows"""


def merged_aggregate_columns(meter: Meter, *, distinct_count: bool = False) -> str:
    """Aggregate columns that combine the rows of `bucket_rows_sql` into one bucket (unique_count:
    the union of the positions, raw: `encoded_columns` stores it). With `distinct_count` (the
    usage query's merge; other meters only: unique_count queries merge in
    `_distinct_count_rows`), the last column is 0 and only the meter's own aggregate is
    computed, the others NULL: a query reads only that one, and merging 30,000 buckets of a
    30-day table spent as long in the numeric aggregates it did not need as in reading them.
    """
    if distinct_count and meter.aggregation_type != Aggregation.UNIQUE_COUNT:
        kind = meter.aggregation_type
        value_sum = "sum(value_sum)" if kind == Aggregation.SUM else "NULL::numeric"
        value_max = "max(value_max)" if kind == Aggregation.MAX else "NULL::numeric"
        value_min = "min(value_min)" if kind == Aggregation.MIN else "NULL::numeric"
        # The latest row's value only: its timestamp and id are not part of the answer, and
        # reading 1,000 timestamps back cost more than the statement's merge of them.
        last = (
            f"{_latest_value('last_timestamp', 'last_event_pk', 'last_value')} AS last_value, "
            "NULL::timestamptz AS last_timestamp, NULL::bigint AS last_event_pk"
            if kind == Aggregation.LAST
            else _NO_LAST
        )
        return (
            "sum(event_count)::bigint AS event_count, "
            "sum(skipped_count)::bigint AS skipped_count, "
            f"{value_sum} AS value_sum, {value_max} AS value_max, {last}, "
            f"{value_min} AS value_min, 0::bigint AS distinct_count"
        )
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
    # One row per position of a bucket: the bucket's counts only on its first row. Its other
    # columns are NULL for a unique_count meter.
    return (
        "sum(event_count) FILTER (WHERE first_of_bucket)::bigint AS event_count, "
        "sum(skipped_count) FILTER (WHERE first_of_bucket)::bigint AS skipped_count, "
        f"NULL::numeric AS value_sum, NULL::numeric AS value_max, {last}, "
        "NULL::numeric AS value_min, NULL::bit varying AS distinct_bits, "
        "array_agg(DISTINCT distinct_position ORDER BY distinct_position)"
        " FILTER (WHERE distinct_position IS NOT NULL) AS distinct_positions"
    )


BUCKET_COLUMNS = (
    "event_count, skipped_count, value_sum, value_max, last_value, last_timestamp, last_event_pk, "
    "value_min, distinct_bits, distinct_positions"
)


# --- the dictionary ----------------------------------------------------------------------------

# pg_advisory_xact_lock(key, meter): its own key space, apart from the backfill's session locks.
_DICTIONARY_LOCK = 15


def ensure_dictionary(meter: Meter, events_sql: str, params: list) -> int:
    """Give every value of the events `events_sql` selects (`FROM ... e WHERE ...`, alias `e`) a
    position in the meter's dictionary; returns the dictionary's size. Call inside the
    transaction that writes the buckets using them.

    The per-meter lock is taken only when there are new values, and held to commit: positions
    are numbered from the largest committed one by one transaction at a time, so two workers
    adding the same value give it one position, and a rollback leaves no gap.
    """
    if meter.aggregation_type != Aggregation.UNIQUE_COUNT:
        return 0
    value_sql, value_params = distinct_value_sql(meter)
    missing = f"""
        SELECT DISTINCT v FROM (SELECT {value_sql} AS v {events_sql}) values_of_events
        WHERE v IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM meters_distinctvalue d WHERE d.meter_id = %s AND d.value = v)
    """
    missing_params = [*value_params, *params, meter.id]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT pg_advisory_xact_lock({_DICTIONARY_LOCK}, hashtext(%s))"
            f" WHERE EXISTS ({missing})",
            [meter.id, *missing_params],
        )
        if cursor.fetchone() is not None:
            # A fresh snapshot, taken under the lock: values another worker added are not new.
            cursor.execute(
                f"""
                INSERT INTO meters_distinctvalue (meter_id, value, position)
                SELECT %s, v, base.size + row_number() OVER (ORDER BY v)
                FROM ({missing}) new_values, (
                    SELECT coalesce(max(position), 0) AS size
                    FROM meters_distinctvalue WHERE meter_id = %s
                ) base
                """,
                [meter.id, *missing_params, meter.id],
            )
        return dictionary_size(meter)


def dictionary_size(meter: Meter) -> int:
    """The largest position of the meter's dictionary (its size: positions have no gaps)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(max(position), 0) FROM meters_distinctvalue WHERE meter_id = %s",
            [meter.id],
        )
        return int(cursor.fetchone()[0])


def reset_dictionary(meter: Meter) -> None:
    """Empty the meter's dictionary, as its buckets are emptied for a rebuild."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM meters_distinctvalue WHERE meter_id = %s", [meter.id])


# --- windows -----------------------------------------------------------------------------------


def _ceil(moment: datetime, step: timedelta) -> datetime:
    floored = _floor(moment, step)
    return floored if floored == moment else floored + step


def _floor(moment: datetime, step: timedelta) -> datetime:
    moment = moment.astimezone(UTC)
    if step == WEEK:
        return week_start(moment)
    if step == DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def week_start(moment: datetime) -> datetime:
    """Midnight UTC of the Monday of `moment`'s week, as `date_trunc('week', ..., 'UTC')`."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True)
class WindowParts:
    raw: list[tuple[datetime, datetime]]
    hourly: list[tuple[datetime, datetime]]
    daily: list[tuple[datetime, datetime]]
    weekly: list[tuple[datetime, datetime]] = field(default_factory=list)


def _inner_part(
    first: datetime, last: datetime, step: timedelta
) -> tuple[list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]]:
    """[first, last) as (its edges outside whole `step`s, the whole `step`s), if it holds any."""
    inner_first, inner_last = _ceil(first, step), _floor(last, step)
    if inner_first >= inner_last:
        return [(first, last)], []
    edges = [r for r in ((first, inner_first), (inner_last, last)) if r[0] < r[1]]
    return edges, [(inner_first, inner_last)]


def split_window(
    start: datetime, end: datetime, *, use_daily: bool = True, use_weekly: bool = False
) -> WindowParts:
    """Cut [start, end) into raw edges, whole hours, whole days and, with `use_weekly`, whole
    weeks (all half-open, UTC)."""
    if start >= end:
        return WindowParts([], [], [])
    raw, hours = _inner_part(start, end, HOUR)
    if not hours:
        return WindowParts(raw, [], [])
    if not use_daily:
        return WindowParts(raw, hours, [])
    hourly, days = _inner_part(*hours[0], DAY)
    if not days:
        return WindowParts(raw, hours, [])
    if not use_weekly:
        return WindowParts(raw, hourly, days)
    daily, weeks = _inner_part(*days[0], WEEK)
    if not weeks:
        return WindowParts(raw, hourly, days)
    return WindowParts(raw, hourly, daily, weeks)


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
    customer_list = list(customer_ids) if customer_ids is not None else None
    # Over all customers together, whole days come from the meter's daily totals: one row a
    # day instead of one per customer and day (`meters.preaggregates`). Per customer, whole
    # weeks come from weekly buckets where no period can cut a week (a week can straddle
    # the 1st of a month).
    all_customers = not by_customer and customer_list is None
    if meter.rollups_ready:
        parts = split_window(
            start,
            end,
            use_daily=granularity != "hour",
            use_weekly=(
                meter.keeps_weekly_buckets and not all_customers and granularity in (None, "week")
            ),
        )
    else:
        parts = WindowParts([(start, end)], [], [])

    # Rollups keep archived months' usage; only their raw events (the edges) are gone.
    refuse_archived_ranges(parts.raw, f"Usage of meter {meter.id} from {start} to {end}")

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
    join_sql, join_params = dictionary_join_sql(meter)
    unique = meter.aggregation_type == Aggregation.UNIQUE_COUNT
    selects: list[str] = []
    params: list = []

    def raw_rows(time_condition: str, time_params: list, extra: str = "TRUE") -> str:
        customers_sql, customers_params = customer_clause("e.customer_id")
        params.extend([*row_params, *match_params, *time_params, *customers_params])
        return f"""
                SELECT {group_exprs("e.customer_id", "e.timestamp")}, {row_sql}
                FROM {EVENTS_TABLE} e
                WHERE {match_sql} AND {time_condition} AND {customers_sql} AND {extra}"""

    def raw_part(matched: list[str]) -> None:
        # unique_count reads its raw edges and pending events as one part: the values missing
        # from the dictionary are counted distinct there, across both.
        selects.append(
            f"""
            SELECT customer_id, period, {raw_aggregate_columns(meter, unknown_values=unique)}
            FROM ({" UNION ALL ".join(matched)}
            ) matched{join_sql}
            GROUP BY customer_id, period
            """
        )
        params.extend(join_params)

    raw_matched = []
    if parts.raw:
        raw_sql, raw_params = _ranges_sql("e.timestamp", parts.raw)
        raw_matched.append(raw_rows(raw_sql, raw_params))
        if not unique:
            raw_part(raw_matched)
            raw_matched = []
    covered = parts.hourly + parts.daily + parts.weekly
    if covered:
        covered_sql, covered_params = _ranges_sql("e.timestamp", covered)
        pending = f"e.id IN ({PENDING_EVENT_IDS_SQL})"
        raw_matched.append(raw_rows(covered_sql, covered_params, extra=pending))
    if raw_matched:
        raw_part(raw_matched)
    unknown = f", {_NO_UNKNOWN}" if unique else ""
    daily_table = (
        MeterDailyTotal._meta.db_table
        if all_customers and meter.keeps_daily_totals
        else "meters_dailyusage"
    )
    for table, column, ranges in (
        ("meters_hourlyusage", "hour", parts.hourly),
        (daily_table, "day", parts.daily),
        (WeeklyUsage._meta.db_table, "week", parts.weekly),
    ):
        if not ranges:
            continue
        range_sql, range_params = _ranges_sql(f"b.{column}", ranges)
        customers_sql, customers_params = customer_clause("b.customer_id")
        selects.append(
            f"""
            SELECT {group_exprs("b.customer_id", f"b.{column}")}, {BUCKET_COLUMNS}{unknown}
            FROM {table} b
            WHERE b.meter_id = %s AND {range_sql} AND {customers_sql}
            """
        )
        params.extend([meter.id, *range_params, *customers_params])

    if not selects:
        return []
    union = " UNION ALL ".join(f"({s})" for s in selects)
    if not unique:
        sql = f"""
            SELECT customer_id, period, {merged_aggregate_columns(meter, distinct_count=True)}
            FROM {bucket_rows_sql(meter, f"({union})")}
            GROUP BY customer_id, period
            ORDER BY customer_id, period
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    return _distinct_count_rows(meter, union, params)


def _distinct_count_rows(meter: Meter, union: str, params: list) -> list[tuple]:
    """Merge the rows of a unique_count usage query per group, exactly, in one statement.

    Every position of the group, each dense bucket's bit string and each position of a sparse
    bucket or of raw events, is ORed into one bit(N) string and counted by `bit_count`; to that
    the raw part adds its distinct values not in the dictionary (newer than it): a value
    without a position is in no bucket of the snapshot, dictionary rows committing with the
    buckets that use them. Every aggregate is one PostgreSQL can run in parallel and by hash,
    as a sum's. N is the dictionary's size read just before, rounded up; rollups committed
    since can have written longer strings or larger positions, which the cast would cut: the
    statement reports them, and it runs again with a fresh N and more room.
    """
    for attempt in range(8):
        step = DICTIONARY_SIZE_STEP * 4**attempt  # more room each time it was short
        size = -(-max(dictionary_size(meter), 1) // step) * step
        sql = f"""
            SELECT customer_id, period, event_count, skipped_count,
                   NULL::numeric, NULL::numeric, NULL::numeric, NULL::timestamptz, NULL::bigint,
                   NULL::numeric, coalesce(bit_count(dense), 0) + unknown AS distinct_count,
                   longest > {size} AS cut
            FROM (
                SELECT customer_id, period,
                       sum(event_count) FILTER (WHERE first_of_row)::bigint AS event_count,
                       sum(skipped_count) FILTER (WHERE first_of_row)::bigint AS skipped_count,
                       bit_or(CASE WHEN position IS NULL THEN distinct_bits::bit({size})
                                   WHEN position <= {size}
                                       THEN set_bit(B'0'::bit({size}), position - 1, 1) END)
                           AS dense,
                       max(coalesce(position, length(distinct_bits))) AS longest,
                       coalesce(sum(unknown_count) FILTER (WHERE first_of_row), 0) AS unknown
                FROM (
                    SELECT rows.customer_id, rows.period, rows.event_count, rows.skipped_count,
                           rows.distinct_bits, rows.unknown_count, u.position,
                           coalesce(u.ordinal, 1) = 1 AS first_of_row
                    FROM ({union}) rows
                    LEFT JOIN LATERAL unnest(rows.distinct_positions) WITH ORDINALITY
                        AS u(position, ordinal) ON TRUE
                ) rows
                GROUP BY customer_id, period
            ) groups
            ORDER BY customer_id, period
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if not any(row[11] for row in rows):
            return [row[:11] for row in rows]
    raise RuntimeError(f"meter {meter.id}: its dictionary kept growing during the query")


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
