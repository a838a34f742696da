"""A rollup step reads its claimed events by primary key whatever the statistics say.

The statistics here are those of a table ANALYZEd while it held a few events of another name and
then bulk-loaded (autovacuum is off where the benchmarks run): the planner believes the meters'
event name matches no row. With `id = ANY(ids) AND event_name = ...` it then scanned the name's
index and tested every event of that name against the whole id array (docs/benchmarks.md,
"Rollups"). The test asserts the plans' shape, never a timing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from meters import rollups, services
from meters.models import Meter
from meters.usage import meter_usage
from tests.factories import log_stored_events

NOW = datetime(2026, 5, 20, 15, 40, tzinfo=UTC)
EVENTS = 20_000


def scans_of(plan: dict, relation_prefix: str) -> list[dict]:
    """Every plan node that reads a relation named `relation_prefix` or one of its partitions."""
    name = plan.get("Relation Name") or ""
    found = [plan] if name.startswith(relation_prefix) else []
    for child in plan.get("Plans", []):
        found += scans_of(child, relation_prefix)
    return found


def plan_of(sql: str) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        return cursor.fetchone()[0][0]["Plan"]


def bulk_load_after_analyze(event_name: str) -> None:
    """ANALYZE with 100 events of another name, then EVENTS of `event_name` over the two hours
    before NOW, logged in 1,000-id batches (with their timestamp ranges) as ingestion logs them;
    no ANALYZE afterwards."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO events_event (event_id, customer_id, event_name, timestamp, metadata, "
            "ingested_at) SELECT 'seed-' || n, 'cus_seed', 'seed.event', %s, '{}', %s "
            "FROM generate_series(1, 100) n",
            [NOW, NOW],
        )
        cursor.execute("ANALYZE events_event")
        cursor.execute("ANALYZE events_ingestbatch")
        cursor.execute(
            "INSERT INTO events_event (event_id, customer_id, event_name, timestamp, metadata, "
            "ingested_at) SELECT 'evt-' || n, 'cus_' || (n %% 50), %s, "
            "%s - make_interval(secs => n %% 7200), "
            "jsonb_build_object('tokens', n %% 10, 'user', 'u' || (n %% 300)), %s "
            "FROM generate_series(1, %s) n",
            [event_name, NOW, NOW, EVENTS],
        )
    log_stored_events("event_name = %s", [event_name], now=NOW)


def meter(name: str, aggregation: dict) -> Meter:
    return services.create_meter(
        name=name,
        event_name="tokens.used",
        measurement_unit="units",
        aggregation=aggregation,
        now=NOW - timedelta(days=30),
    )


@pytest.mark.django_db
def test_a_rollup_step_reads_claimed_events_by_primary_key_on_stale_statistics():
    tokens = meter("Tokens", {"type": "sum", "key": "tokens"})
    users = meter("Users", {"type": "unique_count", "key": "user"})
    bulk_load_after_analyze("tokens.used")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT most_common_vals::text FROM pg_stats "
            "WHERE tablename LIKE 'events_event%%' AND attname = 'event_name'"
        )
        assert {row[0] for row in cursor.fetchall()} == {"{seed.event}"}  # the statistics lie
        cursor.execute("SELECT id FROM events_event WHERE event_name = 'tokens.used'")
        ids = [row[0] for row in cursor.fetchall()]
    # What the old condition's plan was: not the primary key, the id array a mere filter.
    naive = plan_of(
        "SELECT * FROM events_event e WHERE e.id = ANY(ARRAY[{}]::bigint[]) "
        "AND e.event_name = 'tokens.used'".format(",".join(map(str, ids[:5000])))
    )
    assert not all(
        (scan.get("Index Name") or "").endswith("_pkey") for scan in scans_of(naive, "events_event")
    )

    with connection.cursor() as cursor:
        may = "events_event_p2026_05"
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [may])
        partitions = may if cursor.fetchone()[0] else "events_event_default"
    with CaptureQueriesContext(connection) as queries:
        claimed = rollups.roll_up_pending(max_batches=EVENTS // 1000)
    assert claimed == EVENTS
    reads = [q["sql"] for q in queries.captured_queries if "claimed.id" in q["sql"]]
    # The names of the step, the dictionary's check and insert, then every meter's delta.
    assert len(reads) == 4
    for sql in reads:
        scans = scans_of(plan_of(sql), "events_event")
        assert scans, sql
        for scan in scans:
            # An index scan of the primary key, or a bitmap heap scan driven by one (the
            # planner takes either for one id, as its estimates of rows per id move).
            lookup = scan
            if scan["Node Type"] == "Bitmap Heap Scan":
                (lookup,) = scan["Plans"]
                assert lookup["Node Type"] == "Bitmap Index Scan", scan
            else:
                assert scan["Node Type"] == "Index Scan", scan
            assert lookup["Index Name"].endswith("_pkey"), scan
            # Only the partitions of the batches' range are read: the month of NOW, kept in
            # the default partition when it has none.
            assert scan["Relation Name"] == partitions, scan
            assert lookup["Index Cond"] == "(id = claimed.id)", scan

    # And the buckets hold every event once: the totals by plain queries over the events.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum((metadata ->> 'tokens')::numeric), count(*), "
            "count(DISTINCT metadata ->> 'user') FROM events_event WHERE event_name = %s",
            [tokens.event_name],
        )
        total, count, distinct_users = cursor.fetchone()
        cursor.execute(
            "SELECT sum(value_sum), sum(event_count) FROM meters_hourlyusage WHERE meter_id = %s",
            [tokens.id],
        )
        assert cursor.fetchone() == (total, count)
    users.refresh_from_db()
    tokens.refresh_from_db()
    # Whole hours and days answered from the buckets only (nothing pending).
    window = (NOW - timedelta(days=2), NOW + timedelta(days=1))
    everyone = [f"cus_{n}" for n in range(50)]
    assert sum(meter_usage(tokens, c, *window).quantity for c in everyone) == total
    per_customer = sum(meter_usage(users, c, *window).event_count for c in everyone)
    assert per_customer == count
    assert meter_usage(users, "cus_7", *window).quantity == len(
        {f"u{n % 300}" for n in range(1, EVENTS + 1) if n % 50 == 7}
    )
    assert distinct_users == 300
