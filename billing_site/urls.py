"""URLs: the API under /api/ (no /v1, as the Dodo SDK expects), its docs, and the staff admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from billing_site import views as staff_views
from billing_site.api import views as api_views
from credits import api as credits_api
from events import api as events_api
from meters import api as meters_api
from portal import api as portal_api
from portal import views as portal_views
from products import api as products_api
from products import (
    checkout_api,
    checkout_views,
    explain_api,
    invoice_api,
    payment_api,
    plan_change_api,
)

api_patterns = [
    path("events/ingest", events_api.IngestView.as_view(), name="events-ingest"),
    path("events", events_api.EventListView.as_view(), name="events-list"),
    # An extension; before the detail route, which takes any id (explain_api says how an
    # event stored as "x/explain" is still found).
    path(
        "events/<path:event_id>/explain",
        explain_api.EventExplainView.as_view(),
        name="events-explain",
    ),
    path("events/<path:event_id>", events_api.EventDetailView.as_view(), name="events-detail"),
    path("customers", products_api.CustomerListCreateView.as_view(), name="customers"),
    path(
        "customers/<str:customer_id>",
        products_api.CustomerDetailView.as_view(),
        name="customers-detail",
    ),
    path("meters", meters_api.MeterListCreateView.as_view(), name="meters"),
    path("meters/<str:meter_id>", meters_api.MeterDetailView.as_view(), name="meters-detail"),
    path(
        "meters/<str:meter_id>/health",
        meters_api.MeterHealthView.as_view(),
        name="meters-health",
    ),
    path(
        "meters/<str:meter_id>/unarchive",
        meters_api.MeterUnarchiveView.as_view(),
        name="meters-unarchive",
    ),
    path("products", products_api.ProductListCreateView.as_view(), name="products"),
    path(
        "products/<str:product_id>",
        products_api.ProductDetailView.as_view(),
        name="products-detail",
    ),
    path(
        "products/<str:product_id>/unarchive",
        products_api.ProductUnarchiveView.as_view(),
        name="products-unarchive",
    ),
    path("subscriptions", products_api.SubscriptionListCreateView.as_view(), name="subscriptions"),
    path(
        "subscriptions/<str:subscription_id>",
        products_api.SubscriptionDetailView.as_view(),
        name="subscriptions-detail",
    ),
    path(
        "subscriptions/<str:subscription_id>/change-plan",
        plan_change_api.ChangePlanView.as_view(),
        name="subscriptions-change-plan",
    ),
    path(
        "subscriptions/<str:subscription_id>/change-plan/preview",
        plan_change_api.PreviewChangePlanView.as_view(),
        name="subscriptions-change-plan-preview",
    ),
    path(
        "subscriptions/<str:subscription_id>/change-plan/scheduled",
        plan_change_api.ScheduledChangeView.as_view(),
        name="subscriptions-change-plan-scheduled",
    ),
    path(
        "subscriptions/<str:subscription_id>/usage-history",
        products_api.UsageHistoryView.as_view(),
        name="subscriptions-usage-history",
    ),
    path("invoices", invoice_api.InvoiceListView.as_view(), name="invoices"),
    path(
        "invoices/<str:invoice_id>",
        invoice_api.InvoiceDetailView.as_view(),
        name="invoices-detail",
    ),
    path(
        "invoices/<str:invoice_id>/lines/<str:position>/events",
        explain_api.InvoiceLineEventsView.as_view(),
        name="invoices-line-events",
    ),
    path(
        "invoices/<str:invoice_id>/finalize",
        invoice_api.InvoiceFinalizeView.as_view(),
        name="invoices-finalize",
    ),
    path(
        "invoices/<str:invoice_id>/mark-paid",
        invoice_api.InvoiceMarkPaidView.as_view(),
        name="invoices-mark-paid",
    ),
    path(
        "invoices/<str:invoice_id>/void",
        invoice_api.InvoiceVoidView.as_view(),
        name="invoices-void",
    ),
    path(
        "invoices/<str:invoice_id>/reissue",
        invoice_api.InvoiceReissueView.as_view(),
        name="invoices-reissue",
    ),
    path(
        "invoices/<str:invoice_id>/credit-notes",
        invoice_api.InvoiceCreditNoteView.as_view(),
        name="invoices-credit-notes",
    ),
    path(
        "subscriptions/<str:subscription_id>/upcoming-invoice",
        invoice_api.UpcomingInvoiceView.as_view(),
        name="subscriptions-upcoming-invoice",
    ),
    path(
        "customers/<str:customer_id>/credit-entitlements",
        credits_api.CustomerEntitlementsView.as_view(),
        name="customers-credit-entitlements",
    ),
    path(
        "subscriptions/<str:subscription_id>/credit-usage",
        credits_api.SubscriptionCreditUsageView.as_view(),
        name="subscriptions-credit-usage",
    ),
    path(
        "credit-entitlements",
        credits_api.EntitlementListCreateView.as_view(),
        name="credit-entitlements",
    ),
    path(
        "credit-entitlements/<str:entitlement_id>",
        credits_api.EntitlementDetailView.as_view(),
        name="credit-entitlements-detail",
    ),
    path(
        "credit-entitlements/<str:entitlement_id>/undelete",
        credits_api.EntitlementUndeleteView.as_view(),
        name="credit-entitlements-undelete",
    ),
    path(
        "credit-entitlements/<str:entitlement_id>/balances",
        credits_api.BalanceListView.as_view(),
        name="credit-balances",
    ),
    path(
        "credit-entitlements/<str:entitlement_id>/balances/<str:customer_id>",
        credits_api.BalanceDetailView.as_view(),
        name="credit-balances-detail",
    ),
    path(
        "credit-entitlements/<str:entitlement_id>/balances/<str:customer_id>/ledger-entries",
        credits_api.LedgerEntryCreateView.as_view(),
        name="credit-ledger-entries",
    ),
    path(
        "credit-entitlements/<str:entitlement_id>/balances/<str:customer_id>/ledger",
        credits_api.LedgerListView.as_view(),
        name="credit-ledger",
    ),
    path(
        "credit-entitlements/<str:entitlement_id>/balances/<str:customer_id>/grants",
        credits_api.GrantListView.as_view(),
        name="credit-grants",
    ),
    path(
        "customers/<str:customer_id>/payment-method-session",
        payment_api.PaymentMethodSessionView.as_view(),
        name="customers-payment-method-session",
    ),
    path("payments", payment_api.PaymentListView.as_view(), name="payments"),
    path(
        "payments/<str:payment_id>",
        payment_api.PaymentDetailView.as_view(),
        name="payments-detail",
    ),
    path(
        "subscriptions/<str:subscription_id>/charge",
        payment_api.SubscriptionChargeView.as_view(),
        name="subscriptions-charge",
    ),
    path(
        "providers/stripe/webhook",
        payment_api.StripeWebhookView.as_view(),
        name="providers-stripe-webhook",
    ),
    path("checkouts", checkout_api.CheckoutSessionCreateView.as_view(), name="checkouts"),
    path(
        "checkouts/preview",
        checkout_api.CheckoutPreviewView.as_view(),
        name="checkouts-preview",
    ),
    path(
        "checkouts/<str:session_id>",
        checkout_api.CheckoutSessionDetailView.as_view(),
        name="checkouts-detail",
    ),
    path(
        "customers/<str:customer_id>/customer-portal/session",
        portal_api.CustomerPortalSessionView.as_view(),
        name="customers-customer-portal-session",
    ),
    path(
        "customers/<str:customer_id>/usage",
        portal_api.CustomerUsageView.as_view(),
        name="customers-usage",
    ),
    path(
        "subscriptions/<str:subscription_id>/usage-alerts",
        portal_api.UsageAlertListCreateView.as_view(),
        name="subscriptions-usage-alerts",
    ),
    path(
        "subscriptions/<str:subscription_id>/usage-alerts/<str:alert_id>",
        portal_api.UsageAlertDetailView.as_view(),
        name="subscriptions-usage-alerts-detail",
    ),
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs", api_views.ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
]

# The customer portal: entered through a session link, then a cookie scoped to /portal/.
portal_patterns = [
    path("session/<str:token>", portal_views.enter, name="portal-enter"),
    path("", portal_views.home, name="portal-home"),
    path("history/", portal_views.history, name="portal-history"),
    path("invoices/", portal_views.invoice_list, name="portal-invoices"),
    path("invoices/<str:invoice_id>/", portal_views.invoice_detail, name="portal-invoice"),
    path("invoices/<str:invoice_id>/pdf", portal_views.invoice_pdf_view, name="portal-invoice-pdf"),
    path("credits/", portal_views.credits, name="portal-credits"),
    path("events/", portal_views.events, name="portal-events"),
    path("events.csv", portal_views.events_csv, name="portal-events-csv"),
    path("logout", portal_views.logout, name="portal-logout"),
    path("plotly.min.js", portal_views.plotly_js, name="portal-plotly-js"),
]

urlpatterns = [
    path("api/", include(api_patterns)),
    path("portal/", include(portal_patterns)),
    path("admin/dashboard/", admin.site.admin_view(staff_views.staff_home), name="staff-dashboard"),
    path(
        "admin/dashboard/plotly.min.js",
        admin.site.admin_view(staff_views.plotly_js, cacheable=True),
        name="staff-plotly-js",
    ),
    path("admin/", admin.site.urls),
    # The page a checkout session's checkout_url points at (for customers: no staff login).
    path("checkout/<str:session_id>", checkout_views.checkout_page, name="checkout-page"),
    path("", api_views.home_redirect),
]

handler400 = "billing_site.api.views.bad_request"
handler403 = "billing_site.api.views.permission_denied"
handler404 = "billing_site.api.views.not_found"
handler500 = "billing_site.api.views.server_error"
