"""The portal shows the API's numbers: this period is the upcoming invoice, the history is
`usage-history`, balances and the ledger are the credits API's; and they match a hand count."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.portal.helpers import make_world, portal_client

pytestmark = pytest.mark.django_db


def test_this_period_is_the_upcoming_invoice(api):
    world = make_world()
    page = portal_client(world.ada.customer).get("/portal/")
    periods = {p.subscription.pk: p for p in page.context["periods"]}
    for subscription in (world.ada.subscription, world.ada.credit_subscription):
        upcoming = api.get(f"/api/subscriptions/{subscription.pk}/upcoming-invoice").json()
        shown = periods[subscription.pk]
        assert shown.total_minor == upcoming["total"]
        meter_lines = [line for line in upcoming["lines"] if line["meter_id"]]
        assert [row.meter.pk for row in shown.meters] == [line["meter_id"] for line in meter_lines]
        for row, line in zip(shown.meters, meter_lines, strict=True):
            assert row.line.amount_minor == line["amount"]
            assert str(row.line.consumed_units) == line["consumed_units"]
            assert str(row.line.chargeable_units) == line["chargeable_units"]
    # By hand: 13 calls this period, 10 free, 3 x 0.5 cents = 1.5, half-up 2; fee 1000.
    calls = periods[world.ada.subscription.pk].meters[0].line
    assert (calls.consumed_units, calls.free_units, calls.chargeable_units) == (13, 10, 3)
    html = page.content.decode()
    assert "$10.02" in html and "$0.02" in html
    # 3 events of 30 tokens, one credit per token.
    tokens = periods[world.ada.credit_subscription.pk].meters[0]
    assert tokens.line.credits_applied == Decimal(90)


def test_credits_left_is_the_balance(api):
    world = make_world()
    page = portal_client(world.ada.customer).get("/portal/")
    [row] = [p for p in page.context["periods"] if p.subscription == world.ada.credit_subscription][
        0
    ].meters
    balance = api.get(
        f"/api/credit-entitlements/{world.entitlement.pk}/balances/{world.ada.customer.pk}"
    ).json()
    assert row.credits_left == Decimal(balance["balance"])


def test_history_is_usage_history(api):
    world = make_world()
    page = portal_client(world.ada.customer).get("/portal/history/")
    histories = dict(page.context["histories"])
    for subscription in (world.ada.subscription, world.ada.credit_subscription):
        answer = api.get(
            f"/api/subscriptions/{subscription.pk}/usage-history?page_size=100"
        ).json()["items"]
        shown = next(periods for s, periods in histories.items() if s.pk == subscription.pk)
        assert len(shown) == len(answer)
        for period, item in zip(shown, answer, strict=True):
            assert period.invoice_id == item["invoice_id"]
            assert [
                (e.meter_id, str(e.consumed_units), str(e.chargeable_units), e.total_price)
                for e in period.meters
            ] == [
                (m["id"], m["consumed_units"], m["chargeable_units"], m["total_price"])
                for m in item["meters"]
            ]
    # By hand: the closed month had 25 calls, 10 free, 15 x 0.5 = 7.5 -> 8 cents.
    money = next(periods for s, periods in histories.items() if s == world.ada.subscription)
    closed = money[-1].meters[0]
    assert (closed.consumed_units, closed.chargeable_units, closed.total_price) == (25, 15, 8)
    assert "$0.08" in page.content.decode()


def test_balances_and_ledger_are_the_credits_apis(api):
    world = make_world()
    page = portal_client(world.ada.customer).get("/portal/credits/")
    [balance] = page.context["balances"]
    answer = api.get(
        f"/api/credit-entitlements/{world.entitlement.pk}/balances/{world.ada.customer.pk}"
    ).json()
    assert str(balance.balance) == answer["balance"]
    assert str(balance.overage) == answer["overage"]
    ledger = api.get(
        f"/api/credit-entitlements/{world.entitlement.pk}/balances/{world.ada.customer.pk}"
        "/ledger?page_size=100"
    ).json()["items"]
    entries = page.context["entries"]
    assert [str(e.pk) for e in entries] == [item["id"] for item in ledger][: len(entries)]
    assert entries[0].balance_after == Decimal(answer["balance"])


def test_invoices_are_the_invoices_api(api):
    world = make_world()
    page = portal_client(world.ada.customer).get("/portal/invoices/")
    shown = {invoice.pk: invoice.total_minor for invoice in page.context["invoices"]}
    answer = api.get(f"/api/invoices?customer_id={world.ada.customer.pk}&page_size=100").json()
    issued = {i["invoice_id"]: i["total"] for i in answer["items"] if i["status"] != "draft"}
    assert shown == issued
