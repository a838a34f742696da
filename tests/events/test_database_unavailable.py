"""With the database unreachable, the API answers 503 with Retry-After and acknowledges nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.utils import ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server_without_database():
    """The production server (gunicorn) pointed at a port where no PostgreSQL listens."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{_free_port()}/billing",
        "DB_CONNECT_TIMEOUT": "2",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "billing_site.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{url}/api/schema", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_ingest_answers_503_with_retry_after_when_the_database_is_down(server_without_database):
    body = {"events": [{"event_id": "e1", "customer_id": "c", "event_name": "n"}]}
    response = httpx.post(
        f"{server_without_database}/api/events/ingest",
        json=body,
        headers={"Authorization": "Bearer ubk_anything"},
        timeout=30,
    )
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert "Traceback" not in response.text
