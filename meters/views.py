"""Staff views for meters, mounted by MeterAdmin behind the admin's staff check: the create/edit
form with its filter builder, the live-preview JSON endpoint, and the analytics page with its CSV
exports. Thin: they parse the request, call meters.forms / preview / analytics, and render.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from billing_site.api.parsers import unstorable_strings
from billing_site.errors import InvalidInput
from billing_site.jsonutil import exact_dumps, exact_loads
from billing_site.views import plotly_src
from meters import analytics, preview
from meters.forms import AnalyticsRangeForm, MeterForm
from meters.health import meter_health
from meters.models import Meter
from meters.usage import GRANULARITIES


def _admin_context(request: HttpRequest, model_admin: admin.ModelAdmin, **extra: Any) -> dict:
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        **extra,
    }


def meter_form(
    request: HttpRequest, model_admin: admin.ModelAdmin, meter: Meter | None = None
) -> HttpResponse:
    if request.method == "POST":
        form = MeterForm(request.POST, initial=MeterForm.initial_for(meter) if meter else None)
        if form.is_valid():
            saved = form.save(now=timezone.now(), meter=meter)
            if saved is not None:
                # The admin's history page lists these entries, as for any admin save.
                if meter is None:
                    model_admin.log_addition(request, saved, [{"added": {}}])
                else:
                    changed = [str(form[name].label) for name in form.changed_data]
                    model_admin.log_change(request, saved, [{"changed": {"fields": changed}}])
                verb = "created" if meter is None else "saved"
                messages.success(request, f"Meter “{saved.name}” {verb}.")
                return redirect("admin:meters_meter_analytics", quote(saved.pk))
    else:
        form = MeterForm(initial=MeterForm.initial_for(meter) if meter else None)
    event_name = form["event_name"].value() or ""
    context = _admin_context(
        request,
        model_admin,
        title="Add meter" if meter is None else f"Edit meter “{meter.name}”",
        meter=meter,
        form=form,
        builder_state=form.builder_state(),
        filter_errors=form.filter_errors,
        event_names=preview.known_event_names(),
        metadata_keys=[
            {"key": s.key, "type": s.value_type} for s in preview.metadata_keys(event_name)
        ],
        preview_url=reverse("admin:meters_meter_preview"),
        preview_days=preview.PREVIEW_WINDOW.days,
    )
    return TemplateResponse(request, "admin/meters/meter/meter_form.html", context)


@require_POST
def preview_json(request: HttpRequest) -> JsonResponse:
    """POST a draft `{event_name, aggregation: {type, key}, filter}`; numbers stay exact."""
    try:
        body = exact_loads(request.body or b"null")
    except ValueError:
        return JsonResponse({"errors": [{"field": "", "message": "Not valid JSON."}]}, status=400)
    # NUL and lone surrogates cannot reach PostgreSQL (the API's parser refuses them the same way).
    unstorable = unstorable_strings(body)
    if unstorable:
        return JsonResponse({"errors": unstorable, "keys": []}, status=422)
    event_name = body.get("event_name") if isinstance(body, dict) else None
    keys = preview.metadata_keys(event_name) if isinstance(event_name, str) else []
    suggestions = [{"key": s.key, "type": s.value_type} for s in keys]
    try:
        draft = preview.parse_draft(body)
    except InvalidInput as exc:
        return JsonResponse({"errors": exc.errors, "keys": suggestions}, status=422)
    result = preview.preview(draft, now=timezone.now())
    return JsonResponse(
        {
            "window_start": result.window_start.isoformat(),
            "window_end": result.window_end.isoformat(),
            "examined": result.examined,
            "matched": result.matched,
            "contributing": result.contributing,
            "skipped_missing_key": result.skipped_missing_key,
            "skipped_not_a_number": result.skipped_not_a_number,
            "distinct_values": result.distinct_values,
            "sample": [
                {
                    "event_id": event.event_id,
                    "customer_id": event.customer_id,
                    "timestamp": event.timestamp.isoformat(),
                    "metadata": preview.metadata_display(event.metadata),
                    "value": None if event.value is None else str(event.value),
                    "skip_reason": event.skip_reason,
                }
                for event in result.sample
            ],
            "keys": suggestions,
            "errors": [],
        }
    )


def analytics_page(
    request: HttpRequest, model_admin: admin.ModelAdmin, meter: Meter
) -> HttpResponse:
    params = AnalyticsRangeForm(request.GET)
    now = timezone.now()
    start, end, preset, granularity = params.window(now=now)
    cleaned = params.cleaned_data if params.is_valid() else {}
    customer = (cleaned.get("customer") or "").strip()
    page = cleaned.get("page") or 0
    sort = cleaned.get("sort") or "-usage"
    rows = analytics.customer_usage(meter, start, end)
    events, has_next = analytics.matched_events(
        meter, start, end, customer_id=customer or None, page=page
    )
    # Links keep the range; each adds what it changes (tab, page, sort).
    range_query = {"range": preset, "granularity": granularity}
    if preset == "custom":
        range_query |= {"start": start.isoformat(), "end": end.isoformat()}
    events_query = range_query | ({"customer": customer} if customer else {})
    context = _admin_context(
        request,
        model_admin,
        title=f"Meter analytics: {meter.name}",
        meter=meter,
        tab=cleaned.get("tab") or "overview",
        now=now,
        start=start,
        end=end,
        preset=preset,
        presets=list(analytics.RANGE_PRESETS),
        granularity=granularity,
        granularities=list(GRANULARITIES),
        overview=analytics.overview(meter, rows),
        series=analytics.plotly_series(
            meter, analytics.usage_series(meter, start, end, granularity)
        ),
        plotly_src=plotly_src(),
        customers=analytics.sort_customers(rows, sort),
        sort=sort,
        sort_links=_sort_links(range_query, sort),
        events=events,
        customer=customer,
        page=page,
        events_first=page * analytics.EVENTS_PAGE_SIZE + 1,
        events_last=page * analytics.EVENTS_PAGE_SIZE + len(events),
        prev_page_query=urlencode(events_query | {"tab": "events", "page": page - 1})
        if page > 0
        else None,
        next_page_query=urlencode(events_query | {"tab": "events", "page": page + 1})
        if has_next
        else None,
        range_query=urlencode(range_query),
        events_query=urlencode(events_query),
        freshness=analytics.freshness(now=now, meters=[meter]),
        is_count=meter.aggregation_type == "count",
        health=meter_health(meter, now=now),
    )
    return TemplateResponse(request, "admin/meters/meter/analytics.html", context)


def _sort_links(range_query: dict, current: str) -> dict[str, str]:
    """Each column's link: sorts descending first, and flips when it is already the sort."""
    links = {}
    for column in analytics.CUSTOMER_SORTS:
        target = column if current == f"-{column}" else f"-{column}"
        links[column] = urlencode(range_query | {"tab": "customers", "sort": target})
    return links


class _Echo:
    """csv.writer wants a file; this one hands each formatted line straight back."""

    def write(self, value: str) -> str:
        return value


# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """Text must not run as a spreadsheet formula when the export is opened: a leading `'` keeps
    it text. Numbers (int, Decimal) stay numbers, so a negative quantity is still `-5`."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return f"'{value}"
    return value


def _csv_response(filename: str, header: list[str], rows: Iterable[list]) -> StreamingHttpResponse:
    """Every CSV export goes through here, so every text cell is escaped in this one place."""
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow([safe_cell(cell) for cell in header])
        for row in rows:
            yield writer.writerow([safe_cell(cell) for cell in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _charge_cells(row: analytics.CustomerUsage) -> list[object]:
    """(total in minor units, currency, every product's charge); the total only when all the
    charges are in one currency, since amounts in different currencies do not add up."""
    currencies = {charge.currency for charge in row.charges}
    single = len(currencies) == 1
    return [
        row.charge_minor if single else "",
        currencies.pop() if single else "",
        "; ".join(f"{c.product_name}: {c.display}" for c in row.charges),
    ]


def events_csv(request: HttpRequest, meter: Meter) -> StreamingHttpResponse:
    params = AnalyticsRangeForm(request.GET)
    start, end, _, _ = params.window(now=timezone.now())
    customer = (params.cleaned_data.get("customer") or "").strip() if params.is_valid() else ""
    events = analytics.iter_matched_events(meter, start, end, customer_id=customer or None)
    rows = (
        [
            event.event_id,
            event.customer_id,
            event.event_name,
            event.timestamp.isoformat(),
            "" if event.value is None else event.value,
            event.skip_reason or "",
            exact_dumps(event.metadata),
        ]
        for event in events
    )
    header = ["event_id", "customer_id", "event_name", "timestamp", "value", "skipped", "metadata"]
    return _csv_response(f"{meter.pk}-events.csv", header, rows)


def customers_csv(request: HttpRequest, meter: Meter) -> StreamingHttpResponse:
    params = AnalyticsRangeForm(request.GET)
    start, end, _, _ = params.window(now=timezone.now())
    sort = (params.cleaned_data.get("sort") if params.is_valid() else None) or "-usage"
    customers = analytics.sort_customers(analytics.customer_usage(meter, start, end), sort)
    rows = (
        [
            row.customer_id,
            row.customer_name or "",
            row.usage.event_count,
            row.usage.skipped_count,
            row.usage.quantity,
            meter.measurement_unit,
            *_charge_cells(row),
        ]
        for row in customers
    )
    header = [
        "customer_id",
        "name",
        "events",
        "skipped",
        "usage",
        "unit",
        "charge_minor",
        "currency",
        "charges",
    ]
    return _csv_response(f"{meter.pk}-customers.csv", header, rows)
