"""Credits in the admin: entitlements, balances with their ledger and grants, and manual
adjustments with a reason (a ledger entry recording who made it). Ledger entries and grants are
history: read-only."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from audit import roles
from billing_site.errors import DomainError
from billing_site.staff import PermittedActionsMixin
from credits import ledger, services
from credits.ledger import CreditRules
from credits.models import CreditBalance, CreditEntitlement, CreditGrant, LedgerEntry


class ReadOnlyAdmin(PermittedActionsMixin, admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class CreditEntitlementForm(forms.ModelForm):
    """The API's rules (`services.check_entitlement`) on the instance the form would save, so
    staff cannot store what the API refuses (a precision of 200, 500% rollover, a negative
    price), which products and subscriptions would then fail on."""

    class Meta:
        model = CreditEntitlement
        fields = [
            "name",
            "description",
            "unit",
            "precision",
            "currency",
            "price_per_unit",
            "overage_enabled",
            "overage_limit",
            "overage_behavior",
            "expires_after_days",
            "rollover_enabled",
            "rollover_percentage",
            "rollover_timeframe_count",
            "rollover_timeframe_interval",
            "max_rollover_count",
        ]

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # Django's, missing from its stubs
        if self.errors:
            return  # a field that did not parse is not on the instance: report that first
        try:
            services.check_entitlement(self.instance)
        except services.NameTaken as error:
            self.add_error("name" if "name" in self.fields else None, error.message)
        except DomainError as error:
            for problem in error.errors or [{"field": None, "message": error.message}]:
                field = problem.get("field")
                if field in self.fields:
                    self.add_error(field, problem["message"])
                else:
                    self.add_error(
                        None, f"{field}: {problem['message']}" if field else problem["message"]
                    )


@admin.register(CreditEntitlement)
class CreditEntitlementAdmin(PermittedActionsMixin, admin.ModelAdmin):
    form = CreditEntitlementForm
    list_display = ["name", "id", "unit", "precision", "overage_behavior", "rollover_enabled"]
    list_filter = [("deleted_at", admin.EmptyFieldListFilter), "overage_behavior"]
    search_fields = ["=id", "name"]
    readonly_fields = ["id", "created_at", "updated_at", "deleted_at"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "precision"] if obj else self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # soft-deleted through the API; balances refer to it

    def save_model(self, request, obj, form, change) -> None:
        """The model form's save, logged like a service change (the admin wraps it in a
        transaction, so the log row and the change commit together)."""
        before = (
            services.entitlement_state(CreditEntitlement.objects.select_for_update().get(pk=obj.pk))
            if change
            else None
        )
        super().save_model(request, obj, form, change)
        services.record_admin_save(obj, before=before)


class LedgerInline(admin.TabularInline):
    model = LedgerEntry
    extra = 0
    can_delete = False
    fields = (
        "created_at",
        "transaction_type",
        "amount",
        "balance_before",
        "balance_after",
        "overage_after",
        "description",
        "created_by",
    )
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    max_num = 0

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class AdjustmentForm(forms.Form):
    entry_type = forms.ChoiceField(choices=[("credit", "Add credits"), ("debit", "Remove credits")])
    amount = forms.DecimalField(min_value=Decimal("0.0000000001"), max_digits=30, decimal_places=10)
    reason = forms.CharField(max_length=1000)
    expires_at = forms.DateTimeField(required=False, help_text="Credits only; UTC.")


@admin.register(CreditBalance)
class CreditBalanceAdmin(ReadOnlyAdmin):
    list_display = [
        "customer",
        "credit_entitlement",
        "balance",
        "overage",
        "last_transaction_at",
        "adjust_link",
    ]
    list_filter = ["credit_entitlement"]
    search_fields = ["=customer__customer_id", "customer__email"]
    list_select_related = ["customer", "credit_entitlement"]
    inlines = [LedgerInline]

    def get_list_display(self, request):
        if request.user.has_perm(roles.ADJUST_CREDITS):
            return self.list_display
        return [column for column in self.list_display if column != "adjust_link"]

    @admin.display(description="")
    def adjust_link(self, balance: CreditBalance) -> str:
        url = reverse("admin:credits_creditbalance_adjust", args=[balance.pk])
        return format_html('<a href="{}">Adjust</a>', url)

    def get_urls(self):
        return [
            path(
                "<int:balance_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="credits_creditbalance_adjust",
            ),
            *super().get_urls(),
        ]

    def adjust_view(self, request, balance_id: int):
        """Add or remove credits by hand; the reason and the staff user go into the ledger."""
        roles.require(request, "credits.view_creditbalance", roles.ADJUST_CREDITS)
        balance = get_object_or_404(
            CreditBalance.objects.select_related("credit_entitlement", "customer"), pk=balance_id
        )
        form = AdjustmentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            values = form.cleaned_data
            now = timezone.now()
            try:
                with transaction.atomic():
                    locked = ledger.locked_balance(
                        balance.credit_entitlement_id, balance.customer_id, now=now
                    )
                    ledger.manual_entry(
                        locked,
                        entry_type=values["entry_type"],
                        amount=values["amount"].normalize(),
                        rules=CreditRules.of(balance.credit_entitlement),
                        now=now,
                        reason=values["reason"],
                        expires_at=values["expires_at"],
                        created_by=request.user.get_username(),
                    )
            except DomainError as error:
                form.add_error("amount", error.message)
            else:
                messages.success(request, "The balance was adjusted.")
                return HttpResponseRedirect(
                    reverse("admin:credits_creditbalance_change", args=[balance.pk])
                )
        return TemplateResponse(
            request,
            "admin/credits/adjust.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Adjust {balance.credit_entitlement.name} for {balance.customer}",
                "balance": balance,
                "form": form,
                "opts": self.model._meta,
            },
        )


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "customer",
        "entitlement",
        "transaction_type",
        "amount",
        "balance_after",
        "overage_after",
        "created_by",
    ]
    list_filter = ["transaction_type", "balance__credit_entitlement"]
    search_fields = ["=balance__customer__customer_id", "=idempotency_key"]
    list_select_related = ["balance__customer", "balance__credit_entitlement"]
    date_hierarchy = "created_at"

    @admin.display(description="Customer")
    def customer(self, entry: LedgerEntry) -> str:
        return str(entry.balance.customer)

    @admin.display(description="Entitlement")
    def entitlement(self, entry: LedgerEntry) -> str:
        return entry.balance.credit_entitlement.name


@admin.register(CreditGrant)
class CreditGrantAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "balance",
        "source_type",
        "initial_amount",
        "remaining_amount",
        "expires_at",
        "is_expired",
        "rollover_count",
    ]
    list_filter = ["source_type", "is_expired"]
    list_select_related = ["balance__customer", "balance__credit_entitlement"]
