"""A webhook receiver that never finishes answering holds the webhooks worker, and only it: real
Celery workers, one per queue as in production, and the billing cycle runs meanwhile.

The broker is kombu's filesystem transport in this test's folder (no shared Redis), and the
tasks are sent to the queue the project's task routes name, as `send_task` and beat do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from django.utils import timezone

from billing_site.celery import app as celery_app
from billing_site.embedded import filesystem_broker_options
from products.models import Invoice
from tests.faults.processes import database_url, stop, wait_for_sessions_to_end
from tests.products.factories import make_product, subscribe
from tests.utils import ROOT
from tests.webhooks.factories import make_endpoint
from tests.webhooks.receivers import ENDLESS_BODY, DripReceiver
from webhooks.models import Delivery, DeliveryAttempt, WebhookEvent

WAIT_SECONDS = 60  # for a worker to start and take its task; the deadline is longer still


def start_worker(queue: str, data_dir: Path, log_path: Path) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(
        DATABASE_URL=database_url(application_name=f"slow-receiver-{queue}"),
        BILLING_DATA_DIR=str(data_dir),  # the filesystem broker in data_dir/broker
        WEBHOOK_ALLOW_HTTP="true",
        WEBHOOK_ALLOWED_PRIVATE_NETWORKS="127.0.0.1/32",
        WEBHOOK_TIMEOUT_SECONDS="300",  # the attempt outlasts the test
        PYTHONUNBUFFERED="1",
    )
    command = [sys.executable, "-m", "celery", "-A", "billing_site", "worker", "-Q", queue]
    command += ["-n", f"{queue}@%h", "-c", "1", "--without-mingle", "--without-gossip"]
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [*command, "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(condition, what: str, workers: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert all(w.poll() is None for w in workers), f"a worker exited while waiting for {what}"
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_SECONDS} s"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_billing_runs_while_a_slow_receiver_holds_the_webhooks_worker(tmp_path):
    now = timezone.now()
    receiver = DripReceiver(ENDLESS_BODY)
    event = WebhookEvent.objects.create(event_type="invoice.created", body='{"type":"x"}')
    delivery = Delivery.objects.create(
        event=event, endpoint=make_endpoint(receiver.url), next_attempt_at=now
    )
    daily = make_product([], now=now - timedelta(days=3), fixed_price=100, interval="Day")
    subscription = subscribe(daily, now=now - timedelta(days=2))  # a period to close

    data_dir = tmp_path / "data"
    client = Celery("slow-receiver", broker="filesystem://", set_as_current=False)
    client.conf.broker_transport_options = filesystem_broker_options(data_dir / "broker")

    def send(task_name: str, *args) -> None:
        queue = celery_app.amqp.router.route({}, task_name)["queue"].name
        client.send_task(task_name, args=list(args), queue=queue)

    logs = {queue: tmp_path / f"{queue}.log" for queue in ("celery", "webhooks")}
    workers = [start_worker(queue, data_dir, log) for queue, log in logs.items()]
    try:
        send("webhooks.deliver", delivery.pk)
        wait_for(lambda: receiver.requests == 1, "the webhook request", workers)

        send("products.bill")
        wait_for(
            lambda: Invoice.objects.filter(subscription=subscription).exists(),
            "the invoice",
            workers,
        )
        assert receiver.requests == 1
        assert not DeliveryAttempt.objects.exists(), "the webhook attempt was meant to be running"
    finally:
        receiver.stop()  # the attempt ends (the connection closes), so the workers can stop
        for worker in workers:
            stop(worker)  # SIGTERM, then SIGKILL after 15 s
        for queue in logs:
            wait_for_sessions_to_end(f"slow-receiver-{queue}")
        client.close()
        for queue, log in logs.items():
            print(f"--- {queue} worker ---\n{log.read_text(errors='replace')[-4000:]}")
