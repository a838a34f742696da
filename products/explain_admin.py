"""Staff pages for the explanations: one event explained (linked from the event admin) and the
events behind an invoice line, paged or as CSV (linked from the invoice admin). Thin: the
answers come from products/explain.py and products/proofs.py."""

from __future__ import annotations

import csv

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse

from billing_site.jsonutil import exact_dumps
from events.queries import EventsArchived
from products import explain, proofs
from products.models import InvoiceLine

EVENTS_PER_PAGE = 100


def event_explain_view(request: HttpRequest, event_id: str, *, can_view: bool) -> HttpResponse:
    """Why this event is (not) billed, for staff who may read events."""
    if not can_view:
        raise PermissionDenied
    try:
        answer = explain.explain_event(event_id)
    except EventsArchived as archived:
        return HttpResponse(archived.message, status=archived.status, content_type="text/plain")
    if answer is None:
        raise Http404(f"No event {event_id!r} was stored or refused.")
    return TemplateResponse(
        request,
        "admin/events/event/explain.html",
        {
            "title": f"Why is {event_id} (not) billed?",
            "answer": answer,
            "answer_json": exact_dumps(answer),
        },
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def line_events_view(
    request: HttpRequest, invoice_id: str, position: int, *, can_view: bool
) -> HttpResponse | StreamingHttpResponse:
    """The events an invoice line counted: paged in the admin, or every one with ?format=csv."""
    if not can_view:
        raise PermissionDenied
    line = get_object_or_404(
        InvoiceLine.objects.select_related("invoice", "meter"),
        invoice_id=invoice_id,
        position=position,
    )
    events = proofs.line_events(line)
    if request.GET.get("format") == "csv":
        writer = csv.writer(_Echo())
        header = ["event_id", "customer_id", "event_name", "timestamp", "ingested_at", "metadata"]
        rows = (
            writer.writerow(
                [
                    e.event_id,
                    e.customer_id,
                    e.event_name,
                    e.timestamp.isoformat(),
                    e.ingested_at.isoformat(),
                    exact_dumps(e.metadata),
                ]
            )
            for e in events.iterator(chunk_size=2000)
        )
        response = StreamingHttpResponse(
            (row for chunk in ([writer.writerow(header)], rows) for row in chunk),
            content_type="text/csv; charset=utf-8",
        )
        name = f"{line.invoice.number or invoice_id}-line-{position}-events.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
    return TemplateResponse(
        request,
        "admin/products/invoice/line_events.html",
        {
            "title": f"Events of line {position} of invoice {line.invoice.number or invoice_id}",
            "line": line,
            "invoice": line.invoice,
            "page": page,
        },
    )
