"""The customer lock: advisory locks that keep ingestion and period closes of one customer apart.

Ingestion takes them shared, a period close exclusive, both transaction-scoped. Customers hash
into a fixed number of slots, so a batch of 1,000 customers takes at most this many locks, always
in slot order, so the two never wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection

CUSTOMER_LOCK_CLASS = 7301
CUSTOMER_LOCK_SLOTS = 64


def lock_customer_slots(customer_ids: Iterable[str], *, shared: bool) -> None:
    """Take the slots of these customers until the transaction ends (shared or exclusive)."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT {function}(%s, slot)
            FROM (SELECT DISTINCT hashtext(c) %% %s AS slot FROM unnest(%s::text[]) c) slots
            ORDER BY slot
            """,
            [CUSTOMER_LOCK_CLASS, CUSTOMER_LOCK_SLOTS, sorted(set(customer_ids))],
        )
