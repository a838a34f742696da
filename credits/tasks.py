"""Celery entry point for credit deduction; the rules are in credits/deduction.py."""

from celery import shared_task
from django.utils import timezone

from credits.deduction import run_deductions


@shared_task(name="credits.deduct")
def deduct() -> None:
    run_deductions(now=timezone.now())
