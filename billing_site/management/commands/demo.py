"""`manage.py demo`: migrate, print a staff login, load demo data, then serve with Celery beside it.

This is what the README's first command runs. It supervises gunicorn and a Celery worker with beat
and stops both on Ctrl-C.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the demo: migrate, staff login, demo data, web server, Celery worker and beat."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--no-seed", action="store_true", help="Skip loading demo data.")

    def handle(self, *args, host: str, port: int, workers: int, no_seed: bool, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        username, password = self._staff_login()
        if not no_seed:
            call_command("seed_demo")
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "billing_site.wsgi",
                    "--bind",
                    f"{host}:{port}",
                    "--workers",
                    str(workers),
                    "--access-logfile",
                    "-",
                ]
            ),
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "billing_site",
                    "worker",
                    "-B",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    "2",
                ]
            ),
        ]
        self.stdout.write(
            self.style.SUCCESS(
                f"\nDashboard: http://{host}:{port}/admin/  login: {username} / {password}\n"
                f"API:       http://{host}:{port}/api/  (docs at /api/docs; "
                "create a key with `python manage.py create_api_key NAME`)\n"
            )
        )
        self._wait(processes)

    def _staff_login(self) -> tuple[str, str]:
        """A fresh password on every run, printed, so a demo login never needs to be remembered."""
        user_model = get_user_model()
        password = secrets.token_urlsafe(9)
        user, _ = user_model.objects.get_or_create(username="admin")
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return user.username, password

    def _wait(self, processes: list[subprocess.Popen]) -> None:
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.5)
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait(timeout=30)
