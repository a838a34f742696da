"""The portal and alert endpoints: Dodo's `POST /customers/{id}/customer-portal/session`, and the
extensions `POST|GET /subscriptions/{id}/usage-alerts`, `DELETE /subscriptions/{id}/usage-alerts/
{alert_id}` and `GET /customers/{id}/usage` (where a customer stands now, for gating work)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.fields import parse_query_bool
from billing_site.api.strict import StrictQueryMixin, refuse_unknown
from billing_site.errors import InvalidInput
from billing_site.wire import decimal_text, timestamp_text
from portal import alerts, sessions
from portal.models import UsageAlert
from portal.usage import MeterStanding, meter_standings
from products.models import Customer, Subscription

EXTENSION = "Not part of Dodo's API: an extension of this server."
MAX_RETURN_URL = 2000


def _no_body(request) -> None:
    if request.data:
        fields = sorted(request.data) if isinstance(request.data, dict) else ["body"]
        raise InvalidInput.from_errors(
            [{"field": name, "message": "Is not a field of this request."} for name in fields]
        )


def _return_url(raw: str | None) -> str | None:
    if raw in (None, ""):
        return None
    assert raw is not None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(raw) > MAX_RETURN_URL:
        raise InvalidInput.from_errors(
            [{"field": "return_url", "message": "Must be an absolute http(s) URL."}]
        )
    return raw


class CustomerPortalSessionView(StrictQueryMixin, APIView):
    write_query_params = ("return_url", "send_email")

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter("return_url", str, description="Shown as 'Return to {business}'."),
            OpenApiParameter("send_email", bool, description="Also mail the link to the customer."),
        ],
        responses=inline_serializer("CustomerPortalSession", {"link": serializers.CharField()}),
        description="A link to the customer's portal on this server: signed, for this customer "
        "only, valid CUSTOMER_PORTAL_SESSION_MINUTES.",
    )
    def post(self, request, customer_id: str):
        _no_body(request)
        params = request.query_params
        return_url = _return_url(params.get("return_url"))
        send_email = parse_query_bool(params, "send_email")
        created = sessions.create_session(customer_id, return_url=return_url, now=timezone.now())
        link = request.build_absolute_uri(reverse("portal-enter", args=[created.signed_token]))
        if send_email:  # after the session is stored: a mailed link always works
            sessions.email_link(created.session, link)
        return Response({"link": link})


ALERT_INPUT = inline_serializer(
    "UsageAlertCreate",
    {
        "meter_id": serializers.CharField(),
        "threshold_kind": serializers.ChoiceField(choices=["units", "amount"]),
        "threshold": serializers.CharField(help_text="Units, or minor units for an amount."),
    },
)
ALERT_FIELDS: dict[str, serializers.Field] = {
    "id": serializers.CharField(),
    "subscription_id": serializers.CharField(),
    "meter_id": serializers.CharField(),
    "threshold_kind": serializers.CharField(),
    "threshold": serializers.CharField(),
    "created_at": serializers.DateTimeField(),
    "reached_at": serializers.DateTimeField(allow_null=True),
}
ALERT_OUTPUT = inline_serializer("UsageAlert", ALERT_FIELDS)


def _alert_list(subscription: Subscription) -> list[dict]:
    found = list(subscription.usage_alerts.all())
    fired = alerts.crossings_in_current_period(found)
    return [alerts.alert_data(alert, fired_in=fired.get(alert.pk)) for alert in found]


class UsageAlertListCreateView(StrictQueryMixin, APIView):
    @extend_schema(
        responses=inline_serializer(
            "UsageAlertList",
            {"items": inline_serializer("UsageAlertItem", ALERT_FIELDS, many=True)},
        ),
        description=f"The subscription's usage alerts; reached_at: when it fired in the current "
        f"period. {EXTENSION}",
    )
    def get(self, request, subscription_id: str):
        subscription = get_object_or_404(Subscription, pk=subscription_id)
        return Response({"items": _alert_list(subscription)})

    @extend_schema(
        request=ALERT_INPUT,
        responses={201: ALERT_OUTPUT},
        description="An alert: usage.threshold_reached is sent once per billing period when the "
        "meter's usage (units) or its charge so far (amount, minor units) reaches the threshold. "
        + EXTENSION,
    )
    def post(self, request, subscription_id: str):
        data = request.data if isinstance(request.data, dict) else None
        if data is None:
            raise InvalidInput.from_errors([{"field": "body", "message": "Must be a JSON object."}])
        refuse_unknown(data, {"meter_id", "threshold_kind", "threshold"})
        missing = [
            {"field": name, "message": "This field is required."}
            for name in ("meter_id", "threshold_kind", "threshold")
            if data.get(name) is None
        ]
        if missing:
            raise InvalidInput.from_errors(missing)
        alert = alerts.create_alert(
            subscription_id,
            meter_id=data["meter_id"],
            threshold_kind=data["threshold_kind"],
            threshold=data["threshold"],
            now=timezone.now(),
        )
        return Response(alerts.alert_data(alert), status=201)


class UsageAlertDetailView(StrictQueryMixin, APIView):
    @extend_schema(responses={204: None}, description=f"Remove an alert. {EXTENSION}")
    def delete(self, request, subscription_id: str, alert_id: str):
        alerts.delete_alert(
            get_object_or_404(UsageAlert, pk=alert_id, subscription_id=subscription_id)
        )
        return Response(status=204)


def standing_data(standing: MeterStanding) -> dict:
    line = standing.line
    period = standing.period
    return {
        "subscription_id": standing.subscription.pk,
        "product_id": standing.subscription.product_id,
        "meter_id": standing.product_meter.meter_id,
        "measurement_unit": standing.product_meter.meter.measurement_unit,
        "period_start": timestamp_text(period.start),
        "period_end": timestamp_text(period.end),
        "consumed_units": decimal_text(standing.usage.quantity),
        "free_threshold": standing.product_meter.free_threshold,
        "free_units_left": decimal_text(standing.free_units_left),
        "chargeable_units": decimal_text(line.chargeable_units),
        "amount_so_far": line.amount_minor,
        "currency": standing.subscription.product.currency,
        "credit_entitlement_id": standing.product_meter.credit_entitlement_id,
        "credits_left": decimal_text(standing.credits_left),
        "alerts": [
            {
                "id": alert.id,
                "threshold_kind": alert.threshold_kind,
                "threshold": decimal_text(alert.threshold),
            }
            for alert in standing.alerts
        ],
    }


class CustomerUsageView(StrictQueryMixin, APIView):
    query_params = ("meter_id",)

    @extend_schema(
        parameters=[OpenApiParameter("meter_id", str, description="Only this meter.")],
        responses=inline_serializer(
            "CustomerUsage",
            {"customer_id": serializers.CharField(), "items": serializers.ListField()},
        ),
        description="Per active subscription and meter: the current period's usage so far, the "
        "free units left, the charge so far (minor units), the credits left and the alert "
        "thresholds; exact (rollups plus events not rolled up yet). " + EXTENSION,
    )
    def get(self, request, customer_id: str):
        subscriptions = list(
            Subscription.objects.filter(customer_id=customer_id)
            .select_related("product")
            .order_by("created_at", "pk")
        )
        if not subscriptions:
            get_object_or_404(Customer, pk=customer_id)
        standings = meter_standings(
            subscriptions, meter_id=request.query_params.get("meter_id") or None
        )
        return Response(
            {"customer_id": customer_id, "items": [standing_data(s) for s in standings]}
        )
