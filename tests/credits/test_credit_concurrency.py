"""Deduction and ledger entries under repetition and concurrency: usage is deducted once, an
idempotency key makes one entry however many requests race, and concurrent debits never take a
balance below zero."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from credits import deduction
from credits.deduction import run_deductions
from credits.models import CreditBalance, CreditGrant, LedgerEntry, TransactionType, UsageDeduction
from products import services as product_services
from products.billing import run_billing_cycle
from tests.credits.factories import make_entitlement
from tests.factories import make_customer
from tests.products.factories import make_meter, send_usage
from tests.utils import manage_py

START = datetime(2026, 6, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
HOUR = timedelta(hours=1)


def two_entitlement_plan(*, now: datetime, subscriptions: int):
    """Calls billed in one entitlement (5 free, 2 calls per credit), jobs in another
    (2 credits per job) and reports in the first one too (1 per credit), 100 credits each."""
    api_credits = make_entitlement(now=now, name="API credits", precision=2)
    job_credits = make_entitlement(now=now, name="Job credits", precision=1)
    calls = make_meter("Calls", "api.call", now=now)
    jobs = make_meter("Jobs", "job.run", now=now)
    reports = make_meter("Reports", "report.run", now=now)
    product = product_services.create_product(
        name="Two credits",
        now=now,
        credit_entitlements=[
            {"credit_entitlement_id": api_credits.id, "credits_amount": "100"},
            {"credit_entitlement_id": job_credits.id, "credits_amount": "100"},
        ],
        price={
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 0,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Week",
            "meters": [
                {
                    "meter_id": calls.id,
                    "credit_entitlement_id": api_credits.id,
                    "meter_units_per_credit": "2",
                    "free_threshold": 5,
                },
                {
                    "meter_id": jobs.id,
                    "credit_entitlement_id": job_credits.id,
                    "meter_units_per_credit": "0.5",
                    "free_threshold": 0,
                },
                {
                    "meter_id": reports.id,
                    "credit_entitlement_id": api_credits.id,
                    "meter_units_per_credit": "1",
                    "free_threshold": 0,
                },
            ],
        },
    )
    subs = [
        product_services.create_subscription(
            customer=make_customer(email=f"c{n}@example.com"), product=product, now=now
        )
        for n in range(subscriptions)
    ]
    return api_credits, job_credits, subs


def send_round(subs, *, start: datetime, calls: int, jobs: int, reports: int, tag: str) -> None:
    for n, sub in enumerate(subs):
        send_usage(sub, "api.call", [{}] * (calls + n), start=start, prefix=f"{tag}c{n}")
        send_usage(sub, "job.run", [{}] * (jobs + n), start=start, prefix=f"{tag}j{n}")
        send_usage(sub, "report.run", [{}] * reports, start=start, prefix=f"{tag}r{n}")


def expected_balances(n: int, *, calls: int, jobs: int, reports: int) -> tuple[Decimal, Decimal]:
    """Subscription n after usage of calls + n, jobs + n, reports: 100 credits each, minus
    (calls + n - 5) / 2 + reports API credits and (jobs + n) / 0.5 job credits."""
    api = Decimal(100) - Decimal(calls + n - 5) / 2 - reports
    job = Decimal(100) - Decimal(jobs + n) * 2
    return api, job


def snapshot() -> dict:
    """Everything deduction may write, to compare one run with several."""
    return {
        "balances": sorted(
            CreditBalance.objects.values_list(
                "credit_entitlement_id", "customer_id", "balance", "overage"
            )
        ),
        "entries": sorted(
            LedgerEntry.objects.values_list(
                "balance__customer_id", "transaction_type", "amount", "balance_after"
            )
        ),
        "checkpoints": sorted(
            UsageDeduction.objects.values_list(
                "subscription_id", "meter_id", "period_index", "credits_deducted"
            )
        ),
    }


def assert_ledger_consistent() -> None:
    for balance in CreditBalance.objects.all():
        entries = balance.entries.all()
        assert balance.balance == sum((e.balance_change for e in entries), Decimal(0))
        assert balance.overage == sum((e.overage_change for e in entries), Decimal(0))
        live = CreditGrant.objects.filter(balance=balance, is_expired=False)
        assert balance.balance == sum((g.remaining_amount for g in live), Decimal(0))
        assert balance.balance >= 0


def assert_expected(api_credits, job_credits, subs, **usage) -> None:
    for n, sub in enumerate(subs):
        api, job = expected_balances(n, **usage)
        got_api = CreditBalance.objects.get(credit_entitlement=api_credits, customer=sub.customer)
        got_job = CreditBalance.objects.get(credit_entitlement=job_credits, customer=sub.customer)
        assert (got_api.balance, got_job.balance) == (api, job), n
        deducted = LedgerEntry.objects.filter(
            balance__customer=sub.customer, transaction_type=TransactionType.CREDIT_DEDUCTED
        )
        total = sum((e.amount for e in deducted), Decimal(0))
        assert total == (100 - api) + (100 - job)
    assert not LedgerEntry.objects.filter(transaction_type=TransactionType.REFUND).exists()
    assert_ledger_consistent()


def in_threads(count: int, work: Callable[[int], object]) -> list:
    """Run `work(i)` on `count` threads released together; each closes its connection."""
    barrier = threading.Barrier(count)

    def run(i: int):
        try:
            barrier.wait(timeout=30)
            return work(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


# --- deduction, repeated and concurrent ---------------------------------------------------------


@pytest.mark.django_db
def test_running_deduction_twice_deducts_once():
    api_credits, job_credits, subs = two_entitlement_plan(now=START, subscriptions=3)
    usage = {"calls": 25, "jobs": 7, "reports": 4}
    send_round(subs, start=START + HOUR, tag="a", **usage)
    at = START + 2 * HOUR

    run_deductions(now=at)
    once = snapshot()
    run_deductions(now=at)
    run_deductions(now=at + timedelta(minutes=1))  # later, but no new usage
    assert snapshot() == once
    assert_expected(api_credits, job_credits, subs, **usage)


@pytest.mark.django_db(transaction=True)
def test_two_workers_deducting_at_once_deduct_once():
    api_credits, job_credits, subs = two_entitlement_plan(now=START, subscriptions=6)
    for round_ in range(4):
        start = START + HOUR * (1 + 2 * round_)
        usage = {"calls": 9, "jobs": 3, "reports": 2}
        send_round(subs, start=start, tag=f"r{round_}", **usage)
        at = start + HOUR
        in_threads(2, lambda _, at=at: run_deductions(now=at))
        # so far subscription n sent (rounds x (9 + n)) calls, of which 5 are free,
        # (rounds x (3 + n)) jobs and (rounds x 2) reports
        for n, sub in enumerate(subs):
            api = Decimal(100) - Decimal((round_ + 1) * (9 + n) - 5) / 2 - (round_ + 1) * 2
            job = Decimal(100) - Decimal((round_ + 1) * (3 + n)) * 2
            got = {
                b.credit_entitlement_id: b.balance
                for b in CreditBalance.objects.filter(customer=sub.customer)
            }
            assert got == {api_credits.id: api, job_credits.id: job}, (round_, n)
    assert not LedgerEntry.objects.filter(transaction_type=TransactionType.REFUND).exists()
    assert_ledger_consistent()


@pytest.mark.django_db(transaction=True)
def test_two_deduct_credits_processes_at_once_deduct_once():
    start = timezone.now() - timedelta(days=1)
    api_credits, job_credits, subs = two_entitlement_plan(now=start, subscriptions=8)
    usage = {"calls": 30, "jobs": 10, "reports": 3}
    send_round(subs, start=start + HOUR, tag="p", **usage)

    runs = [manage_py("deduct_credits") for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    assert_expected(api_credits, job_credits, subs, **usage)
    once = snapshot()

    again = manage_py("deduct_credits")
    assert again.wait(timeout=120) == 0
    assert snapshot() == once


@pytest.mark.django_db
def test_a_worker_with_an_older_clock_gives_nothing_back():
    """Two workers read the clock, the later one deducts first: the slower one must not undo
    part of that deduction as if usage had gone down."""
    api_credits, job_credits, subs = two_entitlement_plan(now=START, subscriptions=1)
    usage = {"calls": 25, "jobs": 7, "reports": 4}
    send_round(subs, start=START + HOUR, tag="a", **usage)
    run_deductions(now=START + 3 * HOUR)
    once = snapshot()
    run_deductions(now=START + HOUR + timedelta(seconds=10))  # read the clock earlier
    assert snapshot() == once
    assert_expected(api_credits, job_credits, subs, **usage)


def race_cycle_and_deductions(subs, close_at: datetime) -> int:
    """One thread closes the period while two others keep deducting; returns invoices issued."""

    def work(i: int):
        if i == 0:
            return len(run_billing_cycle(now=close_at))
        for _ in range(3):
            run_deductions(now=close_at - timedelta(seconds=i))
        return None

    return in_threads(3, work)[0]


def assert_closed_once(api_credits, job_credits, subs, usage) -> None:
    """Period 0 deducted in full, once; period 1 holds its fresh 100 credits of each."""
    for n, sub in enumerate(subs):
        api, job = expected_balances(n, **usage)
        got = {
            b.credit_entitlement_id: b.balance
            for b in CreditBalance.objects.filter(customer=sub.customer)
        }
        assert got == {api_credits.id: api + 100, job_credits.id: job + 100}, n
        [invoice] = sub.invoices.all()
        applied = invoice.lines.filter(kind="usage").values_list("credits_applied", flat=True)
        assert sum(applied, Decimal(0)) == (100 - api) + (100 - job)
    assert not LedgerEntry.objects.filter(transaction_type=TransactionType.REFUND).exists()
    assert_ledger_consistent()


@pytest.mark.django_db(transaction=True)
def test_a_deduction_racing_the_period_close_gives_nothing_back(monkeypatch):
    """A deduction run reads the open period, then the billing cycle closes it: the run must
    not hand back credits for usage the invoice already counted."""
    api_credits, job_credits, subs = two_entitlement_plan(now=START, subscriptions=1)
    send_round(subs, start=START + HOUR, tag="a", calls=25, jobs=7, reports=4)
    # six more calls in the period's last 30 seconds, after the slow worker's clock
    send_usage(
        subs[0], "api.call", [{}] * 6, start=START + WEEK - timedelta(seconds=30), prefix="z"
    )
    real_checkpoint = deduction._checkpoint
    reached, release = threading.Event(), threading.Event()

    def slow_checkpoint(*args, **kwargs):
        if threading.current_thread().name == "slow-worker":
            reached.set()
            release.wait(timeout=30)
        return real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(deduction, "_checkpoint", slow_checkpoint)

    def slow_worker():
        try:
            run_deductions(now=START + WEEK - timedelta(minutes=1))  # just before the end
        finally:
            connection.close()

    worker = threading.Thread(target=slow_worker, name="slow-worker")
    worker.start()
    assert reached.wait(timeout=30)
    [invoice] = run_billing_cycle(now=START + WEEK)
    release.set()
    worker.join(timeout=60)

    assert invoice.subscription_id == subs[0].subscription_id
    assert_closed_once(api_credits, job_credits, subs, {"calls": 31, "jobs": 7, "reports": 4})


@pytest.mark.django_db(transaction=True)
def test_deduction_running_while_the_cycle_closes_periods_does_not_deadlock():
    """Workers deducting while another closes the period: they lock checkpoints and the
    balances of two entitlements shared by three meters; nothing fails, nothing is deducted
    twice, and the close still bills every subscription."""
    api_credits, job_credits, subs = two_entitlement_plan(now=START, subscriptions=8)
    send_round(subs, start=START + HOUR, tag="a", calls=10, jobs=2, reports=1)
    run_deductions(now=START + 2 * HOUR)  # the every-minute task ran during the period
    send_round(subs, start=START + 3 * HOUR, tag="b", calls=15, jobs=5, reports=3)

    assert race_cycle_and_deductions(subs, START + WEEK) == len(subs)
    # per subscription n: calls 10 + n and 15 + n, jobs 2 + n and 5 + n, reports 1 and 3
    for n, sub in enumerate(subs):
        api = Decimal(100) - Decimal(25 + 2 * n - 5) / 2 - 4
        job = Decimal(100) - Decimal(7 + 2 * n) * 2
        got = {
            b.credit_entitlement_id: b.balance
            for b in CreditBalance.objects.filter(customer=sub.customer)
        }
        assert got == {api_credits.id: api + 100, job_credits.id: job + 100}, n
    assert not LedgerEntry.objects.filter(transaction_type=TransactionType.REFUND).exists()
    assert_ledger_consistent()


@pytest.mark.django_db(transaction=True)
def test_the_first_deduction_of_a_period_racing_its_close_does_not_deadlock():
    """No deduction ran in the period, so the close and the workers both create its
    checkpoints: the close must lock the subscription FOR NO KEY UPDATE, or the workers'
    foreign-key share lock and the close's wait on the same new checkpoint deadlock."""
    api_credits, job_credits, subs = two_entitlement_plan(now=START, subscriptions=8)
    usage = {"calls": 25, "jobs": 7, "reports": 4}
    send_round(subs, start=START + HOUR, tag="a", **usage)  # no deduction ran in the period

    assert race_cycle_and_deductions(subs, START + WEEK) == len(subs)
    assert_closed_once(api_credits, job_credits, subs, usage)


# --- ledger entries over HTTP, concurrently -------------------------------------------------------


def ledger_url(live_server, entitlement_id: str, customer_id: str) -> str:
    return (
        f"{live_server.url}/api/credit-entitlements/{entitlement_id}"
        f"/balances/{customer_id}/ledger-entries"
    )


def post_all(url: str, key: str, bodies: list[dict]) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {key}"}

    def post(i: int) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            return client.post(url, json=bodies[i], headers=headers)

    barrier = threading.Barrier(len(bodies))

    def run(i: int) -> httpx.Response:
        barrier.wait(timeout=30)
        return post(i)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(run, range(len(bodies))))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("existing_balance", [False, True])
def test_one_idempotency_key_makes_one_entry_however_many_requests_race(
    live_server, live_api_key, existing_balance
):
    entitlement = make_entitlement(now=START)
    customer = make_customer()
    url = ledger_url(live_server, entitlement.id, customer.customer_id)
    if existing_balance:
        first = httpx.post(
            url,
            json={"entry_type": "credit", "amount": "5"},
            headers={"Authorization": f"Bearer {live_api_key}"},
        )
        assert first.status_code == 201, first.text

    body = {"entry_type": "credit", "amount": "12.5", "idempotency_key": "topup-1"}
    responses = post_all(url, live_api_key, [body] * 8)

    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 7, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {
        "IDEMPOTENCY_KEY_REUSED"
    }
    assert LedgerEntry.objects.filter(idempotency_key="topup-1").count() == 1
    balance = CreditBalance.objects.get(credit_entitlement=entitlement, customer=customer)
    assert balance.balance == Decimal("12.5") + (5 if existing_balance else 0)
    assert balance.grants.count() == (2 if existing_balance else 1)
    assert_ledger_consistent()


@pytest.mark.django_db(transaction=True)
def test_one_idempotency_key_on_racing_debits_takes_the_credits_once(live_server, live_api_key):
    entitlement = make_entitlement(now=START)
    customer = make_customer()
    url = ledger_url(live_server, entitlement.id, customer.customer_id)
    headers = {"Authorization": f"Bearer {live_api_key}"}
    for amount in ("30", "20"):  # two grants: the debit spans both
        assert httpx.post(url, json={"entry_type": "credit", "amount": amount}, headers=headers)

    body = {"entry_type": "debit", "amount": "40", "idempotency_key": "use-1"}
    responses = post_all(url, live_api_key, [body] * 6)

    assert sorted(r.status_code for r in responses) == [201] + [409] * 5
    balance = CreditBalance.objects.get(credit_entitlement=entitlement, customer=customer)
    assert balance.balance == 10
    assert sorted(balance.grants.values_list("remaining_amount", flat=True)) == [0, 10]
    assert_ledger_consistent()


@pytest.mark.django_db(transaction=True)
def test_concurrent_debits_never_take_the_balance_below_zero(live_server, live_api_key):
    entitlement = make_entitlement(now=START, precision=0)
    customer = make_customer()
    url = ledger_url(live_server, entitlement.id, customer.customer_id)
    headers = {"Authorization": f"Bearer {live_api_key}"}
    assert httpx.post(url, json={"entry_type": "credit", "amount": "100"}, headers=headers)

    responses = post_all(url, live_api_key, [{"entry_type": "debit", "amount": "15"}] * 10)

    ok = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(ok) == 100 // 15
    assert {(r.status_code, r.json()["code"]) for r in refused} == {(400, "INSUFFICIENT_BALANCE")}
    assert len(refused) == 10 - 100 // 15
    afters = sorted(Decimal(r.json()["balance_after"]) for r in ok)
    assert afters == [Decimal(100 - 15 * k) for k in range(len(ok), 0, -1)]
    balance = CreditBalance.objects.get(credit_entitlement=entitlement, customer=customer)
    assert balance.balance == 100 - 15 * len(ok) == 10
    assert_ledger_consistent()
