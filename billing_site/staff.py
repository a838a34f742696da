"""Admin plumbing shared by every app's ModelAdmin: refusing, with a 403, an action the user may
not run (the admin itself would quietly show the list again)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


class PermittedActionsMixin:
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
