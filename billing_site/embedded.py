"""Embedded services for a machine with nothing installed but Python.

With no DATABASE_URL the project runs its own PostgreSQL (from the `pgserver` wheel) in a data
folder, and with no REDIS_URL Celery uses kombu's filesystem transport: no system packages needed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

DATABASE_NAME = "billing"


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir` and return a URL to its database.

    The server keeps running after this process exits so that the web server, the Celery worker and
    management commands all share it; `pgserver` reuses a running server on the same folder.
    """
    import pgserver
    import psycopg

    # pgserver logs from an atexit hook, after pytest or a command has closed its streams.
    logging.getLogger("pgserver").setLevel(logging.WARNING)

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    return server.get_uri(DATABASE_NAME)


def filesystem_broker_options(data_dir: Path) -> dict:
    """Kombu filesystem transport folders, so Celery works with no broker server."""
    folders = {name: data_dir / name for name in ("in", "processed")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folders["in"]),
        "data_folder_out": str(folders["in"]),
        "processed_folder": str(folders["processed"]),
        "store_processed": False,
    }


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}
