"""Dodo's checkout sessions over HTTP: `POST /checkouts`, `GET /checkouts/{id}` and
`POST /checkouts/preview` (thin views over products/checkout.py; the page the customer
completes is products/checkout_views.py)."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.serializers import MetadataField
from billing_site.api.strict import LOCALE, StrictQueryMixin, StrictSerializer
from billing_site.errors import InvalidInput
from billing_site.wire import decimal_text, timestamp_text
from products import checkout, payments
from products.models import CheckoutSession

EXTENSION = "An extension of this server, not part of Dodo's API."


def _json(**kwargs) -> serializers.JSONField:
    return serializers.JSONField(required=False, allow_null=True, **kwargs)


class CheckoutSessionSerializer(StrictSerializer):
    """Every field of Dodo's CheckoutSessionCreateParams; products/checkout.py checks the
    nested ones and refuses, naming them, those that need Dodo's own services."""

    product_cart = serializers.JSONField()
    allowed_payment_method_types = _json()
    billing_address = _json()
    billing_currency = serializers.CharField(required=False, allow_null=True)
    cancel_url = serializers.CharField(required=False, allow_null=True, max_length=2048)
    confirm = serializers.BooleanField(required=False)
    custom_fields = _json()
    customer = _json()
    customer_business_name = serializers.CharField(required=False, allow_null=True, max_length=255)
    customization = _json()
    discount_code = _json()
    discount_codes = _json()
    feature_flags = _json()
    force_3ds = _json()
    mandate_min_amount_inr_paise = _json()
    metadata = MetadataField(required=False, allow_null=True)
    minimal_address = serializers.BooleanField(required=False, allow_null=True)
    payment_method_id = _json()
    product_collection_id = _json()
    return_url = serializers.CharField(required=False, allow_null=True, max_length=2048)
    short_link = serializers.BooleanField(required=False)  # the URL is short either way
    show_saved_payment_methods = serializers.BooleanField(required=False)
    subscription_data = _json()
    tax_id = _json()


def _checked(serializer_class, request) -> checkout.CheckoutRequest:
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return checkout.checkout_request(data.validated_data)


def checkout_url(request, session: CheckoutSession) -> str:
    path = reverse("checkout-page", args=[session.session_id])
    base = settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")
    return base + path


def _nullable_text(**kwargs) -> serializers.CharField:
    return serializers.CharField(allow_null=True, **kwargs)


SESSION_ANSWER = inline_serializer(
    "CheckoutSessionResponse",
    {
        "session_id": serializers.CharField(),
        "checkout_url": serializers.CharField(),
        "client_secret": _nullable_text(help_text="Always null: confirm is not offered."),
        "payment_id": _nullable_text(help_text="Always null: confirm is not offered."),
        "publishable_key": _nullable_text(help_text="Always null: confirm is not offered."),
    },
)
SESSION_STATUS = inline_serializer(
    "CheckoutSessionStatus",
    {
        "id": serializers.CharField(),
        "created_at": serializers.DateTimeField(),
        "customer_email": _nullable_text(),
        "customer_name": _nullable_text(),
        "payment_id": _nullable_text(help_text="The first invoice's payment, once it exists."),
        "payment_status": _nullable_text(),
        "status": serializers.ChoiceField(
            choices=["open", "completed", "expired"], help_text=EXTENSION
        ),
        "subscription_id": _nullable_text(
            help_text="The subscription completing the session started. " + EXTENSION
        ),
    },
)


class CheckoutSessionCreateView(StrictQueryMixin, APIView):
    @extend_schema(
        request=CheckoutSessionSerializer,
        responses=SESSION_ANSWER,
        description="Dodo's checkout_sessions.create for one usage-based subscription product: "
        "answers {session_id, checkout_url}; the customer completes the page at checkout_url. "
        "Fields needing Dodo's own services (discount codes, tax ids, custom fields, "
        "confirm, adaptive currency) are refused with a 422 naming them unless neutral.",
    )
    def post(self, request):
        checked = _checked(CheckoutSessionSerializer, request)
        session = checkout.create_session(checked, now=timezone.now())
        return Response(
            {
                "session_id": session.session_id,
                "checkout_url": checkout_url(request, session),
                # Only for `confirm: true`, which is not offered here.
                "client_secret": None,
                "payment_id": None,
                "publishable_key": None,
            }
        )


class CheckoutSessionDetailView(StrictQueryMixin, APIView):
    @extend_schema(
        responses=SESSION_STATUS,
        description="Dodo's checkout_sessions.retrieve, plus `status` (open, completed, "
        "expired) and `subscription_id` (the subscription it started): " + EXTENSION,
    )
    def get(self, request, session_id: str):
        session = get_object_or_404(
            CheckoutSession.objects.select_related("customer"), pk=session_id
        )
        return Response(checkout.session_status(session, now=timezone.now()))


def _meter(pm) -> dict:
    return {
        "measurement_unit": pm.meter.measurement_unit,
        "name": pm.meter.name,
        "price_per_unit": decimal_text(pm.price_per_unit),
        "description": pm.meter.description,
        "free_threshold": pm.free_threshold,
    }


def preview_data(checked: checkout.CheckoutRequest, *, now) -> dict:
    """Dodo's CheckoutSessionPreviewResponse. Nothing is due today: every period, the first
    included, is invoiced at its end (fee and usage); the recurring amount is the fixed fee
    before usage. No tax is computed: the merchant is the merchant of record (`is_byop`)."""
    product = checked.product
    currency = product.currency
    country = (checked.billing_address or {})["country"]
    fee = product.fixed_price_minor * checked.quantity
    next_billing = timestamp_text(
        checkout.first_period_end(product, checked.trial_period_days, now)
    )
    item = {
        "credit_entitlements": [
            {
                "credit_entitlement_id": link.credit_entitlement_id,
                "credit_entitlement_name": link.credit_entitlement.name,
                "credit_entitlement_unit": link.credit_entitlement.unit,
                "credits_amount": decimal_text(link.credits_amount),
            }
            for link in product.credit_entitlements.select_related("credit_entitlement")
        ],
        "currency": currency,
        "discounted_price": product.fixed_price_minor,
        "is_subscription": True,
        "is_usage_based": True,
        "meters": [
            _meter(pm)
            for pm in product.product_meters.select_related("meter")
            if pm.credit_entitlement_id is None
        ],
        "og_currency": currency,
        "og_price": product.fixed_price_minor,
        "product_id": product.product_id,
        "quantity": checked.quantity,
        "tax_category": product.tax_category,
        "tax_inclusive": bool(product.tax_inclusive),
        "tax_rate": 0,
        "addons": [],
        "description": product.description,
        "discount_amount": None,
        "discount_cycle": None,
        "monthly_equivalent": None,
        "name": product.name,
        "tax": None,
    }
    return {
        "billing_country": country,
        "currency": currency,
        "current_breakup": {"discount": 0, "subtotal": 0, "total_amount": 0, "tax": None},
        "is_byop": True,
        "payment_method_required": payments.provider_enabled(),
        "product_cart": [item],
        "total_price": fee,
        "next_billing_date": next_billing,
        "recurring_breakup": {"discount": 0, "subtotal": fee, "total_amount": fee, "tax": None},
        "subscriptions": None,
        "tax_id_business_name": None,
        "tax_id_err_msg": None,
        "tax_id_format_name": None,
        "total_tax": None,
        "trial_amount": None,  # a trial here is free
        "trial_period_days": checked.trial_period_days or None,
    }


class CheckoutPreviewView(StrictQueryMixin, APIView):
    # `?locale=`: no translations are kept, and Dodo's rule for a locale without one is the
    # base text.
    write_query_params = LOCALE

    @extend_schema(
        request=CheckoutSessionSerializer,
        description="Dodo's checkout_sessions.preview: what the session would charge, without "
        "storing anything. billing_address (its country) is required: it is the answer's "
        "billing_country.",
    )
    def post(self, request):
        checked = _checked(CheckoutSessionSerializer, request)
        if checked.billing_address is None:
            raise InvalidInput.from_errors(
                [{"field": "billing_address", "message": "Is required for a preview."}]
            )
        return Response(preview_data(checked, now=timezone.now()))
