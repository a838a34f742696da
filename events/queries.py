"""What other apps may ask of the events tables: matching events and the batches not yet rolled up.

Rollups and usage queries call these instead of reading `events_*` tables on their own.
"""

from __future__ import annotations

from django.db import connection

# Ids of stored events that no rollup has counted yet. Inside one statement this is consistent
# with the buckets: a batch disappears from here in the same commit that adds it to buckets.
PENDING_EVENT_IDS_SQL = "SELECT unnest(event_ids) FROM events_ingestbatch"

EVENTS_TABLE = "events_event"


def claim_pending_batches(max_batches: int) -> list[int]:
    """Take committed, unclaimed batches off the log and return their event ids.

    Must run inside the transaction that applies them: the rows are deleted there, so either the
    buckets and the deletion commit together or neither does. SKIP LOCKED lets several workers
    claim disjoint batches at once; an uncommitted batch is invisible until its ingest commits.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            DELETE FROM events_ingestbatch
            WHERE id IN (
                SELECT id FROM events_ingestbatch ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
            )
            RETURNING event_ids
            """,
            [max_batches],
        )
        return [event_id for (event_ids,) in cursor.fetchall() for event_id in event_ids]


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
