"""`manage.py demo` as a fresh machine runs it (embedded PostgreSQL, filesystem broker, both in
a data folder of its own): the terminal ends with the login and stays quiet, beat is one process
of its own, and nothing the demo started outlives it, whether it is stopped with Ctrl-C or one
of its processes is killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from billing_site.embedded import stop_embedded_database
from tests.faults.processes import free_port
from tests.utils import ROOT

STARTUP_SECONDS = 120
QUIET_SECONDS = 8  # beat queues the rollup every 5 s; its worker logged each at INFO
STOP_SECONDS = 60

pytestmark = pytest.mark.slow


class Demo:
    """`manage.py demo --no-seed` in a session of its own, its output collected line by line."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL", "LOG_LEVEL")
        }
        env.update(BILLING_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--no-seed", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # as in a terminal: the demo leads its process group
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.started: list[psutil.Process] = []

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, prefix: str) -> int:
        """The index of the first line starting with `prefix`, once printed."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            for index, line in enumerate(list(self.lines)):
                if line.startswith(prefix):
                    return index
            assert self.process.poll() is None, f"the demo exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {prefix!r} line:\n{self.output()}"
            time.sleep(0.1)

    def processes(self) -> list[psutil.Process]:
        """Everything the demo started and that still runs: its descendants, and the embedded
        PostgreSQL (started through pg_ctl, so in a session of its own)."""
        found = psutil.Process(self.process.pid).children(recursive=True)
        postmaster = self.data_dir / "postgres" / "postmaster.pid"
        if postmaster.exists():
            with contextlib.suppress(psutil.NoSuchProcess, ValueError):
                found.append(psutil.Process(int(postmaster.read_text().split()[0])))
        return found

    def remember_processes(self) -> list[psutil.Process]:
        self.started = self.processes()
        return self.started

    def left_behind(self) -> list[str]:
        """What still runs of what the demo started, or of its session, after it ended."""
        left = [p for p in self.started if _alive(p)]
        for pid in psutil.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getsid(pid) == self.process.pid and pid not in {p.pid for p in left}:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        process = psutil.Process(pid)
                        if _alive(process):
                            left.append(process)
        return [" ".join(_command(p)) or str(p.pid) for p in left]

    def wait_for_exit(self) -> int:
        try:
            return self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo did not stop within {STOP_SECONDS} s:\n{self.output()}")

    def clean_up(self) -> None:
        """Whatever the outcome, leave nothing running (the test process's own children only)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=15)
        stop_embedded_database(self.data_dir / "postgres")
        for process in self.started:
            with contextlib.suppress(psutil.NoSuchProcess):
                if _alive(process):
                    process.kill()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _command(process: psutil.Process) -> list[str]:
    with contextlib.suppress(psutil.Error):
        return process.cmdline()
    return []


def _celery_leaders(demo: Demo, role: str) -> list[list[str]]:
    """The command lines of the Celery processes the demo started for `role` ("worker",
    "beat"); pool children and an embedded beat are not the demo's children."""
    commands = [_command(child) for child in psutil.Process(demo.process.pid).children()]
    return [c for c in commands if c[1:3] == ["-m", "celery"] and role in c]


def _queue(command: list[str]) -> str:
    return command[command.index("-Q") + 1] if "-Q" in command else "celery"


@pytest.fixture
def demo(tmp_path):
    run = Demo(tmp_path / "data")
    yield run
    run.clean_up()
    print(f"--- demo output ---\n{run.output()}")
    for log in sorted((tmp_path / "data" / "logs").glob("*.log")):
        print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-3000:]}")


def test_the_demo_ends_with_the_login_stays_quiet_and_ctrl_c_stops_everything(demo):
    files_in_the_project = set(ROOT.iterdir())
    api_line = demo.wait_for_line("API:")
    assert demo.lines[api_line - 1].startswith("Dashboard: "), demo.output()
    assert "login: admin / " in demo.lines[api_line - 1]
    assert f"http://127.0.0.1:{demo.port}/admin/" in demo.lines[api_line - 1]
    started = demo.remember_processes()
    assert any("postgres" in " ".join(_command(p)) for p in started), "no embedded PostgreSQL"

    time.sleep(QUIET_SECONDS)
    assert demo.lines[api_line + 1 :] == [], "printed after the login"
    logs = demo.data_dir / "logs"
    assert {"web.log", "worker.log", "webhooks-worker.log", "beat.log"} <= {
        p.name for p in logs.iterdir()
    }
    assert " INFO" not in (logs / "worker.log").read_text()

    os.killpg(demo.process.pid, signal.SIGINT)  # Ctrl-C: the terminal's foreground group
    assert demo.wait_for_exit() == 0, demo.output()
    assert demo.left_behind() == []
    # It kept its files in its data folder (no beat schedule or broker folder beside manage.py).
    assert set(ROOT.iterdir()) - files_in_the_project == set()


def test_beat_is_one_process_and_a_killed_worker_leaves_nothing_behind(demo):
    demo.wait_for_line("API:")
    demo.remember_processes()
    assert len(_celery_leaders(demo, "beat")) == 1
    workers = _celery_leaders(demo, "worker")
    assert sorted(_queue(c) for c in workers) == ["celery", "webhooks"], workers
    assert not any("-B" in command or "--beat" in command for command in workers), workers
    [worker] = [
        child
        for child in psutil.Process(demo.process.pid).children()
        if "worker" in _command(child) and _queue(_command(child)) == "celery"
    ]

    os.kill(worker.pid, signal.SIGKILL)  # the worker alone, as the OOM killer would

    assert demo.wait_for_exit() != 0
    assert "The worker process ended" in demo.output()
    assert demo.left_behind() == []  # no beat queueing tasks on its own, nothing else
