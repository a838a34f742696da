"""Exactly one successful charge per invoice, counted in the fake Stripe's own records: when the
provider's answer is lost, when the worker is SIGKILLed right after its PaymentIntent call, and
when two billing workers and two payment workers run at once.

localstripe ignores Idempotency-Key headers (real Stripe would answer a resent key with the
first PaymentIntent), so these tests prove the look-up our worker makes before charging an
attempt whose earlier claim may have reached Stripe (`stripe_provider.find_charge`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
from django.test import override_settings

from products import payments
from products.models import Invoice, InvoiceStatus, Payment, PaymentStatus
from tests.faults.processes import database_url, wait_for_sessions_to_end
from tests.faults.proxy import CuttableProxy
from tests.payments.conftest import stripe_environment
from tests.payments.helpers import (
    START,
    WEEK,
    close_first_week,
    expected_total,
    save_card,
    weekly_subscription,
)
from tests.utils import ROOT

# In the body of the PaymentIntent call only: its headers may arrive in a packet of their own,
# and a cut right after them would lose the body, so nothing would be charged.
CHARGE_REQUEST = b"off_session=true"
DUE = START + WEEK


@pytest.fixture
def proxy(localstripe_url):
    address = urlsplit(localstripe_url)
    proxy = CuttableProxy((address.hostname, address.port))
    yield proxy
    proxy.stop()


def _manage(*args: str, api_base: str, name: str) -> subprocess.Popen:
    env = {
        **os.environ,
        **stripe_environment(api_base),
        "DATABASE_URL": database_url(application_name=name),
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_a_lost_answer_is_looked_up_and_never_charged_twice(fake_stripe, proxy):
    subscription = weekly_subscription()
    save_card(fake_stripe, subscription)
    invoice = close_first_week(subscription)

    cut = proxy.cut_at(CHARGE_REQUEST, deliver=True)
    with override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{proxy.port}"):
        payments.collect_due(now=DUE)
    assert cut.is_set()
    proxy.restore()
    [charged] = fake_stripe.succeeded_charges_of(invoice.invoice_id)  # it did charge
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.PROCESSING  # the outcome is unknown here
    assert Invoice.objects.get().status == InvoiceStatus.ISSUED

    assert payments.collect_due(now=DUE + payments.lease() / 2) == 0  # still leased
    assert payments.collect_due(now=DUE + payments.lease()) == 1

    payment.refresh_from_db()
    assert (payment.status, payment.provider_payment_id) == ("succeeded", charged["id"])
    assert Invoice.objects.get().status == InvoiceStatus.PAID
    assert len(fake_stripe.succeeded_charges_of(invoice.invoice_id)) == 1
    assert len(fake_stripe.payment_intents()) == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_after_its_payment_intent_call_charges_once(fake_stripe, proxy):
    subscription = weekly_subscription()
    save_card(fake_stripe, subscription)
    invoice = close_first_week(subscription)

    sent = proxy.mute_at(CHARGE_REQUEST)
    worker = _manage(
        "collect_payments",
        "--as-of",
        DUE.isoformat(),
        api_base=f"http://127.0.0.1:{proxy.port}",
        name="payments-killed",
    )
    try:
        _wait_for(sent.is_set, "the worker's PaymentIntent call")
        _wait_for(lambda: fake_stripe.succeeded_charges_of(invoice.invoice_id), "the fake's charge")
        assert worker.poll() is None, worker.stdout and worker.stdout.read()
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=15)
    assert wait_for_sessions_to_end("payments-killed")
    assert Payment.objects.get().status == PaymentStatus.PROCESSING

    assert payments.collect_due(now=DUE) == 0  # the dead worker's lease still holds
    assert payments.collect_due(now=DUE + payments.lease()) == 1

    assert Invoice.objects.get().status == InvoiceStatus.PAID
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert len(fake_stripe.succeeded_charges_of(invoice.invoice_id)) == 1
    assert len(fake_stripe.payment_intents()) == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_billing_workers_and_two_payment_workers_charge_each_invoice_once(
    fake_stripe, localstripe_url
):
    subscriptions = [weekly_subscription(email=f"c{n}@example.com") for n in range(20)]
    for subscription in subscriptions:
        save_card(fake_stripe, subscription)

    for command in ("bill", "collect_payments"):
        workers = [
            _manage(command, "--as-of", DUE.isoformat(), api_base=localstripe_url, name=f"w{n}")
            for n in range(2)
        ]
        for worker in workers:
            output, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0, output

    invoices = list(Invoice.objects.all())
    assert len(invoices) == len(subscriptions)
    for invoice in invoices:
        assert invoice.status == InvoiceStatus.PAID
        [payment] = Payment.objects.filter(invoice=invoice)
        [charged] = fake_stripe.succeeded_charges_of(invoice.invoice_id)
        assert charged["id"] == payment.provider_payment_id
        assert charged["amount"] == expected_total()
    assert len(fake_stripe.payment_intents()) == len(subscriptions)
