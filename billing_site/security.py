"""A Content-Security-Policy on every HTML page (the staff dashboard, the admin, the API docs):
scripts only from this server's own files, no inline script, no plugins, no framing. The pages'
scripts are static files that read their data from `json_script` blocks (never executed).
"""

from __future__ import annotations

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """Sets `settings.CONTENT_SECURITY_POLICY` on HTML answers that do not set their own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and response.get("Content-Type", "").startswith("text/html"):
            response.headers.setdefault("Content-Security-Policy", policy)
        return response
