"""The staff site: the admin under this project's name, with a throttled login form, and the
plumbing every app's ModelAdmin shares (refusing, with a 403, an action the user may not run).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from billing_site import login_throttle
from billing_site.client_address import client_ip

THROTTLED = "throttled"


class ThrottledLoginForm(AdminAuthenticationForm):
    """The admin's login form, refusing every attempt while the user name or the address is
    throttled (billing_site/login_throttle.py), and counting each failed one."""

    def clean(self) -> dict:
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request) if self.request else "unknown"
        now = timezone.now()
        wait = login_throttle.retry_after(username=username, ip=ip, now=now)
        if wait is not None:
            self.retry_after_seconds = math.ceil(wait.total_seconds())
            minutes = max(1, math.ceil(wait.total_seconds() / 60))
            raise ValidationError(
                "Too many failed logins for this user or from this address. Logins are "
                f"refused for {minutes} more minute{'s' if minutes != 1 else ''}, even with "
                "the right password.",
                code=THROTTLED,
            )
        try:
            cleaned = super().clean()
        except ValidationError as exc:
            if any(error.code == "invalid_login" for error in exc.error_list):
                login_throttle.record_failure(username=username, ip=ip, now=now)
            raise
        login_throttle.record_success(username=username)
        return cleaned


class StaffAdminSite(admin.AdminSite):
    site_header = "Usage billing"
    site_title = "Usage billing"
    index_title = "Staff dashboard"
    login_form = ThrottledLoginForm

    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        """A throttled attempt is answered 429 with Retry-After, the form saying why."""
        response = super().login(request, extra_context)
        form = getattr(response, "context_data", {}).get("form")
        if form is not None and form.is_bound and form.has_error("__all__", THROTTLED):
            response.status_code = 429
            response["Retry-After"] = str(getattr(form, "retry_after_seconds", 60))
        return response


# The mixin's methods call ModelAdmin's: type-check it as one, run it as a plain mixin.
if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin
else:
    _AdminBase = object


class PermittedActionsMixin(_AdminBase):
    """A POSTed admin action the user lacks the permission for answers 403.

    Django leaves such an action out of the list's menu, and a POST naming it anyway gets the
    list again with 200 and no word of refusal; a refusal should say so, as every form does."""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        action = request.POST.get("action") if request.method == "POST" else None
        if (
            action
            and self.get_action(action) is not None
            and action not in self.get_actions(request)
        ):
            raise PermissionDenied
        return super().changelist_view(request, extra_context)
