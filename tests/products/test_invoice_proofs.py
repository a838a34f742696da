"""Invoice lines prove themselves: at finalization a usage line stores how many events it counted
and the SHA-256 of their sorted ids (checked here with hashlib over the ids the test sent), lists
exactly those events, and `verify_invoices` finds a corrupted line and nothing on honest data."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from products import billing, proofs
from products.models import InvoiceLine, InvoiceStatus, InvoiceVerification
from products.tasks import verify_invoices
from tests.products.factories import make_meter, make_product, send_usage, subscribe

START = datetime(2026, 3, 2, tzinfo=UTC)
WEEK = timedelta(days=7)
pytestmark = pytest.mark.django_db


def sha_of(ids: list[str]) -> str:
    """Written from the documented rule: ids in byte order, each followed by a newline."""
    ordered = sorted(ids, key=lambda i: i.encode())
    return hashlib.sha256("".join(i + "\n" for i in ordered).encode()).hexdigest()


@pytest.fixture
def billed():
    """A sum meter: 5 events with a number (counted), 2 without (skipped), 1 of another
    customer; weekly, closed at START + WEEK."""
    tokens = make_meter("Tokens", "llm.call", "sum", "tokens", now=START)
    calls = make_meter("Calls", "llm.call", now=START)
    product = make_product([(tokens, "1", 0), (calls, "1", 0)], now=START, interval="Week")
    subscription = subscribe(product, now=START)
    metadata = [{"tokens": n} for n in (1, 2, 3, 4, 10)] + [{"tokens": "5"}, {}]
    send_usage(subscription, "llm.call", metadata, start=START + timedelta(hours=1), prefix="ev")
    other = subscribe(product, now=START)
    send_usage(other, "llm.call", [{"tokens": 100}], start=START + timedelta(hours=2), prefix="x")
    invoices = billing.run_billing_cycle(now=START + WEEK)
    invoice = next(i for i in invoices if i.subscription_id == subscription.pk)
    return invoice, tokens, calls


def test_a_final_usage_line_stores_its_count_and_digest(billed):
    invoice, tokens, calls = billed
    tokens_line = InvoiceLine.objects.get(invoice=invoice, meter=tokens)
    assert tokens_line.consumed_units == Decimal(20)
    assert tokens_line.events_counted == 5
    assert tokens_line.events_digest == sha_of([f"ev-{i}" for i in range(5)])
    calls_line = InvoiceLine.objects.get(invoice=invoice, meter=calls)
    assert calls_line.events_counted == 7
    assert calls_line.events_digest == sha_of([f"ev-{i}" for i in range(7)])
    assert proofs.digest_of([f"ev-{i}" for i in range(7)]) == calls_line.events_digest


def test_a_line_without_events_has_the_digest_of_nothing(billed):
    _, tokens, _ = billed
    product = make_product([(tokens, "1", 0)], now=START, interval="Week", name="Quiet")
    quiet = subscribe(product, now=START)
    [invoice] = billing.run_billing_cycle(now=START + WEEK + timedelta(minutes=1))
    assert invoice.subscription_id == quiet.pk
    line = InvoiceLine.objects.get(invoice=invoice, meter=tokens)
    assert (line.events_counted, line.events_digest) == (0, hashlib.sha256(b"").hexdigest())


def test_the_api_lists_exactly_the_events_of_a_line(api, billed):
    invoice, tokens, _ = billed
    line = InvoiceLine.objects.get(invoice=invoice, meter=tokens)
    url = f"/api/invoices/{invoice.pk}/lines/{line.position}/events"
    first = api.get(url, {"page_size": 3}).json()["items"]
    second = api.get(url, {"page_size": 3, "page_number": 1}).json()["items"]
    assert [e["event_id"] for e in first + second] == [f"ev-{i}" for i in range(5)]
    assert api.get(f"/api/invoices/{invoice.pk}/lines/99/events").status_code == 404
    assert api.get(url, {"since": "x"}).status_code == 422
    page = api.get(url).json()
    assert (page["events_counted"], page["events_digest"]) == (
        5,
        sha_of([f"ev-{i}" for i in range(5)]),
    )


def test_a_draft_is_proven_when_it_is_finalized_late_events_included(settings):
    settings.BILLING_GRACE_PERIOD_MINUTES = 60
    calls = make_meter("Calls", "llm.call", now=START)
    subscription = subscribe(make_product([(calls, "1", 0)], now=START, interval="Week"), now=START)
    send_usage(subscription, "llm.call", [{}] * 2, start=START, prefix="on-time")
    [draft] = billing.run_billing_cycle(now=START + WEEK)
    assert draft.status == InvoiceStatus.DRAFT
    assert InvoiceLine.objects.get(invoice=draft, meter=calls).events_digest is None
    send_usage(subscription, "llm.call", [{}], start=START + WEEK - timedelta(1), prefix="late")
    billing.run_billing_cycle(now=START + WEEK + timedelta(hours=2))
    line = InvoiceLine.objects.get(invoice=draft, meter=calls)
    assert line.events_counted == 3
    assert line.events_digest == sha_of(["on-time-0", "on-time-1", "late-0"])


def test_verify_reports_nothing_on_honest_data(billed, capsys):
    call_command("verify_invoices")
    out = capsys.readouterr().out
    assert "MISMATCH" not in out
    # Two customers, two meters each: 4 lines; 5 + 7 + 1 + 1 counted events.
    assert "4 invoice lines verified against 14 events" in out
    assert "0 mismatches" in out


def test_verify_finds_a_corrupted_line(billed, capsys):
    invoice, tokens, calls = billed
    InvoiceLine.objects.filter(invoice=invoice, meter=tokens).update(consumed_units=Decimal(21))
    InvoiceLine.objects.filter(invoice=invoice, meter=calls).update(events_digest="0" * 64)
    with pytest.raises(SystemExit):
        call_command("verify_invoices", since=(START + WEEK).isoformat())
    out = capsys.readouterr().out
    assert f"invoice {invoice.number} line 1 (meter {tokens.id}): consumed_units stored 21" in out
    assert "recomputed 20" in out
    assert f"line 2 (meter {calls.id}): events_digest stored {'0' * 64}" in out
    assert "2 mismatches" in out
    # Lines issued before --since are not looked at.
    call_command("verify_invoices", since=(START + 2 * WEEK).isoformat())
    assert "0 invoice lines verified" in capsys.readouterr().out


def test_the_daily_task_records_the_result(billed):
    invoice, tokens, _ = billed
    assert verify_invoices() == 0
    InvoiceLine.objects.filter(invoice=invoice, meter=tokens).update(events_counted=4)
    assert verify_invoices() == 1
    latest = InvoiceVerification.objects.latest()
    assert (latest.lines_verified, latest.events_verified, latest.mismatch_count) == (4, 14, 1)
    [mismatch] = latest.mismatches
    assert mismatch["field"] == "events_counted"
    assert (mismatch["stored"], mismatch["recomputed"]) == ("4", "5")


def test_the_staff_page_lists_a_lines_events_and_exports_csv(admin_client, billed):
    invoice, tokens, _ = billed
    line = InvoiceLine.objects.get(invoice=invoice, meter=tokens)
    url = f"/admin/products/invoice/{invoice.pk}/lines/{line.position}/events/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"ev-4" in page.content and b"ev-5" not in page.content
    assert line.events_digest.encode() in page.content
    exported = admin_client.get(url, {"format": "csv"})
    assert exported["Content-Type"].startswith("text/csv")
    text = b"".join(exported.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["event_id", "customer_id", "event_name"]
    assert [row[0] for row in rows[1:]] == [f"ev-{i}" for i in range(5)]


def test_the_staff_home_shows_the_last_verification(admin_client, billed):
    assert b"Invoice lines not verified yet" in admin_client.get("/admin/dashboard/").content
    verify_invoices()
    page = admin_client.get("/admin/dashboard/").content.decode()
    assert "4 invoice lines verified against 14 events, 0 mismatches" in page


def test_compact_counts():
    from billing_site.dashboard import compact_count

    assert [compact_count(n) for n in (1234, 999_999, 9_800_000, 10_000_000, 1_250_000_000)] == [
        "1,234",
        "999,999",
        "9.8M",
        "10M",
        "1.2B",
    ]


def test_a_line_billed_in_credits_is_proven_and_verifies(capsys):
    from tests.credits.factories import credit_product, make_entitlement
    from tests.credits.factories import subscribe as subscribe_credits

    entitlement = make_entitlement(now=START)
    tokens = make_meter("Tokens", "llm.call", "sum", "tokens", now=START)
    product = credit_product(entitlement, tokens, credits_amount=100, now=START)
    subscription = subscribe_credits(product, now=START)
    metadata = [{"tokens": 3}, {"tokens": 4}, {"tokens": "x"}]
    send_usage(subscription, "llm.call", metadata, start=START + timedelta(hours=1), prefix="c")
    [invoice] = billing.run_billing_cycle(now=START + WEEK)
    line = InvoiceLine.objects.get(invoice=invoice, meter=tokens)
    assert line.consumed_units == Decimal(7)
    assert (line.events_counted, line.events_digest) == (2, sha_of(["c-0", "c-1"]))
    call_command("verify_invoices")
    assert "1 invoice lines verified against 2 events, 0 mismatches" in capsys.readouterr().out


def test_a_line_position_that_is_not_a_number_is_404(api, billed):
    invoice, _, _ = billed
    for position in ("one", "²", "99999999999999999999", "-1"):
        response = api.get(f"/api/invoices/{invoice.pk}/lines/{position}/events")
        assert response.status_code == 404, position
        assert response.json()["code"] == "NOT_FOUND"
