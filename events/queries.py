"""What other apps may ask of the events tables: matching events and the batches not yet rolled up.

Rollups and usage queries call these instead of reading `events_*` tables on their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from billing_site.errors import DomainError
from events.models import ArchivedMonth
from events.partitions import COLUMNS, DEFAULT_PARTITION, Month, tables_for_range

# Ids of stored events that no rollup has counted yet. Inside one statement this is consistent
# with the buckets: a batch disappears from here in the same commit that adds it to buckets.
PENDING_EVENT_IDS_SQL = "SELECT unnest(event_ids) FROM events_ingestbatch"

EVENTS_TABLE = "events_event"


@dataclass(frozen=True)
class ClaimedEvents:
    """The events of claimed ingest batches: their ids and the range of their timestamps.

    The range is what makes reading them cheap on a table partitioned by month: with it the
    read looks only in the partitions of the months the batches touched (`tables`) instead of
    probing every month's key. None when a claimed batch predates the logging of ranges
    (migration 0005): then `tables` is empty and the whole table is read.
    """

    event_ids: list[int]
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    tables: tuple[str, ...] = ()

    def subset(self, event_ids: list[int]) -> ClaimedEvents:
        """Some of these events (the same range and tables still hold them)."""
        return ClaimedEvents(event_ids, self.first_timestamp, self.last_timestamp, self.tables)


def claimed_events_relation(claim: ClaimedEvents, alias: str = "e") -> tuple[str, list]:
    """The claimed events as a relation named `alias` (for a FROM clause), with its parameters.

    Read by primary key whatever the planner believes: for each claimed id, one lookup of
    `id = claimed.id` alone in each of the claim's tables, which only the primary key
    `(id, timestamp)` can serve, in a subquery that cannot be flattened (OFFSET 0). A timestamp
    range in the lookup, there for partition pruning, let the planner with statistics from when
    the table was small scan the `(event_name, timestamp)` index over the whole range once per
    id; `id = ANY(ids)` next to a meter's filter let it scan the event name's index and test
    every event of that name against the array (docs/benchmarks.md, "Rollups"). So the pruning
    is done here: the claim names the months' partitions to read.
    """
    lookups = " UNION ALL ".join(
        f"SELECT {COLUMNS} FROM {table} one WHERE one.id = claimed.id"
        for table in claim.tables or (EVENTS_TABLE,)
    )
    return (
        f"""(
        SELECT event.* FROM unnest(%s::bigint[]) AS claimed(id)
        CROSS JOIN LATERAL ({lookups} OFFSET 0) event
    ) {alias}""",
        [claim.event_ids],
    )


def claim_pending_batches(max_batches: int) -> ClaimedEvents:
    """Take committed, unclaimed batches off the log and return their events.

    Must run inside the transaction that applies them: the rows are deleted there, so either the
    buckets and the deletion commit together or neither does. SKIP LOCKED lets several workers
    claim disjoint batches at once; an uncommitted batch is invisible until its ingest commits.
    Read the events with `claimed_events_relation`.

    When a month of the range has no partition, its events are in the default partition, and
    a partition created for it now would move them out between this listing and the read: the
    default partition is then locked against that (ROW EXCLUSIVE, which the creation's SHARE
    ROW EXCLUSIVE waits for; inserts do not) and the tables are listed again under the lock.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM events_ingestbatch
            WHERE id IN (
                SELECT id FROM events_ingestbatch ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
            )
            RETURNING event_ids, first_timestamp, last_timestamp
            """,
            [max_batches],
        )
        rows = cursor.fetchall()
        firsts = [first for _, first, _ in rows]
        lasts = [last for _, _, last in rows]
        if not rows or None in firsts or None in lasts:
            first = last = None
            tables: list[str] = []
        else:
            first, last = min(firsts), max(lasts)
            tables = tables_for_range(cursor, first, last)
            if DEFAULT_PARTITION in tables:
                cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ROW EXCLUSIVE MODE")
                tables = tables_for_range(cursor, first, last)
    return ClaimedEvents(
        [event_id for (event_ids, _, _) in rows for event_id in event_ids],
        first,
        last,
        tuple(tables),
    )


def pending_batch_stats() -> tuple[int, int]:
    """(batches, events) waiting for a rollup: the rollup lag staff see on the dashboard."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(cardinality(event_ids)), 0) FROM events_ingestbatch"
        )
        batches, events = cursor.fetchone()
    return batches, int(events)


def event_names(limit: int) -> list[str]:
    """The first `limit` distinct event names (alphabetical), by a skip scan of the
    (event_name, timestamp) index: one index probe per name, never a read of every event, so a
    client inventing thousands of names cannot make a staff page read them all."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE names AS (
                (SELECT event_name FROM {EVENTS_TABLE} ORDER BY event_name LIMIT 1)
                UNION ALL
                SELECT (SELECT e.event_name FROM {EVENTS_TABLE} e
                        WHERE e.event_name > names.event_name
                        ORDER BY e.event_name LIMIT 1)
                FROM names WHERE names.event_name IS NOT NULL
            )
            SELECT event_name FROM names WHERE event_name IS NOT NULL LIMIT %s
            """,
            [limit],
        )
        return [name for (name,) in cursor.fetchall()]


def archived_before() -> datetime | None:
    """The start of the first month not archived (every month before it is), or None.

    Raw events before it are gone from the table: usage over them comes from rollups only.
    """
    last = ArchivedMonth.objects.order_by("-month").values_list("month", flat=True).first()
    return Month.of(last).next().start if last else None


class EventsArchived(DomainError):
    """An answer needs raw events of a month that `archive_events` detached."""

    status = 409
    code = "EVENTS_ARCHIVED"


def event_id_was_stored(event_id: str) -> bool:
    """Whether an event with this id was ever stored (its key stays after archiving)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM events_eventkey WHERE event_id = %s)", [event_id]
        )
        return bool(cursor.fetchone()[0])


def refuse_archived_event(event_id: str) -> None:
    """Raise EventsArchived when no row of `event_id` was found but its key says it was stored:
    its month is archived, and answering "unknown event" would be wrong."""
    horizon = archived_before()
    if horizon is not None and event_id_was_stored(event_id):
        raise EventsArchived(
            f"Event {event_id!r} was stored, but it is no longer in the events table: the "
            f"events of every month before {Month.of(horizon)} are archived. Its usage stays "
            "in the rollups and on the invoice that billed it."
        )


def refuse_archived_ranges(ranges: Iterable[tuple[datetime, datetime]], what: str) -> None:
    """Raise EventsArchived when any of `ranges` of raw events starts in an archived month:
    an answer computed without them would be silently short."""
    ranges = list(ranges)
    if not ranges:
        return
    horizon = archived_before()
    if horizon is None:
        return
    for start, _ in ranges:
        if start < horizon:
            raise EventsArchived(
                f"{what} needs the raw events from {start.isoformat()}, but the events of "
                f"every month before {Month.of(horizon)} are archived. Usage there is kept in "
                "rollups: windows of whole UTC hours are still answered, and invoices keep "
                "their lines."
            )
