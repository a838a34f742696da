"""Concurrent, overlapping batches over real HTTP: no deadlock, no double count, nothing lost."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from events.models import Event

THREADS = 8
BATCHES_PER_THREAD = 6
BATCH_SIZE = 200
ID_POOL = 2500


@pytest.mark.django_db(transaction=True)
def test_overlapping_batches_from_eight_threads(live_server, live_api_key):
    url = f"{live_server.url}/api/events/ingest"
    headers = {"Authorization": f"Bearer {live_api_key}"}

    def batches(thread: int):
        rng = random.Random(thread)
        for _ in range(BATCHES_PER_THREAD):
            ids = rng.sample(range(ID_POOL), BATCH_SIZE)  # distinct within a batch
            yield [
                {"event_id": f"ev-{i:05d}", "customer_id": f"c{i % 7}", "event_name": "n"}
                for i in ids
            ]

    def run(thread: int) -> tuple[int, set[str]]:
        counted, sent = 0, set()
        with httpx.Client(timeout=60) as client:
            for batch in batches(thread):
                response = client.post(url, json={"events": batch}, headers=headers)
                assert response.status_code == 200, response.text
                counted += response.json()["ingested_count"]
                sent |= {e["event_id"] for e in batch}
        return counted, sent

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(run, range(THREADS)))

    distinct_sent = set().union(*(sent for _, sent in results))
    stored = list(Event.objects.values_list("event_id", flat=True))
    assert len(stored) == len(set(stored))
    assert set(stored) == distinct_sent
    assert sum(counted for counted, _ in results) == len(distinct_sent)
