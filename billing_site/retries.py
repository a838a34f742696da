"""Retrying a transaction that PostgreSQL aborted to resolve a deadlock or serialization failure.

Both are expected under concurrency (two workers, two ingest batches sharing ids): PostgreSQL
aborts one side and the other proceeds, so the aborted one simply runs again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError

T = TypeVar("T")

RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def is_retryable(exc: OperationalError) -> bool:
    """Whether PostgreSQL aborted this transaction only to let a concurrent one through."""
    return getattr(exc.__cause__, "sqlstate", None) in RETRYABLE_SQLSTATES


def with_retries(work: Callable[[], T], *, attempts: int, backoff_seconds: float) -> T:
    """Run `work` (a whole transaction) again after a deadlock or serialization failure, waiting
    a little longer each time; any other error, or the last failure, is raised."""
    for attempt in range(attempts):
        try:
            return work()
        except OperationalError as exc:
            if not is_retryable(exc) or attempt == attempts - 1:
                raise
            time.sleep(backoff_seconds * (attempt + 1))
    raise AssertionError("unreachable")
