"""Celery entry points of the portal; the work itself is in portal/sessions.py."""

from celery import shared_task
from django.utils import timezone

from portal import sessions


@shared_task(name="portal.forget_old_sessions")
def forget_old_sessions() -> None:
    sessions.forget_old_sessions(now=timezone.now())
