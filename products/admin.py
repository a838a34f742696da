"""Customers, products, subscriptions and invoices in the admin.

Issued invoices are history: staff read and print them, never edit them. Products and
subscriptions change through products/services.py so the same rules hold as in the API.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from audit.models import AuditEntry
from audit.roles import INVOICE_LIFECYCLE
from billing_site.errors import DomainError, InvalidInput
from billing_site.jsonutil import exact_loads
from billing_site.money import CURRENCIES, format_minor
from billing_site.staff import PermittedActionsMixin
from billing_site.views import plotly_src
from meters import analytics
from products import invoices, payments, plan_changes, services
from products.explain_admin import line_events_view
from products.forms import PricingForms
from products.forms import example as pricing_example
from products.invoice_pdf import invoice_pdf
from products.models import (
    CheckoutSession,
    Customer,
    Dunning,
    Invoice,
    InvoiceLine,
    Payment,
    Product,
    ProductMeter,
    ProviderCustomer,
    ProviderEvent,
    Refund,
    Subscription,
    SubscriptionStatus,
)
from products.pricing import MeterPricing, describe


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class SubscriptionInline(ReadOnlyInline):
    model = Subscription
    fields = ("subscription_id", "product", "status", "current_period_start", "current_period_end")
    readonly_fields = fields
    show_change_link = True


class InvoiceInline(ReadOnlyInline):
    model = Invoice
    # The chain of corrections shows here: a reissue names what it replaces, a credit note
    # what it corrects.
    fields = (
        "invoice_id",
        "number",
        "kind",
        "period_start",
        "period_end",
        "status",
        "total",
        "replaces",
        "corrects",
    )
    readonly_fields = fields
    show_change_link = True

    @admin.display(description="Total")
    def total(self, invoice: Invoice) -> str:
        return format_minor(invoice.total_minor, invoice.currency)


class ProviderCustomerInline(admin.StackedInline):
    """The customer at the payment provider and the method saved there (products/payments.py)."""

    model = ProviderCustomer
    extra = 0
    can_delete = False
    verbose_name = "payment method"
    fields = readonly_fields = (
        "provider",
        "provider_customer_id",
        "payment_method",
        "payment_method_updated_at",
    )

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Saved payment method")
    def payment_method(self, profile: ProviderCustomer) -> str:
        return profile.payment_method_label


@admin.register(Customer)
class CustomerAdmin(PermittedActionsMixin, admin.ModelAdmin):
    list_display = ["customer_id", "name", "email", "created_at", "subscription_count"]
    search_fields = ["=customer_id", "email", "name"]
    list_filter = ["created_at"]
    readonly_fields = ["created_at"]
    inlines = [SubscriptionInline, InvoiceInline, ProviderCustomerInline]
    change_form_template = "admin/products/customer/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(subscriptions_total=Count("subscriptions"))

    @admin.display(description="Subscriptions", ordering="subscriptions_total")
    def subscription_count(self, customer: Customer) -> int:
        return customer.subscriptions_total  # type: ignore[attr-defined]  # get_queryset's

    def get_readonly_fields(self, request, obj=None):
        # The id may be chosen on creation (to match events already sent), never changed after.
        return ["customer_id", *self.readonly_fields] if obj else self.readonly_fields

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from credits.models import CreditBalance

        if not self.has_view_or_change_permission(request):
            raise PermissionDenied  # before reading balances and usage for the page

        # The admin quotes ids in its URLs ("_" is "_5F"): the page's own queries need the id.
        customer_id = unquote(object_id)
        balances = CreditBalance.objects.filter(customer_id=customer_id).select_related(
            "credit_entitlement"
        )
        extra_context = {
            **(extra_context or {}),
            "credit_balances": balances,
            "usage_links": _usage_links(customer_id),
            "usage_charts": _usage_charts(customer_id, now=timezone.now()),
            "upcoming_invoices": _upcoming_invoices(customer_id, now=timezone.now()),
            "plotly_src": plotly_src(),
        }
        return super().change_view(request, object_id, form_url, extra_context)


def _upcoming_invoices(customer_id: str, *, now) -> list[dict]:
    """What each active subscription's open period would be invoiced now."""
    upcoming = []
    for subscription_id in Subscription.objects.filter(
        customer_id=customer_id, status=SubscriptionStatus.ACTIVE
    ).values_list("subscription_id", flat=True):
        subscription, lines = invoices.upcoming(subscription_id, now=now)
        upcoming.append(_upcoming_summary(subscription, lines))
    return upcoming


def _upcoming_summary(subscription: Subscription, lines) -> dict:
    currency = subscription.product.currency
    return {
        "subscription": subscription,
        "period": subscription.period(subscription.period_index),
        "lines": [(line, format_minor(line.amount_minor, currency)) for line in lines],
        "total": format_minor(sum(line.amount_minor for line in lines), currency),
    }


def _usage_links(customer_id: str) -> list[tuple[str, str]]:
    """Analytics pages of the meters this customer's products use."""
    meters = (
        ProductMeter.objects.filter(product__subscriptions__customer_id=customer_id)
        .select_related("meter")
        .distinct()
    )
    links = []
    for product_meter in meters:
        try:
            url = reverse("admin:meters_meter_analytics", args=[quote(product_meter.meter_id)])
        except Exception:  # noqa: BLE001 - the analytics page is optional
            continue
        links.append((product_meter.meter.name, f"{url}?{urlencode({'customer': customer_id})}"))
    return links


CHART_DAYS = 30


def _usage_charts(customer_id: str, *, now) -> list[dict]:
    """Daily usage of the last 30 days for each meter the customer's products use."""
    start = (now - timedelta(days=CHART_DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    meters = {
        pm.meter_id: pm.meter
        for pm in ProductMeter.objects.filter(
            product__subscriptions__customer_id=customer_id
        ).select_related("meter")
    }
    return [
        {
            "name": meter.name,
            **analytics.plotly_series(
                meter, analytics.usage_series(meter, start, now, "day", customer_id=customer_id)
            ),
        }
        for meter in sorted(meters.values(), key=lambda m: m.name)
    ]


class ProductMeterInline(admin.TabularInline):
    model = ProductMeter
    extra = 0
    fields = (
        "position",
        "meter",
        "price_per_unit",
        "free_threshold",
        "credit_entitlement",
        "meter_units_per_credit",
        "pricing",
    )
    readonly_fields = fields
    can_delete = False

    @admin.display(description="Tiers, packages, limits")
    def pricing(self, obj: ProductMeter) -> str:
        """The extensions of the price (products/pricing.py) in words, with a worked example."""
        return describe(
            MeterPricing.of(obj), free_threshold=obj.free_threshold, currency=obj.product.currency
        )

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Product)
class ProductAdmin(PermittedActionsMixin, admin.ModelAdmin):
    list_display = ["name", "product_id", "price", "interval", "meter_count", "archived_at"]
    list_filter = [("archived_at", admin.EmptyFieldListFilter), "currency", "interval_unit"]
    search_fields = ["=product_id", "name"]
    readonly_fields = [
        "product_id",
        "currency",
        "fixed_price_minor",
        "interval_unit",
        "interval_count",
        "created_at",
        "updated_at",
        "archived_at",
        "cycle_limits",
    ]
    fields = [
        "name",
        "description",
        "tax_category",
        "grace_period_minutes",
        "metadata",
        *readonly_fields,
    ]
    inlines = [ProductMeterInline]

    @admin.display(description="Cycle minimum / maximum")
    def cycle_limits(self, product: Product) -> str:
        """The cycle's limits of the usage lines, and where tiers, packages and limits change."""
        limits = [
            f"{word} {format_minor(getattr(product, name), product.currency)}"
            for word, name in (("minimum", "minimum_amount"), ("maximum", "maximum_amount"))
            if getattr(product, name) is not None
        ]
        if not product.pk:
            return ", ".join(limits)
        url = reverse("admin:products_product_pricing", args=[quote(product.pk)])
        return format_html(
            '{} <a href="{}">Edit tiers, packages and limits</a>', ", ".join(limits) or "none.", url
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        custom = [
            path(
                "pricing-example/",
                wrap(self.pricing_example_view),
                name="products_product_pricing_example",
            ),
            path(
                "<str:object_id>/pricing/",
                wrap(self.pricing_view),
                name="products_product_pricing",
            ),
        ]
        return custom + super().get_urls()

    def pricing_view(self, request, object_id: str):
        """Edit each money meter's tiers, package and limits, and the cycle's limits, through
        `services.update_product` (the API's rules, audited), with a live example per meter."""
        product = get_object_or_404(Product, pk=unquote(object_id))
        if not self.has_change_permission(request, product):
            raise PermissionDenied
        pricing_forms = PricingForms(product, request.POST if request.method == "POST" else None)
        valid_post = request.method == "POST" and pricing_forms.is_valid()
        if valid_post and pricing_forms.save(now=timezone.now()):
            messages.success(request, "The prices were saved.")
            return redirect(reverse("admin:products_product_change", args=[quote(product.pk)]))
        return TemplateResponse(
            request,
            "admin/products/product/pricing_form.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"Prices of “{product.name}”",
                "product": product,
                "forms": pricing_forms,
                "example_url": reverse("admin:products_product_pricing_example"),
            },
        )

    def pricing_example_view(self, request):
        """POST a draft meter price; answer the example the invoice's rule gives (JSON)."""
        if request.method != "POST":
            return JsonResponse({"errors": [{"field": "", "message": "POST only."}]}, status=405)
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            body = exact_loads(request.body or b"null")
        except ValueError:
            return JsonResponse(
                {"errors": [{"field": "", "message": "Not valid JSON."}]}, status=400
            )
        currency = body.get("currency") if isinstance(body, dict) else None
        if currency not in CURRENCIES:
            currency = "USD"
        try:
            return JsonResponse(pricing_example(body, currency=currency))
        except InvalidInput as exc:
            return JsonResponse({"errors": exc.errors}, status=422)

    def has_add_permission(self, request) -> bool:
        # Prices are created through the API (or seed_demo), which validates the whole price.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(meters_total=Count("product_meters"))

    def save_model(self, request, obj, form, change) -> None:
        """Saved in place (prices are read-only here), and logged like a service change."""
        before = services.product_state(Product.objects.select_for_update().get(pk=obj.pk))
        super().save_model(request, obj, form, change)
        services.record_admin_save(obj, before=before)

    @admin.display(description="Fixed fee", ordering="fixed_price_minor")
    def price(self, product: Product) -> str:
        return format_minor(product.fixed_price_minor, product.currency)

    @admin.display(description="Every")
    def interval(self, product: Product) -> str:
        return f"{product.interval_count} {product.interval_unit}"

    @admin.display(description="Meters", ordering="meters_total")
    def meter_count(self, product: Product) -> int:
        return product.meters_total  # type: ignore[attr-defined]  # get_queryset's


def plan_history_rows(subscription: Subscription) -> list[tuple[str, str, int]]:
    """(from, product name, quantity) for each plan the subscription has been on, oldest first."""
    changes = list(
        AuditEntry.objects.filter(
            object_type="products.subscription",
            object_id=subscription.subscription_id,
            action="plan_changed",
        ).order_by("created_at", "id")
    )
    first = changes[0].before if changes else None
    plans = [
        (
            subscription.anchor.isoformat(),
            first["product_id"] if first else subscription.product_id,
            first["quantity"] if first else subscription.quantity,
        )
    ]
    for change in changes:
        after = change.after or {}  # a plan change always logs the plan it moved to
        at = change.details.get("at", change.created_at.isoformat())
        plans.append((at, after.get("product_id"), after.get("quantity")))
    names = dict(Product.objects.filter(pk__in={p for _, p, _ in plans}).values_list("pk", "name"))
    return [(at, f"{names.get(p, p)} ({p})", quantity) for at, p, quantity in plans]


class ChangePlanForm(forms.Form):
    """The change-plan call's body, as staff fill it in (the same rules check it)."""

    product = forms.ModelChoiceField(queryset=Product.objects.none())
    quantity = forms.IntegerField(min_value=1, max_value=2_147_483_647, initial=1)
    proration_billing_mode = forms.ChoiceField(
        choices=[(mode, mode) for mode in plan_changes.PRORATION_MODES]
    )
    effective_at = forms.ChoiceField(
        choices=[("immediately", "immediately"), ("next_billing_date", "next_billing_date")]
    )
    cancel_scheduled_change_plan = forms.BooleanField(
        required=False, help_text="Replace the plan change scheduled for the next billing date."
    )

    def __init__(self, *args, subscription: Subscription, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["product"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Product.objects.filter(
            archived_at__isnull=True, currency=subscription.product.currency
        ).order_by("name", "product_id")

    def arguments(self) -> dict:
        data = self.cleaned_data
        return {
            "product_id": data["product"].pk,
            "quantity": data["quantity"],
            "mode": data["proration_billing_mode"],
            "replace": data["cancel_scheduled_change_plan"],
        }


def _preview(subscription_id: str, form: ChangePlanForm, *, now) -> dict:
    """What the change would charge now, from the API's own preview (nothing kept)."""
    arguments = form.arguments()
    if form.cleaned_data["effective_at"] == "next_billing_date":
        schedule, _ = plan_changes.preview_schedule(
            subscription_id, **arguments, now=now, render=lambda _: {}
        )
        return {"scheduled": True, "lines": [], "total": None, "schedule": schedule}
    result, _ = plan_changes.preview_change_plan(
        subscription_id, **arguments, now=now, render=lambda _: {}
    )
    currency = result.invoice.currency
    return {
        "scheduled": False,
        "period": result.period,
        "lines": [(line, format_minor(line.amount_minor, currency)) for line in result.lines],
        "total": format_minor(result.invoice.total_minor, currency),
        "next_billing_date": result.subscription.current_period_end,
    }


@admin.register(Subscription)
class SubscriptionAdmin(PermittedActionsMixin, admin.ModelAdmin):
    list_display = [
        "subscription_id",
        "customer",
        "product",
        "status",
        "current_period_start",
        "current_period_end",
        "cancel_at_next_billing_date",
    ]
    list_filter = ["status", "cancel_at_next_billing_date", "product"]
    search_fields = ["=subscription_id", "=customer__customer_id", "customer__email"]
    list_select_related = ["customer", "product"]
    readonly_fields = [
        "subscription_id",
        "customer",
        "product",
        "status",
        "anchor",
        "interval_unit",
        "interval_count",
        "period_index",
        "current_period_start",
        "current_period_end",
        "cancelled_at",
        "created_at",
    ]
    fields = [
        *readonly_fields,
        "cancel_at_next_billing_date",
        "metadata",
        "plan_history",
        "change_plan_link",
        "upcoming_invoice",
    ]
    inlines = [InvoiceInline]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "plan_history", "change_plan_link", "upcoming_invoice"]

    @admin.display(description="Change plan")
    def change_plan_link(self, subscription: Subscription) -> str:
        if subscription.status != SubscriptionStatus.ACTIVE:
            return "-"
        url = reverse("admin:products_subscription_change_plan", args=[quote(subscription.pk)])
        return format_html('<a href="{}">Change plan, with a preview of the charge</a>', url)

    def get_urls(self):
        custom = [
            path(
                "<path:object_id>/change-plan/",
                self.admin_site.admin_view(self.change_plan_view),
                name="products_subscription_change_plan",
            )
        ]
        return custom + super().get_urls()

    def change_plan_view(self, request, object_id: str):
        """Pick the product, seats, mode and moment; "Preview" shows the lines the change would
        invoice (the API's preview: the change itself, rolled back); "Confirm" makes it. The
        change is audit-logged as the staff user. Billing admins only (change permission)."""
        subscription = get_object_or_404(
            Subscription.objects.select_related("product", "customer"), pk=unquote(object_id)
        )
        if not self.has_change_permission(request, subscription):
            raise PermissionDenied
        form = ChangePlanForm(
            request.POST if request.method == "POST" else None, subscription=subscription
        )
        preview = None
        if request.method == "POST" and form.is_valid():
            now = timezone.now()
            try:
                if "confirm" in request.POST:
                    return self._confirm_change(request, subscription, form, now=now)
                preview = _preview(subscription.pk, form, now=now)
                preview["as_of"] = now
            except DomainError as error:
                form.add_error(None, error.message)
        return TemplateResponse(
            request,
            "admin/products/subscription/change_plan.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Change the plan of {subscription.pk}",
                "subscription": subscription,
                "opts": self.model._meta,
                "form": form,
                "preview": preview,
            },
        )

    def _confirm_change(self, request, subscription: Subscription, form: ChangePlanForm, *, now):
        arguments = form.arguments()
        if form.cleaned_data["effective_at"] == "next_billing_date":
            plan_changes.schedule_plan_change(subscription.pk, **arguments, now=now)
            messages.success(request, "The plan change is scheduled for the next billing date.")
        else:
            result = plan_changes.change_plan(subscription.pk, **arguments, now=now)
            total = format_minor(result.invoice.total_minor, result.invoice.currency)
            messages.success(
                request, f"The plan is changed; invoice {result.invoice.number} for {total}."
            )
        url = reverse("admin:products_subscription_change", args=[quote(subscription.pk)])
        return HttpResponseRedirect(url)

    @admin.display(description="Plan history")
    def plan_history(self, subscription: Subscription) -> str:
        """Every product the subscription was on and from when, read from the audit log of
        its plan changes (each one logged with its moment)."""
        return format_html_join("", "<div>from {}: {} x {}</div>", plan_history_rows(subscription))

    @admin.display(description="Upcoming invoice")
    def upcoming_invoice(self, subscription: Subscription) -> str:
        """The open period as it would be invoiced now (empty once the subscription ended)."""
        if subscription.status != SubscriptionStatus.ACTIVE:
            return "-"
        _, lines = invoices.upcoming(subscription.subscription_id, now=timezone.now())
        return render_to_string(
            "admin/products/upcoming_invoice.html",
            {"upcoming": _upcoming_summary(subscription, lines)},
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = (
        "kind",
        "description",
        "consumed_units",
        "free_units",
        "chargeable_units",
        "unit_price",
        "credits_applied",
        "amount_minor",
        "events_counted",
        "events",
    )
    readonly_fields = fields

    @admin.display(description="Events")
    def events(self, line: InvoiceLine) -> str:
        """The events the line counted (products/proofs.py), for a usage line."""
        if line.kind != "usage" or line.meter_id is None:
            return ""
        url = reverse("admin:products_invoice_line_events", args=[line.invoice_id, line.position])
        return format_html('<a href="{}">List, CSV</a>', url)


class PaymentInline(ReadOnlyInline):
    """Every attempt to collect the invoice, with what the provider said and what was refunded."""

    model = Payment
    fields = readonly_fields = (
        "payment_id",
        "retry_attempt",
        "status",
        "amount",
        "due_at",
        "provider_payment_id",
        "card",
        "error_code",
        "error_message",
        "refunded",
        "created_at",
        "finished_at",
    )
    ordering = ["retry_attempt"]

    @admin.display(description="Amount")
    def amount(self, payment: Payment) -> str:
        return format_minor(payment.amount_minor, payment.currency)

    @admin.display(description="Card")
    def card(self, payment: Payment) -> str:
        if not payment.card_last_four:
            return "-"
        return f"{payment.card_network or 'card'} ending {payment.card_last_four}"

    @admin.display(description="Refunded")
    def refunded(self, payment: Payment) -> str:
        refunds = [
            f"{format_minor(r.amount_minor, r.currency)} ({r.status})"
            for r in payment.refunds.all()
        ]
        return ", ".join(refunds) or "-"


@admin.register(Invoice)
class InvoiceAdmin(PermittedActionsMixin, admin.ModelAdmin):
    list_display = [
        "invoice_id",
        "number",
        "kind",
        "customer",
        "subscription",
        "period_start",
        "period_end",
        "status",
        "total",
        "print_link",
    ]
    list_filter = ["status", "kind", "currency", "period_end"]
    search_fields = [
        "=invoice_id",
        "=number",
        "=customer__customer_id",
        "=subscription__subscription_id",
    ]
    list_select_related = ["customer", "subscription"]
    date_hierarchy = "period_end"
    inlines = [InvoiceLineInline, PaymentInline]
    actions = [
        "finalize_invoices",
        "mark_invoices_paid",
        "void_invoices",
        "reissue_invoices",
        "retry_payments",
        "refund_invoices",
    ]

    def has_lifecycle_permission(self, request) -> bool:
        """Billing admins move invoices through their lifecycle; nobody edits one."""
        return request.user.has_perm(INVOICE_LIFECYCLE)

    def _each(self, request, queryset, transition, done: str) -> None:
        """Apply one lifecycle transition to each selected invoice; report refusals by id."""
        ok, refused = 0, []
        for invoice_id in queryset.values_list("invoice_id", flat=True):
            try:
                transition(invoice_id)
                ok += 1
            except DomainError as exc:
                refused.append(f"{invoice_id}: {exc.message}")
        if ok:
            self.message_user(request, f"{ok} invoice(s) {done}.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.ERROR)

    @admin.action(description="Finalize selected drafts now", permissions=["lifecycle"])
    def finalize_invoices(self, request, queryset):
        now = timezone.now()
        self._each(request, queryset, lambda i: invoices.finalize(i, now=now), "finalized")

    @admin.action(description="Mark selected invoices paid", permissions=["lifecycle"])
    def mark_invoices_paid(self, request, queryset):
        now = timezone.now()
        self._each(request, queryset, lambda i: invoices.mark_paid(i, now=now), "marked paid")

    @admin.action(description="Void selected invoices", permissions=["lifecycle"])
    def void_invoices(self, request, queryset):
        now = timezone.now()
        reason = f"Voided in the admin by {request.user.get_username()}"
        self._each(request, queryset, lambda i: invoices.void(i, reason=reason, now=now), "voided")

    @admin.action(description="Reissue selected void invoices", permissions=["lifecycle"])
    def reissue_invoices(self, request, queryset):
        now = timezone.now()
        self._each(request, queryset, lambda i: invoices.reissue(i, now=now), "reissued")

    @admin.action(description="Retry payment of selected invoices now", permissions=["lifecycle"])
    def retry_payments(self, request, queryset):
        now = timezone.now()
        reason = f"Retried in the admin by {request.user.get_username()}"
        self._each(
            request,
            queryset,
            lambda i: payments.retry_now(i, now=now, reason=reason),
            "queued for a payment attempt now",
        )

    @admin.action(description="Refund selected paid invoices in full", permissions=["lifecycle"])
    def refund_invoices(self, request, queryset):
        now = timezone.now()
        reason = f"Refunded in the admin by {request.user.get_username()}"
        self._each(
            request,
            queryset,
            lambda i: payments.refund(i, reason=reason, now=now),
            "refunded (see each invoice's payments)",
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Total", ordering="total_minor")
    def total(self, invoice: Invoice) -> str:
        return format_minor(invoice.total_minor, invoice.currency)

    @admin.display(description="")
    def print_link(self, invoice: Invoice) -> str:
        url = reverse("admin:products_invoice_print", args=[invoice.pk])
        return format_html('<a href="{}">Print</a>', url)

    def get_urls(self):
        custom = [
            path(
                "<str:invoice_id>/print/",
                self.admin_site.admin_view(self.print_view),
                name="products_invoice_print",
            ),
            path(
                "<str:invoice_id>/pdf/",
                self.admin_site.admin_view(self.pdf_view),
                name="products_invoice_pdf",
            ),
            path(
                "<str:invoice_id>/lines/<int:position>/events/",
                self.admin_site.admin_view(self.line_events_view),
                name="products_invoice_line_events",
            ),
        ]
        return custom + super().get_urls()

    def line_events_view(self, request, invoice_id: str, position: int):
        return line_events_view(
            request, invoice_id, position, can_view=self.has_view_permission(request)
        )

    def pdf_view(self, request, invoice_id: str):
        """The invoice as a PDF download, for sending to the customer."""
        invoice = get_object_or_404(
            Invoice.objects.select_related("customer", "subscription__product"), pk=invoice_id
        )
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied
        response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
        name = invoice.number or invoice.invoice_id
        response["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
        return response

    def print_view(self, request, invoice_id: str):
        """A printable invoice for staff: the lines with units, prices and amounts."""
        invoice = get_object_or_404(
            Invoice.objects.select_related("customer", "subscription__product"), pk=invoice_id
        )
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied
        lines = list(invoice.lines.select_related("meter"))
        usage_total = sum(line.amount_minor for line in lines if line.kind != "fixed_fee")
        return TemplateResponse(
            request,
            "products/invoice_print.html",
            {
                "invoice": invoice,
                "lines": [
                    (line, format_minor(line.amount_minor, invoice.currency)) for line in lines
                ],
                "total": format_minor(invoice.total_minor, invoice.currency),
                "usage_total": format_minor(usage_total, invoice.currency),
                "title": f"Invoice {invoice.invoice_id}",
            },
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what the payment provider did: read, never edited here."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "payment_id",
        "invoice",
        "customer",
        "retry_attempt",
        "status",
        "amount_minor",
        "currency",
        "due_at",
        "error_code",
        "created_at",
    ]
    list_filter = ["status", "retry_attempt", "created_at"]
    search_fields = ["=payment_id", "=invoice__invoice_id", "=provider_payment_id"]
    list_select_related = ["invoice", "customer"]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["refund_id", "payment", "amount_minor", "currency", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["=refund_id", "=payment__payment_id", "=provider_refund_id"]


@admin.register(Dunning)
class DunningAdmin(ReadOnlyAdmin):
    list_display = ["invoice", "subscription", "customer", "status", "created_at", "updated_at"]
    list_filter = ["status"]


@admin.register(ProviderEvent)
class ProviderEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "event_type", "object_id", "outcome", "received_at"]
    list_filter = ["event_type"]
    search_fields = ["=event_id", "=object_id"]


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(ReadOnlyAdmin):
    """Dodo's checkout sessions as the API created them and what completing them started."""

    list_display = [
        "session_id",
        "product",
        "customer",
        "status",
        "subscription",
        "created_at",
        "expires_at",
        "completed_at",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["=session_id", "=customer__customer_id", "=subscription__subscription_id"]
    list_select_related = ["product", "customer", "subscription"]
    exclude = ["setup_client_secret"]  # the browser's key to the SetupIntent, not for staff
