"""`manage.py demo`: migrate, a staff login, demo data, then the web server, the Celery workers
and beat, each a process of its own, supervised here.

This is what the README's first command runs. Beat is its own process, not embedded in a worker
(`worker -B`): a worker killed with SIGKILL left its embedded beat running as an orphan, and a
restarted worker then made two. Webhooks have a worker of their own (the `webhooks` queue), so a
slow receiver never holds up billing. Their logs go to BILLING_DATA_DIR/logs/ (Celery at
WARNING), so the login and the URLs are the last lines in the terminal. Ctrl-C, or any of the
processes ending, stops all of them, and the embedded PostgreSQL when the demo runs on it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from billing_site.embedded import stop_embedded_database

STARTUP_SECONDS = 120  # a fresh machine's first start compiles and migrates
STOP_SECONDS = 30  # a worker finishes its current task on SIGTERM


@dataclass
class Part:
    """One supervised process: its command and its log file."""

    name: str
    command: list[str]
    log: Path
    process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.returncode


def _die_with_the_demo() -> None:
    """In the child: get SIGTERM if the demo itself dies (Linux), so nothing outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Command(BaseCommand):
    help = "Run the demo: migrate, staff login, demo data, web server, Celery workers and beat."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--no-seed", action="store_true", help="Skip loading demo data.")

    def handle(self, *args, host: str, port: int, workers: int, no_seed: bool, **options):
        # Ctrl-C, or SIGTERM, raises KeyboardInterrupt here, even where SIGINT was inherited
        # ignored (started in the background by a script).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        parts: list[Part] = []
        ended: Part | None = None
        try:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
            username, password = self._staff_login()
            if not no_seed:
                call_command("seed_demo")
            connections.close_all()  # the children open their own
            logs = settings.DATA_DIR / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            parts = self._parts(host, port, workers, logs)
            for part in parts:
                part.process = self._start(part)
            base_url = f"http://{host}:{port}"
            ended = self._wait_until_serving(base_url, parts)
            if ended is None:
                self.stdout.write(
                    f"\nLogs:      {logs}/ (web, worker, webhooks-worker, beat)\n"
                    + self.style.SUCCESS(
                        f"Dashboard: {base_url}/admin/  login: {username} / {password}\n"
                        f"API:       {base_url}/api/  (docs at /api/docs; "
                        "create a key with `python manage.py create_api_key NAME`)"
                    )
                )
                self.stdout.flush()
                ended = self._supervise(parts)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop(parts)
            connections.close_all()
            if settings.EMBEDDED_DATABASE_DIR is not None:
                stop_embedded_database(settings.EMBEDDED_DATABASE_DIR)
        if ended is not None:
            raise CommandError(
                f"The {ended.name} process ended (exit code {ended.exit_code}), so the "
                f"demo stopped. Its log: {ended.log}"
            )

    def _staff_login(self) -> tuple[str, str]:
        """A fresh password on every run, printed, so a demo login never needs to be remembered."""
        user_model = get_user_model()
        password = secrets.token_urlsafe(9)
        user, _ = user_model.objects.get_or_create(username="admin")
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return user.username, password

    def _parts(self, host: str, port: int, workers: int, logs: Path) -> list[Part]:
        celery = [sys.executable, "-m", "celery", "-A", "billing_site"]
        quiet = ["--loglevel", "WARNING"]
        return [
            Part(
                "web",
                [
                    *[sys.executable, "-m", "gunicorn", "billing_site.wsgi"],
                    *["--bind", f"{host}:{port}", "--workers", str(workers)],
                    *["--access-logfile", "-", "--log-level", "warning"],
                ],
                logs / "web.log",
            ),
            Part(
                "worker",
                [*celery, "worker", "-Q", "celery", "-n", "demo@%h", "-c", "2", *quiet],
                logs / "worker.log",
            ),
            Part(
                "webhooks worker",
                [*celery, "worker", "-Q", "webhooks", "-n", "demo-webhooks@%h", "-c", "2", *quiet],
                logs / "webhooks-worker.log",
            ),
            Part(
                "beat",
                [
                    *[*celery, "beat", *quiet],
                    *["--schedule", str(settings.DATA_DIR / "celerybeat-schedule")],
                    *["--pidfile", str(settings.DATA_DIR / "celerybeat.pid")],
                ],
                logs / "beat.log",
            ),
        ]

    def _start(self, part: Part) -> subprocess.Popen:
        """In a process group of its own, so that stopping it stops all it started (a worker's
        pool, gunicorn's workers), and so that Ctrl-C reaches only the demo, which stops the
        parts in order."""
        with part.log.open("ab") as log:
            return subprocess.Popen(
                part.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                process_group=0,
                preexec_fn=_die_with_the_demo,
            )

    def _wait_until_serving(self, base_url: str, parts: list[Part]) -> Part | None:
        """Wait until the web server answers; the part that ended meanwhile, if one did."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while (ended := self._ended(parts)) is None:
            try:
                with urllib.request.urlopen(f"{base_url}/admin/login/", timeout=2):
                    return None
            except urllib.error.HTTPError:
                return None  # it answered
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise CommandError(
                    f"The web server did not answer within {STARTUP_SECONDS} s; see {parts[0].log}."
                )
            time.sleep(0.2)
        return ended

    def _supervise(self, parts: list[Part]) -> Part:
        """Until Ctrl-C (KeyboardInterrupt), or a part ends: then that part."""
        while (ended := self._ended(parts)) is None:
            time.sleep(0.5)
        return ended

    def _ended(self, parts: list[Part]) -> Part | None:
        return next((part for part in parts if not part.running), None)

    def _stop(self, parts: list[Part]) -> None:
        """SIGTERM to each part (a worker finishes its task, gunicorn its requests), then, after
        STOP_SECONDS or a second Ctrl-C, SIGKILL to each part's whole process group: what a part
        whose leader was killed left behind (a worker's pool) goes too."""
        hurry: list[int] = []
        signal.signal(signal.SIGINT, lambda *_: hurry.append(1))
        signal.signal(signal.SIGTERM, lambda *_: hurry.append(1))
        started = [part.process for part in parts if part.process is not None]
        for process in started:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        while any(process.poll() is None for process in started) and not hurry:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for process in started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
