"""A rollup's update of a bucket row stays on its page (a HOT update), so the bucket tables do
not fill with dead versions and index entries when autovacuum is off or behind
(meters/migrations/0006_bucket_fillfactor.py; docs/benchmarks.md, "Soak").

Without the fillfactor the first rollup packs the hourly buckets into full pages, and the
second one's updates of the same rows must move nearly every new version to another page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from meters import rollups, services
from tests.factories import log_stored_events

NOW = datetime(2026, 5, 20, 15, 40, tzinfo=UTC)
CUSTOMERS = 3_000


def log_events_of_every_customer(prefix: str) -> None:
    """One event of each customer in the hour before NOW, written and logged for the rollup as
    the ingest statement writes and logs them (1,000 ids a batch)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO events_event (event_id, customer_id, event_name, timestamp, metadata, "
            "ingested_at) SELECT %s || n, 'cus_' || n, 'tokens.used', "
            "%s - make_interval(secs => n %% 3600), jsonb_build_object('tokens', n %% 10), %s "
            "FROM generate_series(1, %s) n",
            [prefix, NOW, NOW, CUSTOMERS],
        )
    log_stored_events("event_id LIKE %s", [prefix + "%"], now=NOW)


def hourly_updates() -> tuple[int, int]:
    """(updates, HOT updates) of the hourly buckets in this transaction so far."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
            "WHERE relname = 'meters_hourlyusage'"
        )
        return cursor.fetchone()


@pytest.mark.django_db
def test_a_second_rollup_of_the_same_buckets_updates_them_in_place():
    tokens = services.create_meter(
        name="Tokens",
        event_name="tokens.used",
        measurement_unit="units",
        aggregation={"type": "sum", "key": "tokens"},
        now=NOW - timedelta(days=30),
    )
    log_events_of_every_customer("first-")
    assert rollups.roll_up_pending(max_batches=100) == CUSTOMERS
    before, hot_before = hourly_updates()

    log_events_of_every_customer("second-")
    assert rollups.roll_up_pending(max_batches=100) == CUSTOMERS
    updates, hot = hourly_updates()
    assert updates - before == CUSTOMERS  # one update of each customer's hour
    assert hot - hot_before >= 0.9 * CUSTOMERS

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(event_count), sum(value_sum) FROM meters_hourlyusage "
            "WHERE meter_id = %s",
            [tokens.id],
        )
        expected_sum = 2 * sum(n % 10 for n in range(1, CUSTOMERS + 1))
        assert cursor.fetchone() == (CUSTOMERS, 2 * CUSTOMERS, expected_sum)
