"""Celery workers for the fault tests: one to kill mid-way, one to finish the work."""

from __future__ import annotations

import pytest

from tests.faults.processes import Worker, redis_or_skip


@pytest.fixture
def workers(tmp_path):
    """Two workers, each on a queue of its own, started before the test makes its data so that
    their start-up overlaps it: the first is to be killed, the second finishes."""
    redis_or_skip()
    first, second = Worker(tmp_path, "first-worker"), Worker(tmp_path, "second-worker")
    first.start()
    second.start()
    try:
        yield first, second
    finally:
        first.kill()
        second.kill()
        # Before pytest-django empties (and later drops) the database they use.
        first.sessions_ended()
        second.sessions_ended()
        first.forget_queue()
        second.forget_queue()
        # Shown by pytest only when the test fails.
        print(f"--- first worker ---\n{first.log()}\n--- second worker ---\n{second.log()}")
