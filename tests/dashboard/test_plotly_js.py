"""Plotly's JavaScript comes from the installed wheel, through a staff URL that browsers may cache
for a year (the URL carries the version); no page loads anything from another host."""

from __future__ import annotations

import re
from pathlib import Path

import plotly
from django.contrib.admin.utils import quote
from django.urls import reverse

from billing_site.views import PLOTLY_JS
from tests.products.factories import make_meter

ROOT = Path(__file__).resolve().parents[2]


def test_plotly_is_served_from_the_installed_package(staff_client):
    response = staff_client.get(reverse("staff-plotly-js"), {"v": plotly.__version__})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert "max-age=31536000" in response["Cache-Control"]
    assert b"".join(response.streaming_content) == PLOTLY_JS.read_bytes()


def test_pages_load_scripts_and_styles_from_this_server_only(staff_client):
    from django.utils import timezone

    meter = make_meter("Calls", "api.call", now=timezone.now())
    for url in (
        reverse("staff-dashboard"),
        reverse("admin:index"),
        reverse("admin:meters_meter_add"),
        reverse("admin:meters_meter_analytics", args=[quote(meter.pk)]),
    ):
        html = staff_client.get(url).content.decode()
        sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
        assert sources, url
        assert all(source.startswith("/") for source in sources), (url, sources)
        assert plotly.__version__ in html or url in (
            reverse("admin:index"),
            reverse("admin:meters_meter_add"),
        )


def test_no_template_or_script_loads_from_another_host():
    ours = [
        *ROOT.glob("templates/dashboard/**/*.html"),
        *ROOT.glob("templates/admin/meters/**/*.html"),
        *ROOT.glob("static/dashboard/*"),
    ]
    assert ours
    for path in ours:
        assert not re.search(r"cdn|https?://", path.read_text(), re.IGNORECASE), path
    for path in ROOT.glob("templates/**/*.html"):
        external = re.search(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//', path.read_text())
        assert not external, path
