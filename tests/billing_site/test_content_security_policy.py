"""Every HTML page carries the Content-Security-Policy (the browser tests in tests/dashboard
prove the pages work under it); the API's JSON answers need none. No template holds an inline
script or a javascript: link, which the policy would block."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def test_html_pages_carry_the_policy_and_json_answers_do_not(admin_client, api):
    policy = settings.CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy
    for url in ("/admin/", "/admin/dashboard/", "/admin/meters/meter/add/", "/api/docs"):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"] == policy, url
    assert Client().get("/admin/login/")["Content-Security-Policy"] == policy
    api_answer = api.get("/api/meters")
    assert api_answer.status_code == 200
    assert "Content-Security-Policy" not in api_answer


def test_the_api_docs_load_their_start_up_script_as_a_file(admin_client):
    html = admin_client.get("/api/docs").content.decode()
    assert '<script src="/api/docs?script"' in html or "docs?script" in html
    assert not re.search(r"<script>(?!\s*</script>)", html)
    script = admin_client.get("/api/docs?script")
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()


def test_no_template_has_inline_script():
    templates = [*ROOT.glob("templates/**/*.html"), *ROOT.glob("*/templates/**/*.html")]
    assert templates
    for path in templates:
        text = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag or "application/json" in tag, (path, tag)
        assert "javascript:" not in text, path
        assert not re.search(r"\son[a-z]+=\"", text), path
