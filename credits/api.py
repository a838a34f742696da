"""Credits API, Dodo-compatible: entitlements, balances, ledger entries, ledger, grants."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.fields import parse_query_bool, parse_query_datetime
from billing_site.api.pagination import paged_response
from billing_site.api.serializers import MetadataField
from billing_site.api.strict import LOCALE, PAGING, StrictQueryMixin, StrictSerializer
from billing_site.errors import DomainError, NotFound
from billing_site.jsonutil import ExactJSONEncoder
from billing_site.wire import decimal_text, timestamp_text
from credits import ledger, services
from credits.ledger import CreditRules
from credits.models import CreditBalance, CreditEntitlement
from credits.wire import balance_data, entitlement_data, entry_data, grant_data
from products.models import Customer


class Gone(DomainError):
    status = 410
    code = "GONE"


class EntitlementInputSerializer(StrictSerializer):
    """Shapes only; the settings rules (and their combinations) are in credits/services.py."""

    name = serializers.CharField(max_length=255)
    unit = serializers.CharField(max_length=50)
    precision = serializers.IntegerField(min_value=0, max_value=10)
    rollover_enabled = serializers.BooleanField()
    overage_enabled = serializers.BooleanField()
    description = serializers.CharField(
        max_length=1000, required=False, allow_null=True, allow_blank=True
    )
    currency = serializers.CharField(max_length=3, required=False, allow_null=True)
    price_per_unit = serializers.JSONField(
        required=False, allow_null=True, encoder=ExactJSONEncoder
    )
    overage_limit = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    overage_behavior = serializers.CharField(required=False, allow_null=True)
    expires_after_days = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    rollover_percentage = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=100
    )
    rollover_timeframe_count = serializers.IntegerField(
        required=False, allow_null=True, min_value=1
    )
    rollover_timeframe_interval = serializers.CharField(required=False, allow_null=True)
    max_rollover_count = serializers.IntegerField(required=False, allow_null=True, min_value=0)


class EntitlementListCreateView(StrictQueryMixin, APIView):
    query_params = ("deleted", *LOCALE, *PAGING)

    @extend_schema(parameters=[OpenApiParameter("deleted", bool), OpenApiParameter("locale", str)])
    def get(self, request):
        deleted = parse_query_bool(request.query_params, "deleted")
        entitlements = CreditEntitlement.objects.filter(deleted_at__isnull=not deleted)
        return paged_response(request, entitlements, entitlement_data)

    @extend_schema(request=EntitlementInputSerializer)
    def post(self, request):
        data = EntitlementInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        entitlement = services.create_entitlement(now=timezone.now(), **data.validated_data)
        return Response(entitlement_data(entitlement), status=status.HTTP_201_CREATED)


class EntitlementDetailView(StrictQueryMixin, APIView):
    query_params = LOCALE

    def get(self, request, entitlement_id: str):
        return Response(entitlement_data(services.entitlement_or_404(entitlement_id)))

    @extend_schema(request=EntitlementInputSerializer)
    def patch(self, request, entitlement_id: str):
        entitlement = services.entitlement_or_404(entitlement_id)
        if isinstance(request.data, dict) and "precision" in request.data:  # `null` is a body too
            raise ValidationError({"precision": ["Cannot be changed after creation."]})
        data = EntitlementInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        entitlement = services.update_entitlement(
            entitlement, now=timezone.now(), **data.validated_data
        )
        return Response(entitlement_data(entitlement))

    @extend_schema(responses={200: None, 404: None, 410: None})
    def delete(self, request, entitlement_id: str):
        entitlement = services.entitlement_or_404(entitlement_id, include_deleted=True)
        if entitlement.deleted_at is not None:
            raise Gone(f"Credit entitlement {entitlement_id} is already deleted.")
        services.set_deleted(entitlement, deleted=True, now=timezone.now())
        return Response(status=status.HTTP_200_OK)  # Dodo: 200 with no body


class EntitlementUndeleteView(StrictQueryMixin, APIView):
    @extend_schema(request=None, responses={200: None})
    def post(self, request, entitlement_id: str):
        entitlement = services.entitlement_or_404(entitlement_id, include_deleted=True)
        services.set_deleted(entitlement, deleted=False, now=timezone.now())
        return Response(status=status.HTTP_200_OK)


# --- balances, ledger, grants ------------------------------------------------------------------


def _balance_or_404(entitlement_id: str, customer_id: str) -> CreditBalance:
    balance = (
        CreditBalance.objects.select_related("credit_entitlement")
        .filter(credit_entitlement_id=entitlement_id, customer_id=customer_id)
        .first()
    )
    if balance is None:
        raise NotFound(f"No balance of {entitlement_id} for customer {customer_id}.")
    return balance


class BalanceListView(StrictQueryMixin, APIView):
    query_params = ("customer_id", *PAGING)

    @extend_schema(parameters=[OpenApiParameter("customer_id", str)])
    def get(self, request, entitlement_id: str):
        services.entitlement_or_404(entitlement_id, include_deleted=True)
        balances = CreditBalance.objects.filter(credit_entitlement_id=entitlement_id).order_by(
            "-created_at", "id"
        )
        if request.query_params.get("customer_id"):
            balances = balances.filter(customer_id=request.query_params["customer_id"])
        return paged_response(request, balances, balance_data)


class BalanceDetailView(StrictQueryMixin, APIView):
    def get(self, request, entitlement_id: str, customer_id: str):
        return Response(balance_data(_balance_or_404(entitlement_id, customer_id)))


class LedgerEntryInputSerializer(StrictSerializer):
    entry_type = serializers.ChoiceField(choices=["credit", "debit"])
    amount = serializers.JSONField(encoder=ExactJSONEncoder)
    reason = serializers.CharField(max_length=1000, required=False, allow_null=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    idempotency_key = serializers.CharField(max_length=255, required=False, allow_null=True)
    metadata = MetadataField(required=False, allow_null=True)

    def validate_amount(self, value) -> Decimal:
        try:
            amount = Decimal(str(value)) if not isinstance(value, bool) else None
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite() or amount <= 0 or amount >= Decimal("1e10"):
            raise serializers.ValidationError(
                "Must be a decimal string greater than 0 and below 10^10."
            )
        return amount

    def validate_metadata(self, value):
        if value and any(len(key) > 40 for key in value):
            raise serializers.ValidationError("Keys must be at most 40 characters.")
        return value


class LedgerEntryCreateView(StrictQueryMixin, APIView):
    @extend_schema(request=LedgerEntryInputSerializer)
    def post(self, request, entitlement_id: str, customer_id: str):
        entitlement = services.entitlement_or_404(entitlement_id)
        if not Customer.objects.filter(pk=customer_id).exists():
            raise NotFound(f"No customer {customer_id}.")
        data = LedgerEntryInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        now = timezone.now()
        with transaction.atomic():
            balance = ledger.locked_balance(entitlement_id, customer_id, now=now)
            entries = ledger.manual_entry(
                balance,
                entry_type=values["entry_type"],
                amount=values["amount"],
                rules=CreditRules.of(entitlement),
                now=now,
                reason=values.get("reason"),
                expires_at=values.get("expires_at"),
                idempotency_key=values.get("idempotency_key"),
                metadata=values.get("metadata"),
                created_by="api",
            )
        first, last = entries[0], entries[-1]
        return Response(
            {
                "id": str(first.pk),
                "credit_entitlement_id": entitlement_id,
                "customer_id": customer_id,
                "entry_type": values["entry_type"],
                "is_credit": values["entry_type"] == "credit",
                "amount": decimal_text(values["amount"]),
                "balance_before": decimal_text(first.balance_before),
                "balance_after": decimal_text(last.balance_after),
                "overage_before": decimal_text(first.overage_before),
                "overage_after": decimal_text(last.overage_after),
                "grant_id": None if first.grant_id is None else str(first.grant_id),
                "reason": values.get("reason"),
                "metadata": values.get("metadata") or {},
                "created_at": timestamp_text(first.created_at),
            },
            status=status.HTTP_201_CREATED,
        )


class LedgerListView(StrictQueryMixin, APIView):
    query_params = ("start_date", "end_date", "transaction_type", *PAGING)

    @extend_schema(
        parameters=[
            OpenApiParameter("start_date", str),
            OpenApiParameter("end_date", str),
            OpenApiParameter("transaction_type", str),
        ]
    )
    def get(self, request, entitlement_id: str, customer_id: str):
        balance = _balance_or_404(entitlement_id, customer_id)
        params = request.query_params
        # Newest first in the order the changes were made (ids grow under the balance's lock),
        # so the first entry's balance_after is the balance. `created_at` is when a change took
        # effect, and a period's close dates its deductions at the run but its expiry and next
        # grant at the period boundary: sorting by it would misorder them.
        entries = balance.entries.select_related("balance").order_by("-id")
        start = parse_query_datetime(params, "start_date")
        end = parse_query_datetime(params, "end_date")
        if start is not None:
            entries = entries.filter(created_at__gte=start)
        if end is not None:
            entries = entries.filter(created_at__lte=end)
        if params.get("transaction_type"):
            entries = entries.filter(transaction_type=params["transaction_type"])
        return paged_response(request, entries, entry_data)


class GrantListView(StrictQueryMixin, APIView):
    query_params = ("status", *PAGING)

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=["active", "expired", "depleted"])]
    )
    def get(self, request, entitlement_id: str, customer_id: str):
        balance = _balance_or_404(entitlement_id, customer_id)
        grants = balance.grants.select_related("balance").order_by("-created_at", "-id")
        state = request.query_params.get("status")
        if state == "active":
            grants = grants.filter(is_expired=False, remaining_amount__gt=0)
        elif state == "expired":
            grants = grants.filter(is_expired=True)
        elif state == "depleted":
            grants = grants.filter(is_expired=False, remaining_amount=0)
        elif state:
            raise ValidationError({"status": ["Must be active, expired or depleted."]})
        return paged_response(request, grants, grant_data)


class CustomerEntitlementsView(StrictQueryMixin, APIView):
    def get(self, request, customer_id: str):
        if not Customer.objects.filter(pk=customer_id).exists():
            raise NotFound(f"No customer {customer_id}.")
        balances = CreditBalance.objects.filter(customer_id=customer_id).select_related(
            "credit_entitlement"
        )
        return Response(
            {
                "items": [
                    {
                        "credit_entitlement_id": b.credit_entitlement_id,
                        "name": b.credit_entitlement.name,
                        "unit": b.credit_entitlement.unit,
                        "description": b.credit_entitlement.description,
                        "balance": decimal_text(b.balance),
                        "overage": decimal_text(b.overage),
                    }
                    for b in balances
                ]
            }
        )


class SubscriptionCreditUsageView(StrictQueryMixin, APIView):
    """Balance and overage headroom for each entitlement of the subscription's product."""

    def get(self, request, subscription_id: str):
        from credits.models import ProductCreditEntitlement
        from products.models import Subscription

        subscription = Subscription.objects.filter(pk=subscription_id).first()
        if subscription is None:
            raise NotFound(f"No subscription {subscription_id}.")
        items = []
        links = ProductCreditEntitlement.objects.filter(
            product_id=subscription.product_id
        ).select_related("credit_entitlement")
        for link in links:
            rules = CreditRules.of(link.credit_entitlement, link)
            balance = CreditBalance.objects.filter(
                credit_entitlement_id=link.credit_entitlement_id,
                customer_id=subscription.customer_id,
            ).first()
            amount = balance.balance if balance else Decimal(0)
            overage = balance.overage if balance else Decimal(0)
            limit = rules.overage_limit if rules.overage_enabled else None
            headroom = None if limit is None else max(limit - overage, Decimal(0))
            items.append(
                {
                    "credit_entitlement_id": link.credit_entitlement_id,
                    "credit_entitlement_name": link.credit_entitlement.name,
                    "unit": link.credit_entitlement.unit,
                    "balance": decimal_text(amount),
                    "overage": decimal_text(overage),
                    "overage_enabled": rules.overage_enabled,
                    "overage_limit": decimal_text(rules.overage_limit),
                    "limit_reached": headroom == 0,
                    "remaining_headroom": decimal_text(headroom),
                }
            )
        return Response({"subscription_id": subscription_id, "items": items})
