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


def policy_allowing(sources: dict[str, list[str]]) -> str:
    """`settings.CONTENT_SECURITY_POLICY` with more sources for some directives (a directive
    it lacks starts from `'self'`): for a page that needs another host, such as Stripe.js on
    the checkout page, and only for that page."""
    directives: dict[str, list[str]] = {}
    for directive in settings.CONTENT_SECURITY_POLICY.split(";"):
        name, *values = directive.split()
        directives[name] = values
    for name, extra in sources.items():
        current = directives.setdefault(name, ["'self'"])
        current += [source for source in extra if source not in current]
    return "; ".join(" ".join([name, *values]) for name, values in directives.items())
