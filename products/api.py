"""Customers, products, subscriptions (with usage history) and invoices APIs."""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.fields import filter_exact, parse_query_bool, parse_query_datetime
from billing_site.api.pagination import page_params, paged_response
from billing_site.api.serializers import BusinessIdField, MetadataField
from billing_site.errors import NotFound
from billing_site.jsonutil import ExactJSONEncoder
from billing_site.money import CURRENCIES
from billing_site.periods import INTERVAL_UNITS
from billing_site.wire import decimal_text, timestamp_text
from credits.services import MAX_EXPIRES_AFTER_DAYS
from products import services
from products.history import usage_history
from products.models import Customer, Product, Subscription
from products.wire import (
    customer_details,
    product_data,
    product_list_item,
    subscription_data,
)


class CustomerSerializer(serializers.ModelSerializer):
    business_id = BusinessIdField()
    metadata = MetadataField(required=False)
    phone_number = serializers.CharField(
        max_length=32, required=False, allow_null=True, allow_blank=True
    )

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
            "metadata",
            "created_at",
        ]
        read_only_fields = ["customer_id", "created_at"]


class CustomerListCreateView(generics.ListCreateAPIView):
    serializer_class = CustomerSerializer

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


class CustomerDetailView(generics.RetrieveUpdateAPIView):
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
_MONEY_METER_SCHEMA = {
    "type": "object",
    "required": ["meter_id", "price_per_unit"],
    "properties": {
        "meter_id": {"type": "string"},
        "price_per_unit": _PRICE_SCHEMA,
        "free_threshold": _FREE_THRESHOLD_SCHEMA,
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
            "items": {"oneOf": [_MONEY_METER_SCHEMA, _CREDIT_METER_SCHEMA]},
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


class ProductInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    description = serializers.CharField(
        max_length=5000, required=False, allow_null=True, allow_blank=True
    )
    tax_category = serializers.ChoiceField(
        choices=["digital_products", "saas", "e_book", "edtech", "live_tutoring"]
    )
    price = PriceField(encoder=ExactJSONEncoder)
    metadata = MetadataField(required=False)
    credit_entitlements = CreditLinksField(required=False, encoder=ExactJSONEncoder)


def _products():
    return Product.objects.prefetch_related(
        "product_meters__meter", "credit_entitlements__credit_entitlement"
    )


class ProductListCreateView(APIView):
    @extend_schema(parameters=[OpenApiParameter("archived", bool)])
    def get(self, request):
        archived = parse_query_bool(request.query_params, "archived")
        products = _products()
        products = products.filter(archived_at__isnull=False) if archived else products.active()
        return paged_response(request, products, product_list_item)

    @extend_schema(request=ProductInputSerializer)
    def post(self, request):
        data = ProductInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        product = services.create_product(**data.validated_data, now=timezone.now())
        return Response(product_data(_products().get(pk=product.pk)))


class ProductDetailView(APIView):
    def get(self, request, product_id: str):
        return Response(product_data(get_object_or_404(_products(), pk=product_id)))

    @extend_schema(request=ProductInputSerializer)
    def patch(self, request, product_id: str):
        product = get_object_or_404(Product, pk=product_id)
        data = ProductInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        product = services.update_product(product, now=timezone.now(), **data.validated_data)
        return Response(product_data(_products().get(pk=product.pk)))

    @extend_schema(responses={204: None}, summary="Archive a product")
    def delete(self, request, product_id: str):
        product = get_object_or_404(Product, pk=product_id)
        services.set_product_archived(product, archived=True, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProductUnarchiveView(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request, product_id: str):
        product = get_object_or_404(Product, pk=product_id)
        services.set_product_archived(product, archived=False, now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- subscriptions -------------------------------------------------------------------------------


def _subscriptions():
    return Subscription.objects.select_related("customer", "product").prefetch_related(
        "product__product_meters__meter", "product__credit_entitlements__credit_entitlement"
    )


class SubscriptionInputSerializer(serializers.Serializer):
    customer = SubscriptionCustomerField(encoder=ExactJSONEncoder)
    product_id = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField()
    billing = serializers.JSONField(required=False, encoder=ExactJSONEncoder)
    metadata = MetadataField(required=False)


class SubscriptionListCreateView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("customer_id", str),
            OpenApiParameter("product_id", str),
            OpenApiParameter("status", str),
        ]
    )
    def get(self, request):
        params = request.query_params
        subscriptions = _subscriptions()
        subscriptions = filter_exact(subscriptions, params, ("customer_id", "product_id", "status"))
        return paged_response(request, subscriptions, subscription_data)

    @extend_schema(request=SubscriptionInputSerializer)
    def post(self, request):
        data = SubscriptionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        product = Product.objects.filter(pk=values["product_id"]).first()
        if product is None:
            raise NotFound(f"No product {values['product_id']}.")
        with transaction.atomic():
            subscription = services.create_subscription(
                customer=services.resolve_customer(values["customer"]),
                product=product,
                quantity=values["quantity"],
                billing=values.get("billing"),
                metadata=values.get("metadata"),
                now=timezone.now(),
            )
        return Response(
            {
                "subscription_id": subscription.subscription_id,
                "payment_id": None,
                "customer": customer_details(subscription.customer),
                "metadata": subscription.metadata,
                "recurring_pre_tax_amount": product.fixed_price_minor,
                "addons": [],
                "payment_method_required": False,
            }
        )


class SubscriptionUpdateSerializer(serializers.Serializer):
    cancel_at_next_billing_date = serializers.BooleanField(required=False, allow_null=True)
    status = serializers.CharField(required=False, allow_null=True)
    metadata = MetadataField(required=False, allow_null=True)


class SubscriptionDetailView(APIView):
    def get(self, request, subscription_id: str):
        return Response(subscription_data(get_object_or_404(_subscriptions(), pk=subscription_id)))

    @extend_schema(request=SubscriptionUpdateSerializer)
    def patch(self, request, subscription_id: str):
        subscription = get_object_or_404(Subscription, pk=subscription_id)
        data = SubscriptionUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.update_subscription(subscription, **data.validated_data)
        return Response(subscription_data(_subscriptions().get(pk=subscription_id)))


class UsageHistoryView(APIView):
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
