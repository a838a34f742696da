"""Portal sessions: a signed, single-customer, expiring link, and the cookie it turns into.

The link carries a random token signed with SECRET_KEY (django.core.signing), so an edited link
is refused before any lookup; the token's SHA-256 finds the stored session, whose expiry and end
(logout) decide the rest. The cookie that the link sets holds the same signed token, scoped to
the portal's paths: it is never the staff session and never an API key.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail

from billing_site.errors import NotFound
from portal.models import PortalSession
from products.models import Customer

logger = logging.getLogger(__name__)

SALT = "portal.session"
COOKIE_NAME = "billing_portal"
COOKIE_PATH = "/portal/"


class SessionRefused(Exception):
    """The link or cookie is tampered with, unknown, expired or logged out."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewSession:
    session: PortalSession
    signed_token: str  # what the link carries; shown once, never stored


def create_session(customer_id: str, *, return_url: str | None, now: datetime) -> NewSession:
    """A new portal session of one customer, valid CUSTOMER_PORTAL_SESSION_MINUTES from `now`."""
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        raise NotFound(f"No customer {customer_id}.")
    token = secrets.token_urlsafe(32)
    session = PortalSession.objects.create(
        customer=customer,
        token_hash=_hash(token),
        return_url=return_url,
        created_at=now,
        expires_at=now + timedelta(minutes=settings.CUSTOMER_PORTAL_SESSION_MINUTES),
    )
    return NewSession(session, signing.Signer(salt=SALT).sign(token))


def email_link(session: PortalSession, link: str) -> bool:
    """Mail the link to the customer through Django's email backend (call it once the session is
    committed). A mail server that fails is logged, not raised: the caller still has the link."""
    customer = session.customer
    minutes = settings.CUSTOMER_PORTAL_SESSION_MINUTES
    body = (
        f"Hello {customer.name},\n\n"
        f"your billing portal at {settings.BUSINESS_NAME}: {link}\n\n"
        f"The link works for {minutes} minutes. If you did not ask for it, ignore this email.\n"
    )
    try:
        send_mail(
            f"Your billing portal at {settings.BUSINESS_NAME}",
            body,
            settings.DEFAULT_FROM_EMAIL,
            [customer.email],
        )
    except (smtplib.SMTPException, OSError):
        logger.exception("The portal link for %s could not be mailed", customer.pk)
        return False
    return True


def open_session(signed_token: str, *, now: datetime) -> PortalSession:
    """The live session a signed token belongs to, else SessionRefused."""
    try:
        token = signing.Signer(salt=SALT).unsign(signed_token)
    except signing.BadSignature:
        raise SessionRefused("tampered") from None
    session = (
        PortalSession.objects.select_related("customer").filter(token_hash=_hash(token)).first()
    )
    if session is None:
        raise SessionRefused("unknown")
    if session.ended_at is not None:
        raise SessionRefused("ended")
    if session.expires_at <= now:
        raise SessionRefused("expired")
    return session


def end_session(session: PortalSession, *, now: datetime) -> None:
    """Log out: the link and the cookie stop working at once."""
    PortalSession.objects.filter(pk=session.pk, ended_at__isnull=True).update(ended_at=now)


def forget_old_sessions(*, now: datetime, kept_for: timedelta = timedelta(days=30)) -> int:
    """Delete sessions that expired or ended more than `kept_for` ago (their links were dead
    anyway); returns how many."""
    cutoff = now - kept_for
    old = PortalSession.objects.filter(expires_at__lt=cutoff) | PortalSession.objects.filter(
        ended_at__lt=cutoff
    )
    deleted, _ = old.delete()
    return deleted
