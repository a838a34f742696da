"""A real HTTP receiver on 127.0.0.1 that records what it is sent, and Celery run in-process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from billing_site.celery import app as celery_app
from billing_site.jsonutil import exact_loads


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str

    def verified(self, secret: str) -> dict:
        """The body, after checking its signature as a receiver would; numbers stay exact."""
        Webhook(secret).verify(self.body, self.headers)
        return exact_loads(self.body)


@dataclass
class Receiver:
    """Answers each POST with the next queued status code (200 once the queue is empty)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    answer_body: bytes = b"ok"
    delay_seconds: float = 0.0

    def bodies(self, secret: str) -> list[dict]:
        return [request.verified(secret) for request in self.requests]

    def of_type(self, secret: str, event_type: str) -> list[dict]:
        return [body for body in self.bodies(secret) if body["type"] == event_type]


@pytest.fixture
def receiver():
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            with lock:
                headers = {name.lower(): value for name, value in self.headers.items()}
                state.requests.append(Received(self.path, headers, body))
                status = state.statuses.pop(0) if state.statuses else 200
            if state.delay_seconds:
                time.sleep(state.delay_seconds)
            self.send_response(status)
            self.send_header("Content-Length", str(len(state.answer_body)))
            self.end_headers()
            self.wfile.write(state.answer_body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def local_receivers_allowed(settings):
    """The receivers here listen on http://127.0.0.1, which production refuses."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.1/32"]


@pytest.fixture(autouse=True)
def celery_eager(monkeypatch):
    """Queued tasks run at once in this process (and their errors fail the test). Tasks sent by
    name go through the task routes first, as on the way to the broker; `sent` lists each
    (name, queue)."""
    saved = celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates
    celery_app.conf.task_always_eager = celery_app.conf.task_eager_propagates = True
    celery_app.loader.import_default_modules()  # the tasks modules, as a worker imports them
    sent: list[tuple[str, str]] = []

    def send_task(name, args=None, kwargs=None, **options):
        route = celery_app.amqp.router.route(options, name, args, kwargs)
        sent.append((name, route["queue"].name))
        return celery_app.tasks[name].apply(args=args, kwargs=kwargs, throw=True)

    monkeypatch.setattr(celery_app, "send_task", send_task)
    yield sent
    celery_app.conf.task_always_eager, celery_app.conf.task_eager_propagates = saved
