"""Monthly range partitions of `events_event` by `timestamp`: creating them ahead, converting an
unpartitioned table, and detaching old months for archiving.

Every month has its own partition `events_event_pYYYY_MM`; an event whose month has none yet lands
in `events_event_default` and is found by every query all the same (they read the parent table).
Creating a month's partition moves that month's rows out of the default partition first, in the
same transaction, because PostgreSQL refuses a partition whose range has rows in the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from django.db import connection, transaction

PARENT = "events_event"
DEFAULT_PARTITION = "events_event_default"
KEYS_TABLE = "events_eventkey"
# The beat task keeps this many months after the current one ready.
MONTHS_AHEAD = 3

# The columns of events_event in table order (the conversion copies rows in this order; rollups
# read partitions by name with them).
COLUMNS = "id, event_id, customer_id, event_name, timestamp, metadata, ingested_at"


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def of(cls, moment: datetime | date) -> Month:
        return cls(moment.year, moment.month)

    @classmethod
    def parse(cls, text: str) -> Month:
        """`YYYY-MM`, as the archive command takes it."""
        try:
            year, month = (int(part) for part in text.split("-"))
            return cls(year, month).next().previous()  # validates the month number
        except ValueError:
            raise ValueError(f"{text!r} is not a month written YYYY-MM.") from None

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"month {self.month} is not between 1 and 12")

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    @property
    def table(self) -> str:
        return f"{PARENT}_p{self.year:04d}_{self.month:02d}"

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def _bound(moment: datetime) -> str:
    # Partition bounds are literals in DDL; ISO text with offset is exact for timestamptz.
    return f"'{moment.isoformat()}'"


def month_partitions(cursor: Any) -> list[Month]:
    """The months that have a partition attached to events_event, in order."""
    cursor.execute(
        """
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = %s::regclass
        """,
        [PARENT],
    )
    months = []
    prefix = f"{PARENT}_p"
    for (name,) in cursor.fetchall():
        if name.startswith(prefix):
            year, month = name[len(prefix) :].split("_")
            months.append(Month(int(year), int(month)))
    return sorted(months)


def tables_for_range(cursor: Any, first: datetime, last: datetime) -> list[str]:
    """The tables that can hold events stamped in [first, last]: the partitions of its months,
    and the default partition when one of them has none (its events are kept there)."""
    attached = set(month_partitions(cursor))
    tables, unpartitioned = [], False
    month, last_month = Month.of(first.astimezone(UTC)), Month.of(last.astimezone(UTC))
    while month <= last_month:
        if month in attached:
            tables.append(month.table)
        else:
            unpartitioned = True
        month = month.next()
    return [*tables, DEFAULT_PARTITION] if unpartitioned else tables


def create_month_partition(cursor: Any, month: Month) -> int:
    """Attach a partition for `month`, moving its rows out of the default partition; returns
    the rows moved. Must run inside a transaction (the move and the attach commit together).

    The default partition is locked against inserts first (SHARE ROW EXCLUSIVE), so no row of
    the month can arrive there between the move and the attach; ingestion into other months'
    partitions goes on. ATTACH takes only SHARE UPDATE EXCLUSIVE on the parent, and the CHECK
    constraint spares it a scan of the new table.
    """
    table = month.table
    cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN SHARE ROW EXCLUSIVE MODE")
    cursor.execute(
        f"""
        CREATE TABLE {table} (LIKE {PARENT} INCLUDING DEFAULTS,
            CONSTRAINT {table}_range CHECK (timestamp >= {_bound(month.start)}
                                            AND timestamp < {_bound(month.end)}))
        """
    )
    cursor.execute(
        f"""
        WITH moved AS (
            DELETE FROM {DEFAULT_PARTITION}
            WHERE timestamp >= %s AND timestamp < %s
            RETURNING {COLUMNS}
        )
        INSERT INTO {table} ({COLUMNS}) SELECT {COLUMNS} FROM moved ORDER BY id
        """,
        [month.start, month.end],
    )
    moved = cursor.rowcount
    cursor.execute(
        f"ALTER TABLE {PARENT} ATTACH PARTITION {table} "
        f"FOR VALUES FROM ({_bound(month.start)}) TO ({_bound(month.end)})"
    )
    cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_range")
    return moved


def ensure_partitions(*, now: datetime, months_ahead: int = MONTHS_AHEAD) -> list[Month]:
    """Create the partitions of this month and the next `months_ahead` that are missing, and of
    every month that has rows in the default partition; returns the months created.

    Each month in its own transaction, so a long move of one month holds its locks alone. Safe
    to run concurrently: a transaction-scoped advisory lock serializes the creators.
    """
    wanted = [Month.of(now)]
    for _ in range(months_ahead):
        wanted.append(wanted[-1].next())
    with connection.cursor() as cursor:
        stranded = default_partition_months(cursor)
    created = []
    for month in sorted(set(wanted) | set(stranded)):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('events_event partitions'))")
            if month in month_partitions(cursor):
                continue
            create_month_partition(cursor, month)
            created.append(month)
    return created


# --- converting an unpartitioned table ----------------------------------------------------------


# The table as migrations 0001-0004 left it: what `convert_to_partitioned` starts from. The
# conversion test and bench/ingest.py (its "before" modes) build it in a schema of their own.
UNPARTITIONED_DDL = f"""
CREATE TABLE {PARENT} (
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    event_id varchar(255) NOT NULL CONSTRAINT event_event_id_unique UNIQUE,
    customer_id varchar(255) NOT NULL,
    event_name varchar(255) NOT NULL,
    timestamp timestamptz NOT NULL,
    metadata jsonb NOT NULL,
    ingested_at timestamptz NOT NULL
);
CREATE INDEX event_customer_name_ts ON {PARENT} (customer_id, event_name, timestamp);
CREATE INDEX event_name_ts ON {PARENT} (event_name, timestamp);
CREATE INDEX event_ingested_at_brin ON {PARENT} USING brin (ingested_at);
"""


def convert_to_partitioned(cursor: Any, *, now: datetime, months_ahead: int = MONTHS_AHEAD) -> int:
    """Turn the plain `events_event` (migrations 0001-0004) into the partitioned table with its
    key table, keeping every row, id, the id sequence and the index names; returns the rows moved.

    Runs in the caller's transaction (the migration's): on any failure nothing changed. The old
    table is renamed, the new one created with its partitions (every month that has rows, this
    month and `months_ahead` more, and the default), rows copied in id order (so the BRIN on
    ingested_at stays tight), and indexes built after the copy, which is cheaper than keeping
    them up to date row by row.
    """
    old = f"{PARENT}_unpartitioned"
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [PARENT])
    old_sequence = cursor.fetchone()[0]
    cursor.execute(f"ALTER TABLE {PARENT} RENAME TO {old}")
    cursor.execute(f"ALTER SEQUENCE {old_sequence} RENAME TO {old}_id_seq")
    for name in (
        f"{PARENT}_pkey",
        "event_event_id_unique",
        "event_customer_name_ts",
        "event_name_ts",
        "event_ingested_at_brin",
    ):
        cursor.execute(f"ALTER INDEX IF EXISTS {name} RENAME TO {name}_old")
    cursor.execute(
        f"""
        CREATE TABLE {PARENT} (
            id bigint GENERATED BY DEFAULT AS IDENTITY,
            event_id varchar(255) NOT NULL,
            customer_id varchar(255) NOT NULL,
            event_name varchar(255) NOT NULL,
            timestamp timestamptz NOT NULL,
            metadata jsonb NOT NULL,
            ingested_at timestamptz NOT NULL
        ) PARTITION BY RANGE (timestamp)
        """
    )
    cursor.execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {PARENT} DEFAULT")
    cursor.execute(f"SELECT DISTINCT date_trunc('month', timestamp, 'UTC') FROM {old}")
    months = {Month.of(row[0].astimezone(UTC)) for row in cursor.fetchall()}
    month = Month.of(now)
    months.add(month)
    for _ in range(months_ahead):
        month = month.next()
        months.add(month)
    for month in sorted(months):
        cursor.execute(
            f"CREATE TABLE {month.table} PARTITION OF {PARENT} "
            f"FOR VALUES FROM ({_bound(month.start)}) TO ({_bound(month.end)})"
        )
    cursor.execute(f"INSERT INTO {PARENT} ({COLUMNS}) SELECT {COLUMNS} FROM {old} ORDER BY id")
    moved = cursor.rowcount
    cursor.execute(f"CREATE TABLE {KEYS_TABLE} (event_id varchar(255) PRIMARY KEY)")
    cursor.execute(
        f"INSERT INTO {KEYS_TABLE} (event_id) SELECT event_id FROM {old} ORDER BY event_id"
    )
    cursor.execute(f"SELECT last_value, is_called FROM {old}_id_seq")
    last_value, is_called = cursor.fetchone()
    cursor.execute(
        "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)",
        [PARENT, last_value, is_called],
    )
    cursor.execute(f"DROP TABLE {old}")
    cursor.execute(f"ALTER TABLE {PARENT} ADD PRIMARY KEY (id, timestamp)")
    cursor.execute(f"CREATE INDEX event_event_id ON {PARENT} (event_id)")
    cursor.execute(
        f"CREATE INDEX event_customer_name_ts ON {PARENT} (customer_id, event_name, timestamp)"
    )
    cursor.execute(f"CREATE INDEX event_name_ts ON {PARENT} (event_name, timestamp)")
    cursor.execute(f"CREATE INDEX event_ingested_at_brin ON {PARENT} USING brin (ingested_at)")
    cursor.execute(f"ANALYZE {PARENT}")
    return moved


# --- archiving ----------------------------------------------------------------------------------


def detach_month(cursor: Any, month: Month, *, dump_dir: Path | None) -> tuple[int, Path | None]:
    """Detach `month`'s partition; with `dump_dir`, COPY it to a CSV file there first and drop
    it after. Returns (rows, dump file). Without a dump the detached table stays in the database
    as `events_archive_YYYY_MM`, out of every query. Runs in the caller's transaction.
    """
    cursor.execute(f"SELECT count(*) FROM {month.table}")
    rows = cursor.fetchone()[0]
    cursor.execute(f"ALTER TABLE {PARENT} DETACH PARTITION {month.table}")
    if dump_dir is None:
        cursor.execute(
            f"ALTER TABLE {month.table} RENAME TO events_archive_{month.year:04d}_{month.month:02d}"
        )
        return rows, None
    dump_dir.mkdir(parents=True, exist_ok=True)
    path = dump_dir / f"{month.table}.csv"
    with (
        path.open("wb") as out,
        cursor.copy(
            f"COPY (SELECT {COLUMNS} FROM {month.table} ORDER BY id) "
            "TO STDOUT WITH (FORMAT csv, HEADER)"
        ) as copy,
    ):
        for chunk in copy:
            out.write(chunk)
    cursor.execute(f"DROP TABLE {month.table}")
    return rows, path


def default_partition_months(cursor: Any) -> list[Month]:
    """Months that have rows in the default partition (no partition of their own yet)."""
    cursor.execute(
        f"SELECT DISTINCT date_trunc('month', timestamp, 'UTC') FROM {DEFAULT_PARTITION}"
    )
    return sorted(Month.of(row[0].astimezone(UTC)) for row in cursor.fetchall())
