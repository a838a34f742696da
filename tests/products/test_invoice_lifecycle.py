"""The invoice lifecycle through the API: finalize, mark paid, void, reissue, credit notes, the
upcoming invoice; and credits under a grace period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from audit.models import AuditEntry
from credits.deduction import run_deductions
from credits.models import LedgerEntry
from products import billing, invoices
from products.models import Invoice, InvoiceKind, InvoiceStatus
from tests.credits.factories import balance_of, credit_product, make_entitlement
from tests.credits.factories import subscribe as subscribe_credits
from tests.products.factories import make_meter, make_product, send_usage, subscribe

START = datetime(2026, 3, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
pytestmark = pytest.mark.django_db


def weekly(calls: int, *, price: str = "2", free: int = 3, fee: int = 100):
    meter = make_meter("Calls", "api.call", now=START)
    product = make_product([(meter, price, free)], now=START, fixed_price=fee, interval="Week")
    subscription = subscribe(product, now=START)
    send_usage(subscription, "api.call", [{}] * calls, start=START, prefix="base")
    return subscription


def issued_invoice(calls: int = 5) -> Invoice:
    weekly(calls)
    [invoice] = billing.run_billing_cycle(now=START + WEEK)
    return invoice


def test_the_upcoming_invoice_equals_the_invoice_the_period_closes_with(api):
    subscription = weekly(calls=8)
    upcoming = api.get(f"/api/subscriptions/{subscription.pk}/upcoming-invoice")
    assert upcoming.status_code == 200, upcoming.content
    body = upcoming.json()
    # 100 fee + (8 - 3) * 2 cents, computed by hand.
    assert body["total"] == 110
    [invoice] = billing.run_billing_cycle(now=START + WEEK)
    closed = api.get(f"/api/invoices/{invoice.pk}").json()
    assert body["lines"] == closed["lines"]
    assert body["total"] == closed["total"] == invoice.total_minor
    assert (body["period_start"], body["period_end"]) == (
        closed["period_start"],
        closed["period_end"],
    )
    # Nothing was written by asking.
    assert Invoice.objects.count() == 1


def test_mark_paid_records_the_reference_once_and_a_paid_invoice_cannot_be_voided(api):
    invoice = issued_invoice()
    paid = api.post(
        f"/api/invoices/{invoice.pk}/mark-paid", {"payment_reference": "ch_123"}, format="json"
    )
    assert paid.status_code == 200, paid.content
    assert paid.json()["status"] == "paid"
    assert paid.json()["payment_reference"] == "ch_123"
    again = api.post(f"/api/invoices/{invoice.pk}/mark-paid", {}, format="json")
    assert again.status_code == 409
    voided = api.post(f"/api/invoices/{invoice.pk}/void", {"reason": "wrong"}, format="json")
    assert voided.status_code == 409
    assert "credit note" in voided.json()["message"]
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_void_then_reissue_recomputes_the_period_and_keeps_the_chain(api):
    invoice = issued_invoice(calls=5)
    # The price is corrected after the fact: the reissue bills the period at the new price.
    product_meter = invoice.subscription.product.product_meters.get()
    product_meter.price_per_unit = Decimal("3")
    product_meter.save(update_fields=["price_per_unit"])
    voided = api.post(f"/api/invoices/{invoice.pk}/void", {"reason": "price typo"}, format="json")
    assert voided.status_code == 200, voided.content
    assert voided.json()["void_reason"] == "price typo"
    reissued = api.post(f"/api/invoices/{invoice.pk}/reissue", format="json")
    assert reissued.status_code == 200, reissued.content
    new = reissued.json()
    assert new["replaces_invoice_id"] == invoice.pk
    assert new["total"] == 100 + (5 - 3) * 3  # by hand
    assert new["number"] == "INV-2026-000002"
    assert new["status"] == "issued"
    # A second reissue is refused; the void invoice is kept as it was.
    assert api.post(f"/api/invoices/{invoice.pk}/reissue", format="json").status_code == 409
    old = api.get(f"/api/invoices/{invoice.pk}").json()
    assert (old["status"], old["total"], old["number"]) == ("void", 104, "INV-2026-000001")
    listed = api.get(f"/api/invoices?subscription_id={invoice.subscription_id}").json()["items"]
    assert {i["invoice_id"] for i in listed} == {invoice.pk, new["invoice_id"]}
    actions = set(
        AuditEntry.objects.filter(object_type="products.invoice").values_list("action", flat=True)
    )
    assert {"voided", "reissued"} <= actions


def test_a_credit_note_gives_back_part_of_a_paid_invoice_and_never_more_than_it(api):
    invoice = issued_invoice(calls=5)  # 104
    invoices.mark_paid(invoice.pk, now=START + WEEK)
    note = api.post(
        f"/api/invoices/{invoice.pk}/credit-notes",
        {"reason": "goodwill", "lines": [{"description": "Outage credit", "amount": 60}]},
        format="json",
    )
    assert note.status_code == 200, note.content
    body = note.json()
    assert (body["kind"], body["total"], body["corrects_invoice_id"]) == (
        "credit_note",
        -60,
        invoice.pk,
    )
    too_much = api.post(
        f"/api/invoices/{invoice.pk}/credit-notes",
        {"reason": "again", "lines": [{"description": "More", "amount": 45}]},
        format="json",
    )
    assert too_much.status_code == 422
    assert "44" in too_much.json()["message"]
    rest = api.post(f"/api/invoices/{invoice.pk}/credit-notes", {"reason": "rest"}, format="json")
    assert rest.json()["total"] == -44
    assert Invoice.objects.filter(kind=InvoiceKind.CREDIT_NOTE).count() == 2


def test_finalize_through_the_api_ends_the_grace_period_early(api, settings):
    settings.BILLING_GRACE_PERIOD_MINUTES = 60
    subscription = weekly(calls=4)
    [draft] = billing.run_billing_cycle(now=START + WEEK)
    shown = api.get(f"/api/invoices/{draft.pk}").json()
    assert (shown["status"], shown["number"], shown["total"]) == ("draft", None, 102)
    final = api.post(f"/api/invoices/{draft.pk}/finalize", format="json")
    assert final.status_code == 200, final.content
    assert final.json()["status"] == "issued"
    assert final.json()["number"] == "INV-2026-000001"
    subscription.refresh_from_db()
    assert subscription.finalized_until == START + WEEK
    assert api.post(f"/api/invoices/{draft.pk}/finalize", format="json").status_code == 409


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("void", {}, "reason"),
        ("void", {"reason": "x" * 501}, "reason"),
        ("void", {"reason": "ok", "note": "?"}, "note"),
        ("mark-paid", {"payment_reference": 12}, "payment_reference"),
        ("finalize", {"now": "2026-01-01"}, "now"),
        (
            "credit-notes",
            {"reason": "r", "lines": [{"amount": -1, "description": "d"}]},
            "lines[0].amount",
        ),
        ("credit-notes", {"reason": "r", "lines": "all"}, "lines"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(api, action, body, field):
    invoice = issued_invoice()
    before = (invoice.status, Invoice.objects.count())
    answer = api.post(f"/api/invoices/{invoice.pk}/{action}", body, format="json")
    assert answer.status_code == 422, answer.content
    assert field in [e["field"] for e in answer.json()["errors"]]
    invoice.refresh_from_db()
    assert (invoice.status, Invoice.objects.count()) == before


def test_unknown_invoices_answer_404(api):
    bodies = {
        "finalize": {},
        "mark-paid": {},
        "void": {"reason": "r"},
        "reissue": {},
        "credit-notes": {"reason": "r"},
    }
    for action, body in bodies.items():
        answer = api.post(f"/api/invoices/inv_nope/{action}", body, format="json")
        assert answer.status_code == 404, (action, answer.content)
    assert api.get("/api/subscriptions/sub_nope/upcoming-invoice").status_code == 404


def test_a_credit_period_closes_at_finalization_as_it_would_without_a_grace_period(settings):
    """The same usage billed with and without a grace period gives the same invoice and the same
    ledger, in the same order; during the grace period the new period is not deducted yet."""

    def scenario(grace_minutes: int, prefix: str):
        settings.BILLING_GRACE_PERIOD_MINUTES = grace_minutes
        entitlement = make_entitlement(now=START, name=f"Credits {prefix}")
        meter = make_meter(f"Calls {prefix}", f"{prefix}.call", now=START)
        product = credit_product(entitlement, meter, credits_amount=100, now=START)
        subscription = subscribe_credits(product, now=START)
        send_usage(subscription, f"{prefix}.call", [{}] * 30, start=START, prefix=prefix)
        # Usage of the next period arrives too.
        send_usage(
            subscription, f"{prefix}.call", [{}] * 7, start=START + WEEK, prefix=f"{prefix}n"
        )
        billing.run_billing_cycle(now=START + WEEK + timedelta(minutes=1))
        run_deductions(now=START + WEEK + timedelta(minutes=2))
        balance = balance_of(entitlement, subscription)
        during = balance.balance
        billing.run_billing_cycle(now=START + WEEK + timedelta(hours=2))
        run_deductions(now=START + WEEK + timedelta(hours=2, minutes=1))
        balance.refresh_from_db()
        [invoice] = subscription.invoices.all()
        ledger = list(
            LedgerEntry.objects.filter(balance=balance)
            .order_by("id")
            .values_list("transaction_type", "amount", "balance_after")
        )
        lines = list(
            invoice.lines.values_list("kind", "consumed_units", "credits_applied", "amount_minor")
        )
        return during, balance.balance, invoice.status, lines, ledger

    during_0, final_0, status_0, lines_0, ledger_0 = scenario(0, "a")
    during_60, final_60, status_60, lines_60, ledger_60 = scenario(60, "b")
    # Without grace: 100 granted, 30 taken, a new 100 granted, then 7 taken.
    assert during_0 == 100 - 30 + 100 - 7
    # With grace, at minute 2 the period before is a draft: nothing deducted, nothing granted.
    assert during_60 == 100
    assert (final_0, final_60) == (163, 163)
    assert status_0 == status_60 == "issued"
    assert lines_0 == lines_60
    assert ledger_0 == ledger_60
