"""Payments API, extensions of Dodo's: `POST /customers/{id}/payment-method-session` (a Stripe
SetupIntent's client secret for saving a card) and `POST /providers/stripe/webhook`, where Stripe
reports what happened to charges. The rules are in products/payments.py."""

from __future__ import annotations

import logging

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.exceptions import error_body
from billing_site.api.fields import filter_exact, parse_query_datetime
from billing_site.api.pagination import paged_response
from billing_site.api.strict import StrictQueryMixin
from billing_site.errors import InvalidInput
from billing_site.strict import PAGING
from products import payments, stripe_provider
from products.models import Payment
from products.payment_wire import WIRE_STATUS, payment_data

logger = logging.getLogger(__name__)

EXTENSION = "Not part of Dodo's API: an extension of this server."


class PaymentMethodSessionView(StrictQueryMixin, APIView):
    @extend_schema(
        request=None,
        responses=inline_serializer(
            "PaymentMethodSession",
            {
                "customer_id": serializers.CharField(),
                "payment_provider": serializers.CharField(),
                "provider_customer_id": serializers.CharField(),
                "setup_intent_id": serializers.CharField(),
                "client_secret": serializers.CharField(),
            },
        ),
        description="A Stripe SetupIntent for saving the customer's card for automatic charges: "
        "confirm it with Stripe.js and its client secret. 409 without a payment provider. "
        + EXTENSION,
    )
    def post(self, request, customer_id: str):
        if request.data:
            fields = sorted(request.data) if isinstance(request.data, dict) else ["body"]
            raise InvalidInput.from_errors(
                [{"field": name, "message": "Is not a field of this request."} for name in fields]
            )
        return Response(payments.payment_method_session(customer_id, now=timezone.now()))


class StripeWebhookView(StrictQueryMixin, APIView):
    """Called by Stripe, not by API clients: no API key, the signature is the authentication."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=None,
        responses=inline_serializer("StripeWebhookAnswer", {"outcome": serializers.CharField()}),
        description="Stripe's events (payment_intent.succeeded, payment_intent.payment_failed, "
        "charge.refunded, setup_intent.succeeded), verified with STRIPE_WEBHOOK_SECRET and "
        "applied once each. A bad signature or a timestamp more than 5 minutes off: 400. "
        + EXTENSION,
    )
    def post(self, request):
        if not payments.provider_enabled():
            return Response(
                error_body(
                    "PAYMENT_PROVIDER_NOT_CONFIGURED", "PAYMENT_PROVIDER is not stripe here."
                ),
                status=409,
            )
        try:
            event = stripe_provider.verify_event(
                request.body, request.headers.get("Stripe-Signature")
            )
        except stripe_provider.InvalidSignature as error:
            logger.warning("refused a Stripe webhook: %s", error)
            return Response(error_body("INVALID_SIGNATURE", str(error)), status=400)
        outcome = payments.apply_provider_event(event, now=timezone.now())
        return Response({"outcome": outcome})


class SubscriptionChargeView(StrictQueryMixin, APIView):
    @extend_schema(
        request=inline_serializer(
            "SubscriptionCharge",
            {
                "product_price": serializers.IntegerField(min_value=1),
                "product_currency": serializers.CharField(required=False, allow_null=True),
                "product_description": serializers.CharField(required=False, allow_null=True),
                "metadata": serializers.DictField(
                    child=serializers.CharField(), required=False, allow_null=True
                ),
                "adaptive_currency_fees_inclusive": serializers.BooleanField(
                    required=False, allow_null=True
                ),
                "customer_balance_config": serializers.DictField(required=False, allow_null=True),
            },
        ),
        responses=inline_serializer(
            "SubscriptionChargeAnswer", {"payment_id": serializers.CharField()}
        ),
        description="Charge an amount now (Dodo's subscriptions.charge): recorded as its own "
        "invoice (kind charge) and collected through the payment provider after the answer; "
        "the outcome comes as payment.succeeded or payment.failed. 409 without a provider.",
    )
    def post(self, request, subscription_id: str):
        body = request.data if isinstance(request.data, dict) else None
        if body is None:
            raise InvalidInput.from_errors([{"field": "body", "message": "Must be a JSON object."}])
        payment = payments.charge_now(subscription_id, body=body, now=timezone.now())
        return Response({"payment_id": payment.payment_id})


def _payments():
    return Payment.objects.select_related("customer", "subscription", "invoice").prefetch_related(
        "refunds", "invoice__lines"
    )


def _list_item(payment: Payment) -> dict:
    return {**payment_data(payment), "has_license_key": False}


class PaymentListView(StrictQueryMixin, APIView):
    query_params = (
        "customer_id",
        "subscription_id",
        "product_id",
        "status",
        "currency",
        "brand_id",
        "created_at_gte",
        "created_at_lte",
        *PAGING,
    )

    @extend_schema(
        parameters=[OpenApiParameter(name, str) for name in query_params if name not in PAGING],
        description="Dodo's payments.list: every payment attempt, newest first.",
    )
    def get(self, request):
        params = request.query_params
        found = filter_exact(_payments(), params, ("customer_id", "subscription_id", "currency"))
        if params.get("product_id"):
            found = found.filter(subscription__product_id=params["product_id"])
        if params.get("brand_id") and params["brand_id"] != settings.BUSINESS_ID:
            found = found.none()
        if params.get("status"):
            ours = [mine for mine, wire in WIRE_STATUS.items() if wire == params["status"]]
            found = found.filter(status__in=ours)
        if (since := parse_query_datetime(params, "created_at_gte")) is not None:
            found = found.filter(created_at__gte=since)
        if (until := parse_query_datetime(params, "created_at_lte")) is not None:
            found = found.filter(created_at__lte=until)
        # Newest first; an attempt and its retry written at one moment: the retry first.
        ordered = found.order_by("-created_at", "-retry_attempt", "payment_id")
        return paged_response(request, ordered, _list_item)


class PaymentDetailView(StrictQueryMixin, APIView):
    @extend_schema(description="Dodo's payments.retrieve: one payment attempt.")
    def get(self, request, payment_id: str):
        return Response(payment_data(get_object_or_404(_payments(), pk=payment_id)))
