"""Staff roles as Django groups, and the permission checks of the custom staff pages.

- Viewer: view permission on every model of the billing apps; the dashboard, analytics, usage
  charts and invoice print pages; changes nothing.
- Billing admin: also adds, changes and deletes meters, products and their meters, customers,
  subscriptions, credit entitlements, balances, grants and ledger entries (credit adjustments),
  usage alerts, and webhook endpoints and deliveries (redelivery); views the audit log. Users,
  groups and API keys stay with superusers.

The groups are (re)built from this module by a migration and after every `migrate`, so a new
model's permissions join its role; for other permission sets, create other groups.
"""

from __future__ import annotations

from django.apps import apps as global_apps
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q
from django.http import HttpRequest

VIEWER = "Viewer"
BILLING_ADMIN = "Billing admin"
ROLES = {"viewer": VIEWER, "billing_admin": BILLING_ADMIN}

BILLING_APPS = ("events", "meters", "products", "credits", "portal")
# What a billing admin manages (add/change/delete/view); every other billing model is view-only.
MANAGED_MODELS = {
    "meters": ("meter",),
    "products": ("product", "productmeter", "customer", "subscription"),
    "credits": (
        "creditentitlement",
        "productcreditentitlement",
        "creditbalance",
        "creditgrant",
        "ledgerentry",
    ),
    "portal": ("usagealert",),
    # Not viewers: an endpoint's page shows its signing secret. Redelivering is a change.
    "webhooks": ("webhookendpoint", "webhookevent", "delivery", "deliveryattempt"),
}

# The custom staff pages, and what each needs.
DASHBOARD = ("meters.view_meter", "products.view_customer", "products.view_invoice")
CHARTS = ("meters.view_meter", "products.view_customer")  # Plotly's script: any of these
ADJUST_CREDITS = "credits.add_ledgerentry"  # a manual adjustment is a new ledger entry
# Invoices are never edited, added or deleted: changing one means its lifecycle actions
# (finalize, mark paid, void, reissue), which billing admins may take.
INVOICE_LIFECYCLE = "products.change_invoice"


def role_name(role: str) -> str:
    """'viewer', 'billing_admin' (or 'billing-admin', or the group's name) -> the group's name."""
    key = role.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in ROLES:
        raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return ROLES[key]


def _permissions(name: str, apps, using: str):
    permission_model = apps.get_model("auth", "Permission")
    viewing = Q(content_type__app_label__in=BILLING_APPS, codename__startswith="view_")
    if name == BILLING_ADMIN:
        viewing |= Q(content_type__app_label="audit", codename__startswith="view_")
        for app_label, models in MANAGED_MODELS.items():
            viewing |= Q(content_type__app_label=app_label, content_type__model__in=models)
        app_label, codename = INVOICE_LIFECYCLE.split(".")
        viewing |= Q(content_type__app_label=app_label, codename=codename)
    return permission_model.objects.using(using).filter(viewing)


def sync_roles(apps=global_apps, using: str = DEFAULT_DB_ALIAS) -> None:
    """Create the role groups, or set their permissions back to what this module says."""
    group_model = apps.get_model("auth", "Group")
    for name in ROLES.values():
        group, _ = group_model.objects.using(using).get_or_create(name=name)
        group.permissions.set(_permissions(name, apps, using))


def assign_role(user, role: str) -> None:
    """Make `user` a staff member with exactly this role (other role groups are removed)."""
    from django.contrib.auth.models import Group

    name = role_name(role)
    sync_roles()
    user.groups.remove(*Group.objects.filter(name__in=ROLES.values()).exclude(name=name))
    user.groups.add(Group.objects.get(name=name))
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])


def require(request: HttpRequest, *permissions: str) -> None:
    """403 unless the user holds every permission (superusers hold them all)."""
    if not request.user.has_perms(permissions):
        raise PermissionDenied


def require_any(request: HttpRequest, *permissions: str) -> None:
    """403 unless the user holds at least one of the permissions."""
    if not any(request.user.has_perm(permission) for permission in permissions):
        raise PermissionDenied
