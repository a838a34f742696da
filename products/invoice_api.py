"""Invoices API, an extension of Dodo's: `GET /invoices`, `GET /invoices/{id}`, the lifecycle
actions (`POST /invoices/{id}/finalize | mark-paid | void | reissue | credit-notes`) and
`GET /subscriptions/{id}/upcoming-invoice`. The rules are in products/invoices.py."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.fields import filter_exact
from billing_site.api.pagination import paged_response
from billing_site.api.strict import PAGING, StrictQueryMixin, refuse_unknown
from billing_site.errors import InvalidInput
from products import billing, invoices
from products.models import Invoice, InvoiceStatus
from products.wire import invoice_data, upcoming_invoice_data

EXTENSION = "Not part of Dodo's API: an extension of this server."


def _invoices():
    return Invoice.objects.select_related("subscription__product").prefetch_related("lines")


def render(invoice: Invoice) -> dict:
    """A draft is shown as it stands now (late events included); others as stored."""
    if invoice.status == InvoiceStatus.DRAFT:
        lines = billing.preview_lines(invoice.subscription, invoice.period, now=timezone.now())
        return invoice_data(invoice, lines=lines)
    return invoice_data(invoice)


def _body(request, allowed: set[str]) -> dict:
    """The JSON object body, refusing any field this action does not take (422 naming it)."""
    data = request.data if request.data else {}
    if not isinstance(data, dict):
        raise InvalidInput.from_errors([{"field": "body", "message": "Must be a JSON object."}])
    refuse_unknown(data, allowed)  # the one helper every endpoint uses
    return data


class InvoiceListView(StrictQueryMixin, APIView):
    query_params = ("customer_id", "subscription_id", "status", *PAGING)

    @extend_schema(
        description=EXTENSION,
        parameters=[
            OpenApiParameter("customer_id", str),
            OpenApiParameter("subscription_id", str),
            OpenApiParameter("status", str, enum=list(InvoiceStatus.values)),
        ],
    )
    def get(self, request):
        params = request.query_params
        found = filter_exact(_invoices(), params, ("customer_id", "subscription_id", "status"))
        return paged_response(request, found, render)


class InvoiceDetailView(StrictQueryMixin, APIView):
    @extend_schema(description=EXTENSION)
    def get(self, request, invoice_id: str):
        return Response(render(get_object_or_404(_invoices(), pk=invoice_id)))


def _answer(invoice: Invoice) -> Response:
    return Response(render(_invoices().get(pk=invoice.pk)))


class InvoiceFinalizeView(StrictQueryMixin, APIView):
    @extend_schema(request=None, description=f"Finalize a draft now. {EXTENSION}")
    def post(self, request, invoice_id: str):
        _body(request, set())
        return _answer(invoices.finalize(invoice_id, now=timezone.now()))


class InvoiceMarkPaidView(StrictQueryMixin, APIView):
    @extend_schema(
        request=inline_serializer(
            "InvoiceMarkPaid",
            {"payment_reference": serializers.CharField(required=False, max_length=255)},
        ),
        description=f"Record the payment of an issued invoice. {EXTENSION}",
    )
    def post(self, request, invoice_id: str):
        data = _body(request, {"payment_reference"})
        invoice = invoices.mark_paid(
            invoice_id, payment_reference=data.get("payment_reference"), now=timezone.now()
        )
        return _answer(invoice)


class InvoiceVoidView(StrictQueryMixin, APIView):
    @extend_schema(
        request=inline_serializer("InvoiceVoid", {"reason": serializers.CharField(max_length=500)}),
        description=f"Void an issued invoice (a paid one takes a credit note). {EXTENSION}",
    )
    def post(self, request, invoice_id: str):
        data = _body(request, {"reason"})
        return _answer(invoices.void(invoice_id, reason=data.get("reason"), now=timezone.now()))


class InvoiceReissueView(StrictQueryMixin, APIView):
    @extend_schema(request=None, description=f"Replace a void invoice. {EXTENSION}")
    def post(self, request, invoice_id: str):
        _body(request, set())
        return _answer(invoices.reissue(invoice_id, now=timezone.now()))


class InvoiceCreditNoteView(StrictQueryMixin, APIView):
    @extend_schema(
        request=inline_serializer(
            "InvoiceCreditNote",
            {
                "reason": serializers.CharField(max_length=500),
                "lines": serializers.ListField(
                    child=inline_serializer(
                        "InvoiceCreditNoteLine",
                        {
                            "description": serializers.CharField(max_length=500),
                            "amount": serializers.IntegerField(min_value=1),
                        },
                    ),
                    required=False,
                ),
            },
        ),
        description=f"A credit note for an issued or paid invoice (all of it without lines). "
        f"{EXTENSION}",
    )
    def post(self, request, invoice_id: str):
        data = _body(request, {"reason", "lines"})
        note = invoices.credit_note(
            invoice_id, lines=data.get("lines"), reason=data.get("reason"), now=timezone.now()
        )
        return _answer(note)


class UpcomingInvoiceView(StrictQueryMixin, APIView):
    @extend_schema(description=f"The invoice the open period would close with now. {EXTENSION}")
    def get(self, request, subscription_id: str):
        subscription, lines = invoices.upcoming(subscription_id, now=timezone.now())
        period = subscription.period(subscription.period_index)
        return Response(upcoming_invoice_data(subscription, period, lines))
