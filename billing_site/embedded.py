"""Embedded services for a machine with nothing installed but Python.

With no DATABASE_URL the project runs its own PostgreSQL (from the `pgserver` wheel) in a data
folder, and with no REDIS_URL Celery uses kombu's filesystem transport: no system packages needed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path

DATABASE_NAME = "billing"


def _pgserver():
    # platformdirs warns, when pgserver imports it, where XDG_RUNTIME_DIR is unset (root in a
    # container); the folder it falls back to works.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import pgserver

    return pgserver


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir` and return a URL to its database.

    The server keeps running after this process exits so that the web server, the Celery worker and
    management commands all share it; `pgserver` reuses a running server on the same folder. The
    demo stops it when it ends (`stop_embedded_database`); the next command starts it again.
    """
    import psycopg

    pgserver = _pgserver()

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


def stop_embedded_database(data_dir: Path) -> None:
    """Stop the embedded PostgreSQL in `data_dir` if it is running (fast: open sessions end)."""
    pgserver = _pgserver()
    from pgserver.utils import PostmasterInfo

    data_dir = data_dir.expanduser().resolve()
    postmaster = PostmasterInfo.read_from_pgdata(data_dir)
    if postmaster is None or not postmaster.is_running():
        return
    # pgserver runs the server as its own user when started by root, and so must pg_ctl.
    user = "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    try:
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user)
    except subprocess.CalledProcessError as failure:
        logging.getLogger(__name__).warning("could not stop the embedded PostgreSQL: %s", failure)


def filesystem_broker_options(data_dir: Path) -> dict:
    """Kombu filesystem transport folders, so Celery works with no broker server (all of them:
    the control folder, for broadcast exchanges, is otherwise made in the current folder)."""
    folders = {name: data_dir / name for name in ("in", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folders["in"]),
        "data_folder_out": str(folders["in"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
    }


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}
