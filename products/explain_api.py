"""Extensions of Dodo's API that answer "why is this event (not) billed?":
`GET /events/{event_id}/explain` (products/explain.py) and the events behind an invoice line,
`GET /invoices/{invoice_id}/lines/{position}/events` (products/proofs.py)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.pagination import paged_response
from billing_site.api.strict import PAGING, StrictQueryMixin
from billing_site.errors import NotFound
from events.api import EventSerializer
from events.models import Event
from products import explain, proofs
from products.models import InvoiceLine

MAX_POSITION = 32767  # the column is a smallint: a larger number is no line, not a query error
EXTENSION = "Not part of Dodo's API: an extension of this server."


class EventExplainView(StrictQueryMixin, APIView):
    @extend_schema(
        summary="Why is this event (not) billed?",
        description=(
            "Whether the event was stored or refused (refusals are kept "
            "REJECTED_EVENTS_RETENTION_DAYS), its customer, and for every active meter of its "
            "event name (and of names differing by case or a small edit): matched or the failed "
            "filter condition by path, counted or why skipped, and the invoice line that billed "
            "it or why none did. 404 for an id never seen; 409 `EVENTS_ARCHIVED` for an event "
            f"stored in a month since archived (`manage.py archive_events`). {EXTENSION}"
        ),
        responses={200: OpenApiResponse(description="The explanation."), 404: None, 409: None},
    )
    def get(self, request, event_id: str):
        # GET /events/{id} takes any id, slashes included: an event stored as "x/explain"
        # is still answered as GET /events/{id} answers it.
        literal = Event.objects.filter(event_id=f"{event_id}/explain").first()
        if literal is not None:
            return Response(EventSerializer(literal).data)
        answer = explain.explain_event(event_id)
        if answer is None:
            raise NotFound(f"No event {event_id!r} was stored or refused.")
        return Response(answer)


class InvoiceLineEventsView(StrictQueryMixin, APIView):
    query_params = PAGING

    @extend_schema(
        summary="The events an invoice line counted",
        description=(
            "Exactly the events behind a final usage line, in event_id byte order (the order "
            "its events_digest is computed in), with the line's events_counted and "
            f"events_digest (SHA-256 of the ids, each followed by a newline). {EXTENSION}"
        ),
        responses=inline_serializer(
            "InvoiceLineEvents",
            {
                "items": EventSerializer(many=True),
                "events_counted": serializers.IntegerField(allow_null=True),
                "events_digest": serializers.CharField(allow_null=True),
            },
        ),
    )
    def get(self, request, invoice_id: str, position: str):
        # A str route (every path of the API resolves to its view, whatever its parameters);
        # a position that is not a small whole number names no line.
        if not (position.isascii() and position.isdigit()) or int(position) > MAX_POSITION:
            raise NotFound(f"Invoice {invoice_id} has no line {position!r}.")
        line = get_object_or_404(
            InvoiceLine.objects.select_related("invoice", "meter"),
            invoice_id=invoice_id,
            position=int(position),
        )
        page = paged_response(request, proofs.line_events(line), lambda e: EventSerializer(e).data)
        # The line's proof beside the page: hash every page's ids to check it.
        page.data["events_counted"] = line.events_counted
        page.data["events_digest"] = line.events_digest
        return page
