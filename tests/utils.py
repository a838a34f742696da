"""Helpers for tests that start other processes against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """A DATABASE_URL for the database this test run uses (pytest-django's test database)."""
    settings = connection.settings_dict
    host = settings["HOST"] or ""
    user = settings["USER"] or "postgres"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    if host.startswith("/"):  # a unix socket (the embedded server)
        return f"postgresql://{user}{password}@/{settings['NAME']}?host={host}"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"postgresql://{user}{password}@{host}{port}/{settings['NAME']}"


def manage_py(*args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    """Start `manage.py` with the test database, as an operator would run it."""
    environment = {**os.environ, "DATABASE_URL": test_database_url(), **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=environment,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )
