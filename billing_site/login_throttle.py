"""Throttling of staff logins: after LOGIN_THROTTLE_FAILURES failed logins for one user name, or
LOGIN_THROTTLE_IP_FAILURES from one address, within LOGIN_THROTTLE_WINDOW_SECONDS, further
attempts are refused, the right password included, until the oldest of those failures leaves
the window. Failures are rows (LoginFailure), shared by every worker; a successful login clears
its user name's failures.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from billing_site.models import LoginFailure


def _window() -> timedelta:
    return timedelta(seconds=settings.LOGIN_THROTTLE_WINDOW_SECONDS)


def _username_key(username: str) -> str:
    # Case-folded so "Alice" and "alice" share one count whatever the user model compares.
    return username.strip().casefold()[:150]


def _locked_until(failures, limit: int, now: datetime) -> datetime | None:
    """When the `limit` newest failures in the window stop counting, if there are that many."""
    if limit <= 0:
        return None
    recent = list(
        failures.filter(at__gt=now - _window()).order_by("-at").values_list("at", flat=True)[:limit]
    )
    return recent[-1] + _window() if len(recent) >= limit else None


def retry_after(*, username: str, ip: str, now: datetime) -> timedelta | None:
    """How long this user name or address must wait before trying again; None: not throttled."""
    until = [
        moment
        for moment in (
            _locked_until(
                LoginFailure.objects.filter(username=_username_key(username)),
                settings.LOGIN_THROTTLE_FAILURES,
                now,
            )
            if username
            else None,
            _locked_until(
                LoginFailure.objects.filter(ip=ip), settings.LOGIN_THROTTLE_IP_FAILURES, now
            ),
        )
        if moment is not None
    ]
    return max(until) - now if until else None


def record_failure(*, username: str, ip: str, now: datetime) -> None:
    """Count one failed login (wrong password, unknown or non-staff user); drop expired rows."""
    LoginFailure.objects.filter(at__lte=now - _window()).delete()
    LoginFailure.objects.create(username=_username_key(username), ip=ip, at=now)


def record_success(*, username: str) -> None:
    LoginFailure.objects.filter(username=_username_key(username)).delete()
