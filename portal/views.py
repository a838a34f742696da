"""The customer portal's pages, server-rendered: entered through a session link, then a cookie
scoped to /portal/. Every page reads the customer from the session (portal/pages.py), in the
customer's language (preferred_locale, else Accept-Language).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from functools import wraps
from urllib.parse import urlsplit

import plotly
from babel import Locale, UnknownLocaleError
from django.conf import settings
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone, translation
from django.views.decorators.http import require_GET, require_POST

from billing_site.views import PLOTLY_CACHE_SECONDS, PLOTLY_JS
from meters.analytics import MatchedEvent, iter_matched_events, matched_events
from portal import pages, sessions
from portal.models import PortalSession
from products.invoice_pdf import invoice_pdf

LANGUAGE_CODES = [code for code, _name in settings.LANGUAGES]
EVENTS_PAGE_SIZE = 50
MAX_PAGE = 100_000
DEFAULT_EVENT_DAYS = 30


def _language(request: HttpRequest, preferred: str | None) -> tuple[str, str]:
    """(Django language, Babel locale): the customer's preferred_locale if the portal speaks its
    language, else the browser's Accept-Language, else English."""
    if preferred:
        code = preferred.replace("_", "-").split("-")[0].lower()
        if code in LANGUAGE_CODES:
            try:
                return code, str(Locale.parse(preferred.replace("-", "_")))
            except (UnknownLocaleError, ValueError):
                return code, code
    code = translation.get_language_from_request(request)
    code = code.split("-")[0] if code else "en"
    return (code, code) if code in LANGUAGE_CODES else ("en", "en")


def refused(request: HttpRequest) -> HttpResponse:
    """403, a plain page: the link or session is edited, unknown, expired or logged out."""
    code, _locale = _language(request, None)
    with translation.override(code):
        response = TemplateResponse(request, "portal/refused.html", {}, status=403)
        response.render()
    return response


PortalView = Callable[..., HttpResponseBase]


def portal_page(view: PortalView) -> PortalView:
    """Opens the session from the portal cookie (403 without a live one) and speaks the
    customer's language for the whole request."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponseBase:
        raw = request.COOKIES.get(sessions.COOKIE_NAME)
        try:
            session = sessions.open_session(raw or "", now=timezone.now())
        except sessions.SessionRefused:
            return refused(request)
        code, locale = _language(request, session.customer.preferred_locale)
        with translation.override(code):
            response = view(request, session, *args, **kwargs)
            if isinstance(response, TemplateResponse):
                response.context_data = {
                    **(response.context_data or {}),
                    **_common(session, locale, code),
                }
                response.render()
        response["Content-Language"] = code
        response["Cache-Control"] = "private, no-store"
        return response

    return wrapper


def _common(session: PortalSession, locale: str, code: str) -> dict:
    return_url = session.return_url
    return {
        "customer": session.customer,
        "portal_locale": locale,
        "language_code": code,
        "business_name": settings.BUSINESS_NAME,
        "return_url": return_url,
        "return_host": urlsplit(return_url).netloc if return_url else None,
        "plotly_src": f"{reverse('portal-plotly-js')}?v={plotly.__version__}",
    }


@require_GET
def enter(request: HttpRequest, token: str) -> HttpResponse:
    """The link of a portal session: sets the portal cookie and goes to the first page."""
    now = timezone.now()
    try:
        session = sessions.open_session(token, now=now)
    except sessions.SessionRefused:
        return refused(request)
    response = HttpResponseRedirect(reverse("portal-home"))
    response.set_cookie(
        sessions.COOKIE_NAME,
        token,
        max_age=int((session.expires_at - now).total_seconds()),
        path=sessions.COOKIE_PATH,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"  # the link must not leak to other sites
    return response


@require_POST
@portal_page
def logout(request: HttpRequest, session: PortalSession) -> HttpResponse:
    sessions.end_session(session, now=timezone.now())
    response = TemplateResponse(request, "portal/logged_out.html", {})
    response.delete_cookie(sessions.COOKIE_NAME, path=sessions.COOKIE_PATH)
    return response


@require_GET
@portal_page
def home(request: HttpRequest, session: PortalSession) -> HttpResponse:
    """Subscriptions, and for each open one this period so far."""
    now = timezone.now()
    subscriptions = pages.subscriptions_of(session.customer)
    periods = [pages.this_period(s, now=now) for s in subscriptions if s.status == "active"]
    return TemplateResponse(
        request,
        "portal/home.html",
        {
            "section": "home",
            "now": now,
            "subscriptions": [(s, pages.next_billing_date(s)) for s in subscriptions],
            "periods": periods,
            "chart_series": [chart for p in periods for chart in p.charts],
        },
    )


@require_GET
@portal_page
def history(request: HttpRequest, session: PortalSession) -> HttpResponse:
    subscriptions = pages.subscriptions_of(session.customer)
    return TemplateResponse(
        request,
        "portal/history.html",
        {
            "section": "history",
            "histories": [(s, pages.history_of(s)) for s in subscriptions],
        },
    )


@require_GET
@portal_page
def invoice_list(request: HttpRequest, session: PortalSession) -> HttpResponse:
    return TemplateResponse(
        request,
        "portal/invoices.html",
        {"section": "invoices", "invoices": list(pages.invoices_of(session.customer))},
    )


def _invoice(session: PortalSession, invoice_id: str):
    return get_object_or_404(pages.invoices_of(session.customer), pk=invoice_id)


@require_GET
@portal_page
def invoice_detail(request: HttpRequest, session: PortalSession, invoice_id: str) -> HttpResponse:
    invoice = _invoice(session, invoice_id)
    return TemplateResponse(
        request,
        "portal/invoice.html",
        {
            "section": "invoices",
            "invoice": invoice,
            "lines": list(invoice.lines.select_related("meter")),
        },
    )


@require_GET
@portal_page
def invoice_pdf_view(request: HttpRequest, session: PortalSession, invoice_id: str) -> HttpResponse:
    invoice = _invoice(session, invoice_id)
    response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
    name = invoice.number or invoice.invoice_id
    response["Content-Disposition"] = f'attachment; filename="{name}.pdf"'
    return response


def _page_number(request: HttpRequest) -> int:
    try:
        return min(max(int(request.GET.get("page", "0")), 0), MAX_PAGE)
    except ValueError:
        return 0


@require_GET
@portal_page
def credits(request: HttpRequest, session: PortalSession) -> HttpResponse:
    balances = pages.balances_of(session.customer)
    page = _page_number(request)
    selected = None
    wanted = request.GET.get("balance")
    for balance in balances:
        if wanted == str(balance.pk) or (wanted is None and selected is None):
            selected = balance
    entries, more = pages.ledger_of(selected, page=page) if selected else ([], False)
    return TemplateResponse(
        request,
        "portal/credits.html",
        {
            "section": "credits",
            "balances": balances,
            "selected": selected,
            "entries": entries,
            "page": page,
            "more": more,
        },
    )


def _day(raw: str | None, default: datetime) -> datetime:
    """A yyyy-mm-dd from the form as the start of that UTC day; the default if absent or bad."""
    try:
        day = datetime.strptime(raw or "", "%Y-%m-%d").date()
    except ValueError:
        return default
    if not 1970 <= day.year <= 9998:
        return default
    return datetime.combine(day, time(), tzinfo=UTC)


def _event_range(request: HttpRequest) -> tuple[datetime, datetime]:
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = _day(request.GET.get("start"), today - timedelta(days=DEFAULT_EVENT_DAYS - 1))
    last = _day(request.GET.get("end"), today)
    if last < start:
        start, last = last, start
    return start, last + timedelta(days=1)  # the end day is included


@require_GET
@portal_page
def events(request: HttpRequest, session: PortalSession) -> HttpResponse:
    meters = pages.meters_of(session.customer)
    meter = next(
        (m for m in meters if m.id == request.GET.get("meter")), meters[0] if meters else None
    )
    start, end = _event_range(request)
    page = _page_number(request)
    found: list[MatchedEvent] = []
    more = False
    if meter is not None:
        found, more = matched_events(
            meter,
            start,
            end,
            customer_id=session.customer_id,
            page=page,
            page_size=EVENTS_PAGE_SIZE,
        )
    return TemplateResponse(
        request,
        "portal/events.html",
        {
            "section": "events",
            "meters": meters,
            "meter": meter,
            "start": start,
            "end_day": end - timedelta(days=1),
            "events": found,
            "page": page,
            "more": more,
        },
    )


@require_GET
@portal_page
def events_csv(request: HttpRequest, session: PortalSession) -> StreamingHttpResponse:
    meter = next(
        (m for m in pages.meters_of(session.customer) if m.id == request.GET.get("meter")), None
    )
    if meter is None:
        raise Http404
    start, end = _event_range(request)

    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())
    rows = iter_matched_events(meter, start, end, customer_id=session.customer_id)

    def cell(text: str) -> str:
        # A spreadsheet runs a cell starting with = + - @ as a formula: such text is quoted.
        return f"'{text}" if text[:1] in ("=", "+", "-", "@") else text

    header = ["event_id", "timestamp", "event_name", "value", "skipped", "metadata"]
    body = (
        writer.writerow(
            [
                cell(e.event_id),
                e.timestamp.isoformat(),
                cell(e.event_name),
                "" if e.value is None else str(e.value),
                e.skip_reason or "",
                cell(e.metadata_json),
            ]
        )
        for e in rows
    )
    response = StreamingHttpResponse(
        (line for part in ([writer.writerow(header)], body) for line in part),
        content_type="text/csv; charset=utf-8",
    )
    name = f"{meter.id}-{start:%Y%m%d}-{end - timedelta(days=1):%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_GET
def plotly_js(request: HttpRequest) -> FileResponse:
    """Plotly from the installed wheel (never a CDN); public like any static file."""
    response = FileResponse(PLOTLY_JS.open("rb"), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = f"public, max-age={PLOTLY_CACHE_SECONDS}, immutable"
    return response
