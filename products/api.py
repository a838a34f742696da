"""Customers, products, subscriptions (with usage history) and invoices APIs."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.fields import (
    filter_exact,
    parse_datetime_value,
    parse_query_bool,
    parse_query_datetime,
)
from billing_site.api.pagination import page_params, paged_response
from billing_site.api.serializers import BusinessIdField, MetadataField
from billing_site.api.strict import (
    LOCALE,
    PAGING,
    StrictFieldsMixin,
    StrictQueryMixin,
    StrictSerializer,
    unsupported,
)
from billing_site.errors import DomainError, InvalidInput, NotFound
from billing_site.jsonutil import ExactJSONEncoder
from billing_site.money import CURRENCIES
from billing_site.periods import INTERVAL_UNITS
from billing_site.wire import decimal_text, timestamp_text
from credits.services import MAX_EXPIRES_AFTER_DAYS
from products import plan_changes, services
from products.addresses import validate_billing
from products.history import usage_history
from products.models import Customer, Product, Subscription
from products.wire import (
    SUBSCRIPTION_PREFETCH,
    SUBSCRIPTION_RELATED,
    customer_details,
    product_data,
    product_list_item,
    subscription_data,
)

# Dodo's `Locale` enum: the languages customer emails can be in.
LOCALES = (
    *("ar", "ca", "zh", "nl", "en", "fr", "de", "he", "id", "it", "ja", "ka", "ko", "ms"),
    *("pl", "pt", "ro", "ru", "es", "sv", "th", "tr"),
)


# Dodo's `CancellationFeedback` enum.
CANCELLATION_FEEDBACK = (
    "too_expensive",
    "missing_features",
    "switched_service",
    "unused",
    "customer_service",
    "low_quality",
    "too_complex",
    "other",
)


class Gone(DomainError):
    status = 410
    code = "GONE"


class CustomerSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    business_id = BusinessIdField()
    metadata = MetadataField(required=False)
    phone_number = serializers.CharField(
        max_length=32, required=False, allow_null=True, allow_blank=True
    )
    preferred_locale = serializers.ChoiceField(choices=LOCALES, required=False, allow_null=True)

    def validate_email(self, value: str) -> str:
        # Deliberately loose: Dodo accepts short test domains such as "a@b.c".
        local, _, domain = value.partition("@")
        if not local or not domain or any(c.isspace() for c in value):
            raise serializers.ValidationError("Enter an email address such as name@example.com.")
        return value

    class Meta:
        model = Customer
        fields = [
            "customer_id",
            "business_id",
            "email",
            "name",
            "phone_number",
            "preferred_locale",
            "metadata",
            "created_at",
        ]
        read_only_fields = ["customer_id", "created_at"]


class CustomerListCreateView(StrictQueryMixin, generics.ListCreateAPIView):
    serializer_class = CustomerSerializer
    query_params = ("email", "name", "created_at_gte", "created_at_lte", *PAGING)

    def get_queryset(self):
        params = self.request.query_params
        customers = Customer.objects.all()
        if params.get("email"):
            customers = customers.filter(email__iexact=params["email"])
        if params.get("name"):
            customers = customers.filter(name__icontains=params["name"])
        created_gte = parse_query_datetime(params, "created_at_gte")
        created_lte = parse_query_datetime(params, "created_at_lte")
        if created_gte is not None:
            customers = customers.filter(created_at__gte=created_gte)
        if created_lte is not None:
            customers = customers.filter(created_at__lte=created_lte)
        return customers

    @extend_schema(
        parameters=[
            OpenApiParameter("email", str, description="Exact match, case-insensitive."),
            OpenApiParameter("name", str, description="Partial match, case-insensitive."),
            OpenApiParameter("created_at_gte", str),
            OpenApiParameter("created_at_lte", str),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        response = super().create(request, *args, **kwargs)
        response.status_code = 200  # Dodo answers 200 with the customer
        return response


class CustomerDetailView(StrictQueryMixin, generics.RetrieveUpdateAPIView):
    serializer_class = CustomerSerializer
    queryset = Customer.objects.all()
    lookup_field = "customer_id"
    http_method_names = ["get", "patch", "head", "options"]


# --- products ------------------------------------------------------------------------------------


# Schemas for the OpenAPI document only (products/services.py validates, naming each bad field):
# they let clients, and the schema fuzz tests, build near-valid prices instead of arbitrary JSON.
_DECIMAL_SCHEMA = {"type": "string", "description": 'A decimal, such as "0.5".'}
_PRICE_SCHEMA = {
    "type": "string",
    "pattern": r"^[0-9]{1,5}(\.[0-9]{1,12})?$",
    "description": 'Minor units per unit, greater than 0: "0.1" is a tenth of a cent.',
}
_FREE_THRESHOLD_SCHEMA = {
    "type": "integer",
    "minimum": 0,
    "maximum": services.MAX_FREE_THRESHOLD,
    "nullable": True,
}
_LIMIT_SCHEMA = {
    "type": "integer",
    "minimum": 0,
    "maximum": services.MAX_FIXED_PRICE,
    "nullable": True,
    "description": "Whole minor units: the least or greatest amount of the meter's line.",
}
_MONEY_METER_SCHEMA = {
    "type": "object",
    "required": ["meter_id", "price_per_unit"],
    "properties": {
        "meter_id": {"type": "string"},
        "price_per_unit": _PRICE_SCHEMA,
        "free_threshold": _FREE_THRESHOLD_SCHEMA,
        # Extensions of Dodo's price (products/pricing.py).
        "package_size": {**_DECIMAL_SCHEMA, "description": "price_per_unit buys this many."},
        "package_rounding": {"type": "string", "enum": ["up", "down"], "nullable": True},
        "minimum_amount": _LIMIT_SCHEMA,
        "maximum_amount": _LIMIT_SCHEMA,
    },
}
_TIERED_METER_SCHEMA = {
    "type": "object",
    "description": "An extension of Dodo's price: tiers instead of one price per unit.",
    "required": ["meter_id", "tiers", "tier_mode"],
    "properties": {
        "meter_id": {"type": "string"},
        "price_per_unit": {"type": "string", "enum": ["0"], "nullable": True},
        "free_threshold": _FREE_THRESHOLD_SCHEMA,
        "tier_mode": {"type": "string", "enum": ["graduated", "volume"]},
        "tiers": {
            "type": "array",
            "minItems": 1,
            "maxItems": services.MAX_TIERS,
            "description": "up_to strictly increasing (inclusive); the last one null.",
            "items": {
                "type": "object",
                "required": ["up_to", "unit_price"],
                "properties": {
                    "up_to": {**_DECIMAL_SCHEMA, "nullable": True},
                    "unit_price": {**_DECIMAL_SCHEMA, "description": "Minor units, 0 or more."},
                    "flat_fee": {"type": "integer", "minimum": 0, "nullable": True},
                },
            },
        },
        "minimum_amount": _LIMIT_SCHEMA,
        "maximum_amount": _LIMIT_SCHEMA,
    },
}
_CREDIT_METER_SCHEMA = {
    "type": "object",
    "required": ["meter_id", "credit_entitlement_id", "meter_units_per_credit"],
    "properties": {
        "meter_id": {"type": "string"},
        "credit_entitlement_id": {"type": "string"},
        "meter_units_per_credit": _PRICE_SCHEMA,
        "free_threshold": _FREE_THRESHOLD_SCHEMA,
    },
}
PRICE_SCHEMA = {
    "type": "object",
    "required": ["type", "currency", "payment_frequency_interval"],
    "properties": {
        "type": {"type": "string", "enum": ["usage_based_price"]},
        "currency": {"type": "string", "enum": sorted(CURRENCIES)},
        "fixed_price": {"type": "integer", "minimum": 0, "maximum": services.MAX_FIXED_PRICE},
        "payment_frequency_count": {"type": "integer", "minimum": 1, "maximum": 1000},
        "payment_frequency_interval": {"type": "string", "enum": list(INTERVAL_UNITS)},
        "subscription_period_count": {
            "type": "integer",
            "minimum": 1,
            "maximum": services.MAX_PERIOD_COUNT,
        },
        "subscription_period_interval": {"type": "string", "enum": list(INTERVAL_UNITS)},
        "tax_inclusive": {"type": "boolean", "nullable": True},
        "meters": {
            "type": "array",
            "maxItems": services.MAX_METERS_PER_PRODUCT,
            "items": {"oneOf": [_MONEY_METER_SCHEMA, _TIERED_METER_SCHEMA, _CREDIT_METER_SCHEMA]},
        },
        # Extensions of Dodo's price (products/billing.py, cycle_limit_line).
        "minimum_amount": {
            **_LIMIT_SCHEMA,
            "description": "Extension. Whole minor units: the least the cycle's usage lines "
            "bill together (not the fixed fee); a usage_limit line adds the difference.",
        },
        "maximum_amount": {
            **_LIMIT_SCHEMA,
            "description": "Extension. Whole minor units: the most the cycle's usage lines "
            "bill together (not the fixed fee); a usage_limit line takes off the excess.",
        },
    },
}
CREDIT_LINKS_SCHEMA = {
    "type": "array",
    "maxItems": 5,
    "items": {
        "type": "object",
        "required": ["credit_entitlement_id", "credits_amount"],
        "properties": {
            "credit_entitlement_id": {"type": "string"},
            "credits_amount": _DECIMAL_SCHEMA,
            "overage_enabled": {"type": "boolean", "nullable": True},
            "overage_limit": {**_DECIMAL_SCHEMA, "nullable": True},
            "price_per_unit": {**_DECIMAL_SCHEMA, "nullable": True},
            "expires_after_days": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_EXPIRES_AFTER_DAYS,
                "nullable": True,
            },
            "rollover_enabled": {"type": "boolean", "nullable": True},
            "rollover_percentage": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100,
                "nullable": True,
            },
            "max_rollover_count": {"type": "integer", "minimum": 0, "nullable": True},
        },
    },
}
SUBSCRIPTION_CUSTOMER_SCHEMA = {
    "oneOf": [
        {
            "type": "object",
            "required": ["customer_id"],
            "properties": {"customer_id": {"type": "string"}},
        },
        {
            "type": "object",
            "required": ["email", "name"],
            "properties": {
                "email": {"type": "string", "maxLength": 254},
                "name": {"type": "string", "maxLength": 255},
                "phone_number": {"type": "string", "maxLength": 32, "nullable": True},
            },
        },
    ]
}


@extend_schema_field(PRICE_SCHEMA)
class PriceField(serializers.JSONField):
    pass


@extend_schema_field(CREDIT_LINKS_SCHEMA)
class CreditLinksField(serializers.JSONField):
    pass


@extend_schema_field(SUBSCRIPTION_CUSTOMER_SCHEMA)
class SubscriptionCustomerField(serializers.JSONField):
    pass


class ProductInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=255)
    description = serializers.CharField(
        max_length=5000, required=False, allow_null=True, allow_blank=True
    )
    tax_category = serializers.ChoiceField(
        choices=["digital_products", "saas", "e_book", "edtech", "live_tutoring"]
    )
    price = PriceField(encoder=ExactJSONEncoder)
    metadata = MetadataField(required=False)
    credit_entitlements = CreditLinksField(
        required=False, allow_null=True, encoder=ExactJSONEncoder
    )
    # Dodo's fields for what this server does not sell (addons, license keys, digital delivery,
    # entitlements, images, several brands or regional prices): only their neutral value.
    addons = serializers.JSONField(required=False, allow_null=True)
    brand_id = serializers.JSONField(required=False, allow_null=True)
    digital_product_delivery = serializers.JSONField(required=False, allow_null=True)
    entitlements = serializers.JSONField(required=False, allow_null=True)
    image_id = serializers.JSONField(required=False, allow_null=True)
    license_key_activation_message = serializers.JSONField(required=False, allow_null=True)
    license_key_activations_limit = serializers.JSONField(required=False, allow_null=True)
    license_key_duration = serializers.JSONField(required=False, allow_null=True)
    license_key_enabled = serializers.JSONField(required=False, allow_null=True)
    pricing_mode = serializers.JSONField(required=False, allow_null=True)

    NOT_OFFERED = (
        "digital_product_delivery",
        "entitlements",
        "image_id",
        "license_key_activation_message",
        "license_key_activations_limit",
        "license_key_duration",
        "license_key_enabled",
    )

    def validate(self, attrs: dict) -> dict:
        unsupported(
            attrs,
            ("addons",),
            "Addons are not supported for usage based billing.",
            code="ADDONS_IN_USAGE_BASED_BILLING_NOT_SUPPORTED",
        )
        unsupported(attrs, self.NOT_OFFERED, "Not supported by this server; send null or omit it.")
        brand = attrs.pop("brand_id", None)
        if brand is not None and brand != settings.BUSINESS_ID:
            raise serializers.ValidationError(
                {"brand_id": [f"The only brand is {settings.BUSINESS_ID!r}."]}
            )
        mode = attrs.pop("pricing_mode", None)
        if mode not in (None, "by_currency"):
            raise serializers.ValidationError(
                {"pricing_mode": ["Only by_currency (the price's one currency) is supported."]}
            )
        for name in ("addons", *self.NOT_OFFERED):
            attrs.pop(name, None)
        return attrs


# A PATCH's null on a field every product has means "keep it", as an omitted field does.
PRODUCT_KEPT_WHEN_NULL = ("name", "tax_category", "price", "metadata")


def _products():
    return Product.objects.prefetch_related(
        "product_meters__meter", "credit_entitlements__credit_entitlement"
    )


class ProductListCreateView(StrictQueryMixin, APIView):
    query_params = ("archived", "brand_id", "recurring", *LOCALE, *PAGING)

    @extend_schema(
        parameters=[
            OpenApiParameter("archived", bool),
            OpenApiParameter("brand_id", str),
            OpenApiParameter("recurring", bool, description="Every product here is recurring."),
            OpenApiParameter("locale", str),
        ]
    )
    def get(self, request):
        params = request.query_params
        archived = parse_query_bool(params, "archived")
        products = _products()
        products = products.filter(archived_at__isnull=False) if archived else products.active()
        # One brand (BUSINESS_ID) and only subscription products: these filters keep all or none.
        if parse_query_bool(params, "recurring") is False:
            products = products.none()
        if params.get("brand_id") and params["brand_id"] != settings.BUSINESS_ID:
            products = products.none()
        return paged_response(request, products, product_list_item)

    @extend_schema(request=ProductInputSerializer)
    def post(self, request):
        data = ProductInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        product = services.create_product(**data.validated_data, now=timezone.now())
        return Response(product_data(_products().get(pk=product.pk)))


class ProductDetailView(StrictQueryMixin, APIView):
    query_params = LOCALE

    def get(self, request, product_id: str):
        return Response(product_data(get_object_or_404(_products(), pk=product_id)))

    @extend_schema(request=ProductInputSerializer)
    def patch(self, request, product_id: str):
        product = get_object_or_404(Product, pk=product_id)
        body = request.data
        if isinstance(body, dict):
            body = {
                k: v for k, v in body.items() if v is not None or k not in PRODUCT_KEPT_WHEN_NULL
            }
        data = ProductInputSerializer(data=body, partial=True)
        data.is_valid(raise_exception=True)
        product = services.update_product(product, now=timezone.now(), **data.validated_data)
        return Response(product_data(_products().get(pk=product.pk)))

    @extend_schema(responses={200: None, 410: None}, summary="Archive a product")
    def delete(self, request, product_id: str):
        product = get_object_or_404(Product, pk=product_id)
        if product.archived_at is not None:
            raise Gone(f"Product {product_id} is already archived.")
        services.set_product_archived(product, archived=True, now=timezone.now())
        return Response(status=status.HTTP_200_OK)  # Dodo: 200 with no body


class ProductUnarchiveView(StrictQueryMixin, APIView):
    @extend_schema(request=None, responses={200: None})
    def post(self, request, product_id: str):
        product = get_object_or_404(Product, pk=product_id)
        services.set_product_archived(product, archived=False, now=timezone.now())
        return Response(status=status.HTTP_200_OK)


# --- subscriptions -------------------------------------------------------------------------------


def _subscriptions():
    return Subscription.objects.select_related(*SUBSCRIPTION_RELATED).prefetch_related(
        *SUBSCRIPTION_PREFETCH
    )


# The id POST /api/subscriptions answers as `payment_id` (Dodo types it a string): this server
# takes no payments, so no payment is made when a subscription starts; invoices record the money.
NO_PAYMENT_ID = "pay_none"
NOT_HERE = "Not supported by this server (it takes no payments); send null or omit it."


class SubscriptionInputSerializer(StrictSerializer):
    customer = SubscriptionCustomerField(encoder=ExactJSONEncoder)
    product_id = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField()
    billing = serializers.JSONField(encoder=ExactJSONEncoder)
    metadata = MetadataField(required=False)
    trial_period_days = serializers.IntegerField(required=False, allow_null=True)
    customer_business_name = serializers.CharField(max_length=255, required=False, allow_null=True)
    require_phone_number = serializers.BooleanField(required=False)
    billing_currency = serializers.CharField(required=False, allow_null=True)
    # Dodo's fields for payments, checkout, tax and discounts: only their neutral value.
    addons = serializers.JSONField(required=False, allow_null=True)
    allowed_payment_method_types = serializers.JSONField(required=False, allow_null=True)
    discount_code = serializers.JSONField(required=False, allow_null=True)
    discount_codes = serializers.JSONField(required=False, allow_null=True)
    force_3ds = serializers.JSONField(required=False, allow_null=True)
    mandate_min_amount_inr_paise = serializers.JSONField(required=False, allow_null=True)
    on_demand = serializers.JSONField(required=False, allow_null=True)
    one_time_product_cart = serializers.JSONField(required=False, allow_null=True)
    payment_link = serializers.JSONField(required=False, allow_null=True)
    payment_method_id = serializers.JSONField(required=False, allow_null=True)
    redirect_immediately = serializers.JSONField(required=False, allow_null=True)
    return_url = serializers.JSONField(required=False, allow_null=True)
    short_link = serializers.JSONField(required=False, allow_null=True)
    show_saved_payment_methods = serializers.JSONField(required=False, allow_null=True)
    tax_id = serializers.JSONField(required=False, allow_null=True)

    PAYMENTS = (
        "allowed_payment_method_types",
        "force_3ds",
        "mandate_min_amount_inr_paise",
        "payment_link",
        "payment_method_id",
        "redirect_immediately",
        "return_url",
        "short_link",
        "show_saved_payment_methods",
    )

    def validate(self, attrs: dict) -> dict:
        unsupported(
            attrs,
            ("on_demand",),
            "On-demand subscriptions are not supported for usage based billing.",
            code="ON_DEMAND_USAGE_BASED_BILLING_NOT_SUPPORTED",
        )
        unsupported(
            attrs,
            ("addons",),
            "Addons are not supported for usage based billing.",
            code="ADDONS_IN_USAGE_BASED_BILLING_NOT_SUPPORTED",
        )
        unsupported(
            attrs,
            ("discount_code", "discount_codes"),
            "Discount codes are not supported by this server; send null or omit it.",
        )
        unsupported(attrs, ("tax_id",), "Tax ids are not supported by this server.")
        unsupported(attrs, ("one_time_product_cart",), NOT_HERE)
        unsupported(attrs, self.PAYMENTS, NOT_HERE)
        attrs["billing"] = validate_billing(attrs["billing"])
        for name in (*self.PAYMENTS, "addons", "discount_code", "discount_codes"):
            attrs.pop(name, None)
        for name in ("on_demand", "one_time_product_cart", "tax_id"):
            attrs.pop(name, None)
        return attrs


class SubscriptionListCreateView(StrictQueryMixin, APIView):
    query_params = (
        "customer_id",
        "product_id",
        "status",
        "brand_id",
        "cancel_at_next_billing_date",
        "created_at_gte",
        "created_at_lte",
        *LOCALE,
        *PAGING,
    )

    @extend_schema(
        parameters=[
            OpenApiParameter("customer_id", str),
            OpenApiParameter("product_id", str),
            OpenApiParameter("status", str),
            OpenApiParameter("brand_id", str),
            OpenApiParameter("cancel_at_next_billing_date", bool),
            OpenApiParameter("created_at_gte", str, description="Inclusive, ISO 8601."),
            OpenApiParameter("created_at_lte", str, description="Inclusive, ISO 8601."),
            OpenApiParameter("locale", str),
        ]
    )
    def get(self, request):
        params = request.query_params
        subscriptions = _subscriptions()
        subscriptions = filter_exact(subscriptions, params, ("customer_id", "product_id", "status"))
        cancelling = parse_query_bool(params, "cancel_at_next_billing_date")
        if cancelling is not None:
            subscriptions = subscriptions.filter(cancel_at_next_billing_date=cancelling)
        created_gte = parse_query_datetime(params, "created_at_gte")
        created_lte = parse_query_datetime(params, "created_at_lte")
        if created_gte is not None:
            subscriptions = subscriptions.filter(created_at__gte=created_gte)
        if created_lte is not None:
            subscriptions = subscriptions.filter(created_at__lte=created_lte)
        if params.get("brand_id") and params["brand_id"] != settings.BUSINESS_ID:
            subscriptions = subscriptions.none()  # one brand: BUSINESS_ID
        return paged_response(request, subscriptions, subscription_data)

    @extend_schema(request=SubscriptionInputSerializer)
    def post(self, request):
        data = SubscriptionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        product = Product.objects.filter(pk=values["product_id"]).first()
        if product is None:
            raise NotFound(f"No product {values['product_id']}.")
        currency = values.get("billing_currency")
        if currency is not None and currency != product.currency:
            raise serializers.ValidationError(
                {"billing_currency": [f"The product is billed in {product.currency} only."]}
            )
        with transaction.atomic():
            customer = services.resolve_customer(values["customer"])
            if values.get("require_phone_number") and not customer.phone_number:
                raise serializers.ValidationError(
                    {"customer.phone_number": ["Is required (require_phone_number is true)."]}
                )
            subscription = services.create_subscription(
                customer=customer,
                product=product,
                quantity=values["quantity"],
                billing=values["billing"],
                metadata=values.get("metadata"),
                trial_period_days=values.get("trial_period_days"),
                customer_business_name=values.get("customer_business_name"),
                now=timezone.now(),
            )
        return Response(
            {
                "subscription_id": subscription.subscription_id,
                "payment_id": NO_PAYMENT_ID,
                "customer": customer_details(subscription.customer),
                "metadata": subscription.metadata,
                "recurring_pre_tax_amount": product.fixed_price_minor,
                "addons": [],
                "payment_method_required": False,
                "discount_ids": [],
                "trial_amount": None,  # a trial here is free
            }
        )


class SubscriptionUpdateSerializer(StrictSerializer):
    cancel_at_next_billing_date = serializers.BooleanField(required=False, allow_null=True)
    status = serializers.CharField(required=False, allow_null=True)
    metadata = MetadataField(required=False, allow_null=True)
    billing = serializers.JSONField(required=False, allow_null=True, encoder=ExactJSONEncoder)
    customer_name = serializers.CharField(max_length=255, required=False, allow_null=True)
    customer_business_name = serializers.CharField(max_length=255, required=False, allow_null=True)
    cancel_reason = serializers.ChoiceField(
        choices=[
            "cancelled_by_customer",
            "cancelled_by_merchant",
            "cancelled_by_merchant_send_dunning",
            "cancelled_by_merchant_grace_period_expired",
            "dodo_team",
        ],
        required=False,
        allow_null=True,
    )
    cancellation_comment = serializers.CharField(max_length=5000, required=False, allow_null=True)
    cancellation_feedback = serializers.ChoiceField(
        choices=CANCELLATION_FEEDBACK, required=False, allow_null=True
    )
    # Moves the current period's end (products/plan_changes.py `move_billing_date`).
    next_billing_date = serializers.JSONField(required=False, allow_null=True)
    pause = serializers.JSONField(required=False, allow_null=True)
    credit_entitlement_cart = serializers.JSONField(required=False, allow_null=True)
    disable_on_demand = serializers.JSONField(required=False, allow_null=True)
    subscription_period_count = serializers.JSONField(required=False, allow_null=True)
    subscription_period_interval = serializers.JSONField(required=False, allow_null=True)
    tax_id = serializers.JSONField(required=False, allow_null=True)

    def validate(self, attrs: dict) -> dict:
        if "pause" in attrs:
            # Dodo: "Removed ... This field always fails with 422", null included.
            raise serializers.ValidationError(
                {"pause": ["Removed from Dodo's API; pausing is not supported here."]}
            )
        moved_to = attrs.pop("next_billing_date", None)
        if moved_to is not None:
            try:
                if not isinstance(moved_to, str):
                    raise ValueError
                attrs["next_billing_date"] = parse_datetime_value(moved_to)
            except ValueError:
                raise serializers.ValidationError(
                    {"next_billing_date": [f"{moved_to!r} is not an ISO 8601 date-time."]}
                ) from None
        unsupported(
            attrs,
            (
                "credit_entitlement_cart",
                "subscription_period_count",
                "subscription_period_interval",
            ),
            "Changing a subscription's schedule or credits is not supported yet; "
            "send null or omit it.",
        )
        unsupported(
            attrs,
            ("disable_on_demand",),
            "On-demand subscriptions are not supported for usage based billing.",
            code="ON_DEMAND_USAGE_BASED_BILLING_NOT_SUPPORTED",
        )
        unsupported(attrs, ("tax_id",), "Tax ids are not supported by this server.")
        for name in (
            "credit_entitlement_cart",
            "subscription_period_count",
            "subscription_period_interval",
            "disable_on_demand",
            "tax_id",
        ):
            attrs.pop(name, None)
        if attrs.get("billing") is not None:
            attrs["billing"] = validate_billing(attrs["billing"])
        if "customer_name" in attrs and not attrs["customer_name"]:
            attrs.pop("customer_name")  # null: keep the name (every customer has one)
        return attrs


class SubscriptionDetailView(StrictQueryMixin, APIView):
    query_params = LOCALE

    def get(self, request, subscription_id: str):
        return Response(subscription_data(get_object_or_404(_subscriptions(), pk=subscription_id)))

    @extend_schema(request=SubscriptionUpdateSerializer)
    def patch(self, request, subscription_id: str):
        subscription = get_object_or_404(Subscription, pk=subscription_id)
        data = SubscriptionUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        wanted = changes.get("status")
        if wanted in ("paused", "active") and wanted != subscription.status:
            # Dodo: "Send paused or active alone"; the pause closes the period now.
            others = sorted(set(request.data) - {"status"})
            if others:
                message = f"status {wanted!r} is sent alone: no other field with it."
                raise InvalidInput(
                    message,
                    errors=[{"field": name, "message": message} for name in others],
                )
            if wanted == "paused" and subscription.status == "active":
                plan_changes.pause(subscription_id, now=timezone.now())
            elif subscription.status == "paused":
                plan_changes.resume(subscription_id, now=timezone.now())
            else:
                services.update_subscription(subscription, status=wanted)  # refused by name
            return Response(subscription_data(_subscriptions().get(pk=subscription_id)))
        moved_to = changes.pop("next_billing_date", None)
        if moved_to is not None:
            if changes.get("status") == "cancelled" and subscription.status != "cancelled":
                message = "A cancellation now ends the period now: send no next_billing_date."
                raise InvalidInput(
                    message, errors=[{"field": "next_billing_date", "message": message}]
                )
            # One transaction: a refusal of another field leaves the billing date as it was.
            with transaction.atomic():
                plan_changes.move_billing_date(subscription_id, to=moved_to, now=timezone.now())
                subscription.refresh_from_db()
                services.update_subscription(subscription, **changes)
            return Response(subscription_data(_subscriptions().get(pk=subscription_id)))
        if changes.get("status") == "cancelled" and subscription.status != "cancelled":
            # A cancellation now: the period closes at this moment with its final invoice.
            changes.pop("status")
            reasons = {
                name: changes.pop(name)
                for name in services.CANCELLATION_FIELDS
                if changes.get(name, services.UNSET) is not services.UNSET
            }
            with transaction.atomic():
                services.update_subscription(subscription, **changes)
                plan_changes.cancel_now(subscription_id, now=timezone.now(), **reasons)
        else:
            services.update_subscription(subscription, **changes)
        return Response(subscription_data(_subscriptions().get(pk=subscription_id)))


class UsageHistoryView(StrictQueryMixin, APIView):
    query_params = ("start_date", "end_date", "meter_id", *PAGING)

    @extend_schema(
        parameters=[
            OpenApiParameter("start_date", str, description="Inclusive, ISO 8601."),
            OpenApiParameter("end_date", str, description="Inclusive, ISO 8601."),
            OpenApiParameter("meter_id", str),
        ]
    )
    def get(self, request, subscription_id: str):
        subscription = get_object_or_404(_subscriptions(), pk=subscription_id)
        params = request.query_params
        page_number, page_size = page_params(params)
        periods = usage_history(
            subscription,
            start=parse_query_datetime(params, "start_date"),
            end=parse_query_datetime(params, "end_date"),
            meter_id=params.get("meter_id") or None,
            offset=page_number * page_size,
            limit=page_size,
        )
        currency = subscription.product.currency
        return Response(
            {
                "items": [
                    {
                        "start_date": timestamp_text(period.start),
                        "end_date": timestamp_text(period.end),
                        "invoice_id": period.invoice_id,
                        "meters": [
                            {
                                "id": entry.meter_id,
                                "name": entry.name,
                                "measurement_unit": entry.measurement_unit,
                                "consumed_units": decimal_text(entry.consumed_units),
                                "chargeable_units": decimal_text(entry.chargeable_units),
                                "free_threshold": entry.free_threshold,
                                "price_per_unit": decimal_text(entry.price_per_unit),
                                "currency": currency,
                                "total_price": entry.total_price,
                            }
                            for entry in period.meters
                        ],
                    }
                    for period in periods
                ]
            }
        )
