"""Staff pages outside any one app: the dashboard home, and Plotly's JavaScript from the installed
wheel (never a CDN). Both are mounted behind `admin.site.admin_view`, so only staff reach them, and
each also needs the view permissions of what it shows (audit/roles.py).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import plotly
from django.contrib import admin
from django.http import FileResponse, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from audit import roles
from billing_site import dashboard
from meters.analytics import freshness, plotly_series
from meters.models import Meter

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
# The URL carries the version, so the file can be cached for a year and still change on upgrade.
PLOTLY_CACHE_SECONDS = 365 * 24 * 3600


def plotly_src() -> str:
    return f"{reverse('staff-plotly-js')}?v={plotly.__version__}"


def plotly_js(request: HttpRequest) -> FileResponse:
    roles.require_any(request, *roles.CHARTS)
    response = FileResponse(PLOTLY_JS.open("rb"), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = f"private, max-age={PLOTLY_CACHE_SECONDS}, immutable"
    return response


def staff_home(request: HttpRequest) -> HttpResponse:
    roles.require(request, *roles.DASHBOARD)
    now = timezone.now()
    start = now - timedelta(days=dashboard.CHART_DAYS)
    usage = dashboard.usage_by_day(start=start, end=now)
    revenue = dashboard.revenue_by_day(start=start, end=now)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "now": now,
        "chart_days": dashboard.CHART_DAYS,
        "plotly_src": plotly_src(),
        "usage_traces": [
            {"name": series.meter.name, "meter_id": series.meter.pk}
            | plotly_series(series.meter, series.points)
            for series in usage
        ],
        "revenue_traces": dashboard.revenue_traces(revenue, start=start, end=now),
        "top_customers": dashboard.top_customers(start=start, end=now),
        "ingestion": [
            {"hour": hour.isoformat(), "events": count}
            for hour, count in dashboard.ingestion_by_hour(now=now)
        ],
        "unknown": dashboard.unknown_customers(),
        "unmetered_names": dashboard.unmetered_event_names(),
        "customer_count": dashboard.customer_count(),
        "freshness": freshness(now=now, meters=list(Meter.objects.active())),
        "verification": dashboard.latest_verification(),
    }
    context["ingested_24h"] = sum(row["events"] for row in context["ingestion"])
    return TemplateResponse(request, "dashboard/home.html", context)
