"""Plan changes over HTTP: change-plan, its preview, and the scheduled change (thin views over
products/plan_changes.py)."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.serializers import MetadataField
from billing_site.api.strict import StrictQueryMixin, StrictSerializer, unsupported
from billing_site.wire import decimal_text, timestamp_text
from products import plan_changes
from products.models import LineKind, Subscription
from products.wire import SUBSCRIPTION_PREFETCH, SUBSCRIPTION_RELATED, subscription_data

NO_PAYMENTS = "This server takes no payments (no links, discounts, addons or adaptive currency)."


class ChangePlanSerializer(StrictSerializer):
    product_id = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=2_147_483_647)
    proration_billing_mode = serializers.ChoiceField(choices=plan_changes.PRORATION_MODES)
    effective_at = serializers.ChoiceField(
        choices=["immediately", "next_billing_date"], required=False
    )
    metadata = MetadataField(required=False, allow_null=True)
    # Dodo's payment fields: their neutral value only (null, false, an empty list).
    adaptive_currency_fees_inclusive = serializers.JSONField(required=False, allow_null=True)
    addons = serializers.JSONField(required=False, allow_null=True)
    cancel_older_payment_link = serializers.JSONField(required=False, allow_null=True)
    cancel_scheduled_change_plan = serializers.BooleanField(required=False)
    collect_via_payment_link = serializers.JSONField(required=False, allow_null=True)
    discount_code = serializers.JSONField(required=False, allow_null=True)
    discount_codes = serializers.JSONField(required=False, allow_null=True)
    on_payment_failure = serializers.JSONField(required=False, allow_null=True)
    return_url = serializers.JSONField(required=False, allow_null=True)

    def validate(self, attrs: dict) -> dict:
        payment_fields = (
            "adaptive_currency_fees_inclusive",
            "addons",
            "cancel_older_payment_link",
            "collect_via_payment_link",
            "discount_code",
            "discount_codes",
            "on_payment_failure",
            "return_url",
        )
        unsupported(attrs, payment_fields, NO_PAYMENTS)
        unsupported(attrs, ("metadata",), "Plan changes carry no metadata here; send {} or null.")
        return {
            "product_id": attrs["product_id"],
            "quantity": attrs["quantity"],
            "mode": attrs["proration_billing_mode"],
            "replace": attrs.get("cancel_scheduled_change_plan", False),
            "scheduled": attrs.get("effective_at") == "next_billing_date",
        }


def _validated(request) -> dict:
    data = ChangePlanSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data


def _render(subscription_id: str) -> dict:
    return subscription_data(
        Subscription.objects.select_related(*SUBSCRIPTION_RELATED)
        .prefetch_related(*SUBSCRIPTION_PREFETCH)
        .get(pk=subscription_id)
    )


def immediate_charge(result: plan_changes.ChangeResult) -> dict:
    """Dodo's `immediate_charge`: the closing period's fixed fee as the `subscription` item and
    each meter as a `meter` item, exactly the invoice's lines; tax is 0 (none computed here)."""
    currency = result.invoice.currency
    plan = result.fee_plan or result.old_plan  # difference_immediately bills the new plan's fee
    items = []
    for line in result.lines:
        if line.kind == LineKind.FIXED_FEE:
            items.append(
                {
                    "type": "subscription",
                    "id": plan.product_id,
                    "product_id": plan.product_id,
                    "name": line.description,
                    "description": line.description,
                    "currency": currency,
                    "quantity": plan.quantity,
                    "proration_factor": float(result.proration_factor),
                    "unit_price": plan.unit_price,
                    "tax_inclusive": False,
                    "tax": 0,
                    "tax_rate": 0,
                    "subtotal_minor": line.amount_minor,  # extension: the line's amount
                }
            )
        else:
            items.append(
                {
                    "type": "meter",
                    "id": line.meter_id,
                    "name": line.description,
                    "description": line.description,
                    "currency": currency,
                    "units_consumed": decimal_text(line.consumed_units),
                    "free_threshold": line.free_threshold,
                    "chargeable_units": decimal_text(line.chargeable_units),
                    # A tiered line has no single price (its tiers are on the invoice): 0.
                    "price_per_unit": decimal_text(line.unit_price or Decimal(0)),
                    "subtotal": line.amount_minor,
                    "tax_inclusive": False,
                    "tax": 0,
                    "tax_rate": 0,
                }
            )
    total = result.invoice.total_minor
    return {
        "effective_at": timestamp_text(result.period.end),
        "line_items": items,
        "summary": {
            "currency": currency,
            "customer_credits": 0,
            "customer_credits_currency": currency,
            "settlement_amount": total,
            "settlement_currency": currency,
            "total_amount": total,
            "tax": 0,
            "settlement_tax": 0,
        },
    }


NO_CHECKOUT = {"payment_id": None, "payment_link": None, "client_secret": None, "expires_on": None}


class ChangePlanView(StrictQueryMixin, APIView):
    @extend_schema(request=ChangePlanSerializer)
    def post(self, request, subscription_id: str):
        arguments = _validated(request)
        now = timezone.now()
        # Dodo answers the handles of a checkout that settles the change: none here.
        if arguments.pop("scheduled"):
            plan_changes.schedule_plan_change(subscription_id, **arguments, now=now)
            return Response({**NO_CHECKOUT, "invoice_id": None})
        result = plan_changes.change_plan(subscription_id, **arguments, now=now)
        # Extension: the invoice of the period the change closed.
        return Response({**NO_CHECKOUT, "invoice_id": result.invoice.invoice_id})


class PreviewChangePlanView(StrictQueryMixin, APIView):
    @extend_schema(request=ChangePlanSerializer)
    def post(self, request, subscription_id: str):
        arguments = _validated(request)
        now = timezone.now()
        if arguments.pop("scheduled"):
            _, new_plan = plan_changes.preview_schedule(
                subscription_id, **arguments, now=now, render=_render
            )
            return Response({"immediate_charge": nothing_now(new_plan), "new_plan": new_plan})
        result, new_plan = plan_changes.preview_change_plan(
            subscription_id, **arguments, now=now, render=_render
        )
        return Response({"immediate_charge": immediate_charge(result), "new_plan": new_plan})


def nothing_now(new_plan: dict) -> dict:
    """A scheduled change charges nothing now: no items, zero totals, effective at the period
    end."""
    currency = new_plan["currency"]
    return {
        "effective_at": new_plan["next_billing_date"],
        "line_items": [],
        "summary": {
            "currency": currency,
            "customer_credits": 0,
            "customer_credits_currency": currency,
            "settlement_amount": 0,
            "settlement_currency": currency,
            "total_amount": 0,
            "tax": 0,
            "settlement_tax": 0,
        },
    }


class ScheduledChangeView(StrictQueryMixin, APIView):
    def delete(self, request, subscription_id: str):
        plan_changes.cancel_scheduled_change(subscription_id)
        return Response(status=200)  # Dodo: 200 with no body
