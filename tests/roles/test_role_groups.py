"""The role groups hold exactly their permissions, and `manage.py assign_role` hands them out."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from audit import roles

pytestmark = pytest.mark.django_db


def codenames(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {
        f"{app}.{codename}"
        for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    }


def test_the_migration_creates_both_groups():
    assert set(Group.objects.values_list("name", flat=True)) >= {"Viewer", "Billing admin"}


def test_a_viewer_may_only_view_and_only_the_billing_apps():
    granted = codenames(roles.VIEWER)
    assert {"meters.view_meter", "events.view_event", "products.view_invoice"} <= granted
    assert {"credits.view_ledgerentry", "credits.view_creditbalance"} <= granted
    assert all(name.split(".")[1].startswith("view_") for name in granted)
    assert {name.split(".")[0] for name in granted} == {
        "events",
        "meters",
        "products",
        "credits",
        "portal",
    }


def test_a_billing_admin_manages_meters_prices_and_credits_but_not_access():
    granted = codenames(roles.BILLING_ADMIN)
    for model in (
        "meters.meter",
        "products.product",
        "products.productmeter",
        "products.customer",
        "products.subscription",
        "credits.creditentitlement",
        "credits.productcreditentitlement",
        "credits.creditgrant",
        "credits.ledgerentry",
        "portal.usagealert",
    ):
        app, name = model.split(".")
        for action in ("add", "change", "delete", "view"):
            assert f"{app}.{action}_{name}" in granted
    assert roles.ADJUST_CREDITS in granted
    assert "products.view_invoice" in granted
    # Invoices change only through their lifecycle actions; none is added or deleted by hand.
    assert roles.INVOICE_LIFECYCLE in granted
    assert not {"products.add_invoice", "products.delete_invoice"} & granted
    assert "events.view_event" in granted and "events.change_event" not in granted
    assert "audit.view_auditentry" in granted
    assert {"webhooks.add_webhookendpoint", "webhooks.change_delivery"} <= granted  # redeliver
    assert "webhooks.view_webhookendpoint" not in codenames(roles.VIEWER)  # shows secrets
    assert not {name for name in granted if name.split(".")[0] in ("auth", "billing_site")}


def test_assign_role_makes_a_user_staff_with_one_role():
    alice = get_user_model().objects.create_user("alice", password="pw-123456789")
    call_command("assign_role", "alice", "viewer")
    alice.refresh_from_db()
    assert alice.is_staff
    assert [g.name for g in alice.groups.all()] == ["Viewer"]
    assert alice.has_perm("meters.view_meter") and not alice.has_perm("meters.add_meter")

    call_command("assign_role", "alice", "billing-admin")
    alice = get_user_model().objects.get(pk=alice.pk)  # a fresh permission cache
    assert [g.name for g in alice.groups.all()] == ["Billing admin"]
    assert alice.has_perm("meters.add_meter")

    call_command("assign_role", "alice", "--remove")
    alice = get_user_model().objects.get(pk=alice.pk)
    assert not alice.groups.exists() and not alice.has_perm("meters.view_meter")


def test_assign_role_refuses_unknown_users_and_roles():
    get_user_model().objects.create_user("bob", password="pw-123456789")
    with pytest.raises(CommandError, match="No user"):
        call_command("assign_role", "nobody", "viewer")
    with pytest.raises(CommandError, match="unknown role"):
        call_command("assign_role", "bob", "owner")
