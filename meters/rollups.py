"""Keep per-(meter, customer) hourly, daily and weekly usage buckets current, on any number of
workers.

Two kinds of work, both safe to run concurrently and to repeat:
- `roll_up_pending` claims committed ingest batches (SKIP LOCKED) and adds their events to the
  buckets of every meter, in the same transaction that removes the batches from the log: every
  event is counted exactly once, whatever order its batch committed in. Updates are increments
  (add, greatest, least, later-of, set union), so two workers touching one bucket never lose
  each other's work, and the stored bucket does not depend on the order batches were applied
  (for unique_count: its set of values; their positions in the meter's dictionary, given in the
  same transaction by `meters.usage.ensure_dictionary`, follow the order values first came).
- `backfill_meter` rebuilds a new or edited meter's buckets over all history, one chunk of days
  per transaction. It holds the meter row FOR UPDATE while incremental work holds it FOR SHARE,
  and it leaves out events still in the log, which the incremental path will add.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from billing_site.retries import with_retries
from events.queries import (
    EVENTS_TABLE,
    PENDING_EVENT_IDS_SQL,
    ClaimedEvents,
    archived_before,
    claim_pending_batches,
    claimed_events_relation,
)
from meters.models import Aggregation, Meter
from meters.preaggregates import DAILY_TOTALS_TABLE, rewrite_weekly_buckets, write_preaggregates
from meters.usage import (
    BUCKET_COLUMNS,
    DAY,
    bucket_rows_sql,
    dictionary_join_sql,
    encoded_columns,
    ensure_dictionary,
    event_row_sql,
    matching_events_sql,
    merge_distinct_sql,
    merged_aggregate_columns,
    raw_aggregate_columns,
    reset_dictionary,
    week_start,
)

logger = logging.getLogger(__name__)

MAX_BATCHES_PER_TRANSACTION = 50
BACKFILL_DAYS_PER_TRANSACTION = 3
RETRIES = 5
# The per-customer bucket tables (meters_<name>usage) a rollup step increments, in the order it
# writes them: every worker locks rows in one order, so none waits on another in a cycle.
_BUCKET_TABLES = (("hourly", "hour"), ("daily", "day"), ("weekly", "week"))

_MERGE_INTO_EXISTING = """
    event_count = b.event_count + excluded.event_count,
    skipped_count = b.skipped_count + excluded.skipped_count,
    value_sum = CASE WHEN b.value_sum IS NULL THEN excluded.value_sum
                     WHEN excluded.value_sum IS NULL THEN b.value_sum
                     ELSE b.value_sum + excluded.value_sum END,
    value_max = greatest(b.value_max, excluded.value_max),
    last_value = CASE WHEN b.last_timestamp IS NULL
                        OR (excluded.last_timestamp, excluded.last_event_pk)
                           > (b.last_timestamp, b.last_event_pk)
                      THEN excluded.last_value ELSE b.last_value END,
    last_event_pk = CASE WHEN b.last_timestamp IS NULL
                        OR (excluded.last_timestamp, excluded.last_event_pk)
                           > (b.last_timestamp, b.last_event_pk)
                      THEN excluded.last_event_pk ELSE b.last_event_pk END,
    last_timestamp = CASE WHEN b.last_timestamp IS NULL
                        OR (excluded.last_timestamp, excluded.last_event_pk)
                           > (b.last_timestamp, b.last_event_pk)
                      THEN excluded.last_timestamp ELSE b.last_timestamp END,
    value_min = least(b.value_min, excluded.value_min),
    {distinct}
"""


def _merge_into_existing(dictionary_size: int | str) -> str:
    """The ON CONFLICT SET clauses, the distinct sets' form chosen against `dictionary_size`
    (an int, or an SQL expression of the bucket's meter's size)."""
    return _MERGE_INTO_EXISTING.format(distinct=merge_distinct_sql(dictionary_size))


def _no_jit() -> None:
    """Turn JIT compilation off for the rest of the transaction.

    Whether PostgreSQL compiles a statement depends on its estimated cost, that is on the
    statistics: a rollup step's estimates put it over `jit_above_cost`, and compiling its
    statements took 0.6 s of a 50,000-event step that otherwise runs in about as much.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")


def _ids_by_event_name(claim: ClaimedEvents) -> dict[str, list[int]]:
    """The claimed events grouped by name: whose meters the step locks and updates, and what
    each unique_count meter's dictionary is given."""
    claimed_sql, claimed_params = claimed_events_relation(claim)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT e.event_name, array_agg(e.id ORDER BY e.id) FROM {claimed_sql} "
            "GROUP BY e.event_name",
            claimed_params,
        )
        return dict(cursor.fetchall())


def _lock_meters_for_share(event_names: list[str]) -> list[Meter]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM meters_meter WHERE event_name = ANY(%s) ORDER BY id FOR SHARE",
            [sorted(event_names)],
        )
        meter_ids = [row[0] for row in cursor.fetchall()]
    return list(Meter.objects.filter(id__in=meter_ids).order_by("id"))


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _size_of_bucket_meter(sizes: dict[str, int]) -> str:
    """The dictionary size of bucket `b`'s meter (0 for meters without one), as SQL: the one
    upsert merges buckets of several meters."""
    if not sizes:
        return "0"
    whens = " ".join(f"WHEN {_sql_string(id_)} THEN {int(size)}" for id_, size in sizes.items())
    return f"CASE b.meter_id {whens} ELSE 0 END"


def _meter_deltas(meter: Meter, number: int, size: int) -> tuple[str, list[str], list]:
    """One meter's part of the step: its CTEs (`hourly_N` over the claimed events, `daily_N`
    made from that, `weekly_N` from that where the meter keeps weekly buckets; unique_count
    sets as raw positions), the SELECTs of their rows as buckets store them (meter id first;
    hourly, daily and, where kept, weekly), and the CTEs' parameters."""
    match_sql, match_params = matching_events_sql(meter)
    row_sql, row_params = event_row_sql(meter)
    join_sql, join_params = dictionary_join_sql(meter)
    per_hour = (
        f"(SELECT hourly_{number}.*, date_trunc('day', hour, 'UTC') AS day FROM hourly_{number})"
    )
    ctes = f"""hourly_{number} AS (
            SELECT %s::varchar AS meter_id, customer_id, hour, {raw_aggregate_columns(meter)}
            FROM (
                SELECT e.customer_id, date_trunc('hour', e.timestamp, 'UTC') AS hour, {row_sql}
                FROM claimed_events e
                WHERE {match_sql}
            ) matched{join_sql}
            GROUP BY customer_id, hour
        ), daily_{number} AS (
            SELECT meter_id, customer_id, day, {merged_aggregate_columns(meter)}
            FROM {bucket_rows_sql(meter, per_hour)}
            GROUP BY meter_id, customer_id, day
        )"""
    encoded = encoded_columns(meter, size)
    rows = [
        f"SELECT meter_id, customer_id, hour, {encoded} FROM hourly_{number}",
        f"SELECT meter_id, customer_id, day, {encoded} FROM daily_{number}",
    ]
    if meter.keeps_weekly_buckets:
        ctes += f""", weekly_{number} AS (
            SELECT meter_id, customer_id, date_trunc('week', day, 'UTC') AS week,
                   {merged_aggregate_columns(meter)}
            FROM {bucket_rows_sql(meter, f"daily_{number}")}
            GROUP BY meter_id, customer_id, date_trunc('week', day, 'UTC')
        )"""
        rows.append(f"SELECT meter_id, customer_id, week, {encoded} FROM weekly_{number}")
    return ctes, rows, [meter.id, *row_params, *match_params, *join_params]


def _apply_deltas(
    meters: list[Meter], claim: ClaimedEvents, ids_by_name: dict[str, list[int]]
) -> None:
    """Add the events' contributions to every meter's hourly, daily and weekly buckets, in one
    statement.

    The events are read once (`claimed_events`, by primary key) and every meter aggregates its
    own from that. Every delta is aggregated before the first bucket row is written, and the
    rows are written in one order whatever the meters, (meter, customer, hour) then (meter,
    customer, day) then (meter, customer, week): two workers never deadlock, and a bucket row
    is locked only from this statement to the commit, not while other meters' events are read.
    unique_count meters get their values' positions first (`ensure_dictionary`, per meter in id
    order, in this transaction), so the positions commit with the buckets that use them.
    """
    sizes = {}
    for meter in meters:
        if meter.aggregation_type == Aggregation.UNIQUE_COUNT:
            own_sql, own_params = claimed_events_relation(
                claim.subset(ids_by_name[meter.event_name])
            )
            match_sql, match_params = matching_events_sql(meter)
            sizes[meter.id] = ensure_dictionary(
                meter, f"FROM {own_sql} WHERE {match_sql}", [*own_params, *match_params]
            )
    ids = sorted({id_ for meter in meters for id_ in ids_by_name[meter.event_name]})
    claimed_sql, params = claimed_events_relation(claim.subset(ids))
    ctes: list[str] = []
    rows_by_table: list[list[str]] = [[] for _ in _BUCKET_TABLES]
    for number, meter in enumerate(meters):
        meter_ctes, meter_rows, meter_params = _meter_deltas(meter, number, sizes.get(meter.id, 0))
        ctes.append(meter_ctes)
        for table_rows, rows in zip(rows_by_table, meter_rows, strict=False):
            table_rows.append(rows)
        params += meter_params
    merge = _merge_into_existing(_size_of_bucket_meter(sizes))
    upserts = [
        f"""{table} AS (
            INSERT INTO meters_{table}usage AS b (meter_id, customer_id, {column}, {BUCKET_COLUMNS})
            SELECT * FROM ({" UNION ALL ".join(table_rows)}) delta
            ORDER BY meter_id, customer_id, {column}
            ON CONFLICT (meter_id, customer_id, {column}) DO UPDATE SET {merge}
            RETURNING 1
        )"""
        for (table, column), table_rows in zip(_BUCKET_TABLES, rows_by_table, strict=True)
        if table_rows
    ]
    # The scalar subqueries run in this order: the upserts lock rows table by table.
    counts = ", ".join(
        f"(SELECT count(*) FROM {table})"
        for (table, _), table_rows in zip(_BUCKET_TABLES, rows_by_table, strict=True)
        if table_rows
    )
    sql = f"""
        WITH claimed_events AS MATERIALIZED (
            SELECT e.id, e.customer_id, e.event_name, e.timestamp, e.metadata
            FROM {claimed_sql}
        ),
        {", ".join(ctes)},
        {", ".join(upserts)}
        SELECT {counts}
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def roll_up_pending(*, max_batches: int = MAX_BATCHES_PER_TRANSACTION) -> int:
    """Claim up to `max_batches` ingest batches and apply them; returns the events claimed."""

    def work() -> int:
        with transaction.atomic():
            claim = claim_pending_batches(max_batches)
            if not claim.event_ids:
                return 0
            _no_jit()
            ids_by_name = _ids_by_event_name(claim)
            meters = _lock_meters_for_share(list(ids_by_name))
            if meters:
                _apply_deltas(meters, claim, ids_by_name)
                # After every bucket upsert, in meter order: a totals lock is held only
                # from here to the commit.
                for meter in meters:
                    write_preaggregates(meter, claim.first_timestamp, claim.last_timestamp)
            return len(claim.event_ids)

    return with_retries(work, attempts=RETRIES, backoff_seconds=0.05)


def roll_up_all_pending(*, time_budget: float | None = None) -> int:
    """Apply every committed batch (or as many as fit in `time_budget` seconds)."""
    started = time.monotonic()
    total = 0
    while True:
        claimed = roll_up_pending()
        total += claimed
        if not claimed:
            return total
        if time_budget is not None and time.monotonic() - started > time_budget:
            return total


# --- backfill ----------------------------------------------------------------------------------


def _day_floor(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _rebuild_days(meter: Meter, first_day: datetime, end_day: datetime) -> None:
    """Recompute the meter's buckets for [first_day, end_day) from events no longer pending."""
    match_sql, match_params = matching_events_sql(meter)
    row_sql, row_params = event_row_sql(meter)
    join_sql, join_params = dictionary_join_sql(meter)
    events_sql = (
        f"FROM {EVENTS_TABLE} e WHERE {match_sql} AND e.timestamp >= %s AND e.timestamp < %s"
        f" AND e.id NOT IN ({PENDING_EVENT_IDS_SQL})"
    )
    events_params = [*match_params, first_day, end_day]
    size = ensure_dictionary(meter, events_sql, events_params)
    hours_of_chunk = (
        "(SELECT * FROM meters_hourlyusage WHERE meter_id = %s AND hour >= %s AND hour < %s)"
    )
    with connection.cursor() as cursor:
        for table, column in (("meters_hourlyusage", "hour"), ("meters_dailyusage", "day")):
            cursor.execute(
                f"DELETE FROM {table} WHERE meter_id = %s AND {column} >= %s AND {column} < %s",
                [meter.id, first_day, end_day],
            )

        hourly_sql = f"""
            SELECT customer_id, hour, {raw_aggregate_columns(meter)}
            FROM (
                SELECT e.customer_id, date_trunc('hour', e.timestamp, 'UTC') AS hour, {row_sql}
                {events_sql}
            ) matched{join_sql}
            GROUP BY customer_id, hour
        """
        hourly_params = [*row_params, *events_params, *join_params]
        if meter.aggregation_type != Aggregation.UNIQUE_COUNT:
            cursor.execute(
                f"""
                INSERT INTO meters_hourlyusage (meter_id, customer_id, hour, {BUCKET_COLUMNS})
                SELECT %s, hours.* FROM ({hourly_sql}) hours
                """,
                [meter.id, *hourly_params],
            )
            cursor.execute(
                f"""
                INSERT INTO meters_dailyusage (meter_id, customer_id, day, {BUCKET_COLUMNS})
                SELECT meter_id, customer_id, date_trunc('day', hour, 'UTC') AS day,
                       {merged_aggregate_columns(meter)}
                FROM {bucket_rows_sql(meter, hours_of_chunk)}
                GROUP BY meter_id, customer_id, date_trunc('day', hour, 'UTC')
                """,
                [meter.id, first_day, end_day],
            )
            return
        # unique_count: stored hours hold bit strings or positions, so days are merged from
        # the hours' raw positions, in the same statement (one read of the events).
        per_hour = "(SELECT hours.*, date_trunc('day', hour, 'UTC') AS day FROM hours)"
        cursor.execute(
            f"""
            WITH hours AS ({hourly_sql}), hourly AS (
                INSERT INTO meters_hourlyusage (meter_id, customer_id, hour, {BUCKET_COLUMNS})
                SELECT %s, customer_id, hour, {encoded_columns(meter, size)} FROM hours
                RETURNING 1
            )
            INSERT INTO meters_dailyusage (meter_id, customer_id, day, {BUCKET_COLUMNS})
            SELECT %s, customer_id, day, {encoded_columns(meter, size)}
            FROM (
                SELECT customer_id, day, {merged_aggregate_columns(meter)}
                FROM {bucket_rows_sql(meter, per_hour)}
                GROUP BY customer_id, day
            ) days
            """,
            [*hourly_params, meter.id, meter.id],
        )


def _first_event_day(meter: Meter) -> datetime | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(timestamp) FROM {EVENTS_TABLE} WHERE event_name = %s",
            [meter.event_name],
        )
        first = cursor.fetchone()[0]
    return _day_floor(first) if first else None


def backfill_step(meter_id: str, *, now: datetime | None = None, days: int | None = None) -> bool:
    """Rebuild the next chunk of days of one meter's buckets. Returns True once it is current."""
    days = days or BACKFILL_DAYS_PER_TRANSACTION

    def work() -> bool:
        with transaction.atomic():
            meter = Meter.objects.select_for_update().filter(id=meter_id).first()
            if meter is None or meter.rollups_ready:
                return True
            moment = now or timezone.now()
            # Events may be stamped up to 5 minutes ahead; cover the day they could fall on.
            horizon = _day_floor(moment + timedelta(hours=1)) + DAY
            if meter.backfill_next_day is None:
                first_day = _first_event_day(meter)
                # Archived months have no raw events left: their buckets stay as they are.
                kept_until = archived_before()
                if first_day is not None and kept_until is not None:
                    first_day = max(first_day, kept_until)
                with connection.cursor() as cursor:
                    for table, column in (
                        ("meters_hourlyusage", "hour"),
                        ("meters_dailyusage", "day"),
                        (DAILY_TOTALS_TABLE, "day"),
                    ):
                        cursor.execute(
                            f"DELETE FROM {table} WHERE meter_id = %s AND {column} >= %s",
                            [meter.id, kept_until or datetime.min.replace(tzinfo=UTC)],
                        )
                # The week holding the archive's end keeps its archived days.
                rewrite_weekly_buckets(meter, kept_until, None)
                if kept_until is None:
                    # Positions numbered anew for what the meter now counts; the kept buckets
                    # of archived months still use the old positions, so those stay.
                    reset_dictionary(meter)
                if first_day is None:
                    meter.backfilled_version = meter.definition_version
                    meter.backfill_days_total = meter.backfill_days_done = 0
                    meter.save(
                        update_fields=[
                            "backfilled_version",
                            "backfill_days_total",
                            "backfill_days_done",
                        ]
                    )
                    return True
                meter.backfill_next_day = first_day
                meter.backfill_days_total = (horizon - first_day).days
                meter.backfill_days_done = 0
            start = meter.backfill_next_day
            end = min(start + days * DAY, horizon)
            _rebuild_days(meter, start, end)
            write_preaggregates(meter, start, end - DAY)
            done = end >= horizon
            # A week is rewritten once, by the chunk that rebuilds its last day (or the last
            # chunk): no query reads the meter's buckets before the backfill is done, and what
            # the rollup adds meanwhile goes to its days too.
            last_week_day = end - DAY if done else week_start(end) - DAY
            if last_week_day >= week_start(start):
                rewrite_weekly_buckets(meter, start, last_week_day)
            meter.backfill_days_done += (end - start).days
            meter.backfill_next_day = end
            if done:
                meter.backfilled_version = meter.definition_version
                meter.backfill_next_day = None
                meter.backfill_days_done = meter.backfill_days_total
            meter.save(
                update_fields=[
                    "backfilled_version",
                    "backfill_next_day",
                    "backfill_days_total",
                    "backfill_days_done",
                ]
            )
            return done

    return with_retries(work, attempts=RETRIES, backoff_seconds=0.05)


def backfill_meter(meter_id: str, *, time_budget: float | None = None) -> bool:
    """Run backfill steps for one meter until it is current (or the budget is spent).

    A session advisory lock keeps a second worker from rebuilding the same meter at the same time
    (it would only redo the same chunks); the row lock in each step is what keeps results correct.
    """
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [f"backfill:{meter_id}"])
        if not cursor.fetchone()[0]:
            return False
    try:
        while not backfill_step(meter_id):
            if time_budget is not None and time.monotonic() - started > time_budget:
                return False
        return True
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"backfill:{meter_id}"])


def meters_needing_backfill() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM meters_meter WHERE backfilled_version <> definition_version ORDER BY id"
        )
        return [row[0] for row in cursor.fetchall()]


def run_rollups(*, time_budget: float | None = None) -> None:
    """All pending rollup work: new batches first (fresh usage), then meter backfills."""
    started = time.monotonic()
    roll_up_all_pending(time_budget=time_budget)
    for meter_id in meters_needing_backfill():
        remaining = None if time_budget is None else time_budget - (time.monotonic() - started)
        if remaining is not None and remaining <= 0:
            return
        backfill_meter(meter_id, time_budget=remaining)
    roll_up_all_pending(time_budget=time_budget)
