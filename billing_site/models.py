"""API keys: created by staff, shown once, stored hashed; revocable, scoped, rate-limited."""

from __future__ import annotations

import hashlib
import secrets

from django.db import models
from django.utils import timezone

KEY_PREFIX = "ubk_"


def hash_key(raw_key: str) -> str:
    """Keys are 256 random bits, so a fast hash is enough: nobody can brute-force them."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    class Scope(models.TextChoices):
        FULL = "full", "Full access"
        READ_ONLY = "read_only", "Read only (GET, HEAD, OPTIONS)"
        INGEST_ONLY = "ingest_only", "Ingest only (POST /api/events/ingest)"

    name = models.CharField(max_length=100)
    key_prefix = models.CharField(
        max_length=16, editable=False, help_text="The first characters, to recognise a key."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scope = models.CharField(
        max_length=16,
        choices=Scope.choices,
        default=Scope.FULL,
        help_text="What the key may do; a refused request answers 403 and changes nothing.",
    )
    rate_limit_per_second = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests per second (burst). Empty: the default, API_RATE_LIMIT_PER_SECOND "
        "(40). 0: no per-second limit.",
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests per minute (sustained). Empty: the default, "
        "API_RATE_LIMIT_PER_MINUTE (240). 0: no per-minute limit.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    # DRF treats the authenticated key as the request's user.
    is_authenticated = True

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def create(
        cls,
        *,
        name: str,
        scope: str = Scope.FULL,
        rate_limit_per_second: int | None = None,
        rate_limit_per_minute: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; return it with its raw value, which is never stored or shown again."""
        if scope not in cls.Scope.values:
            raise ValueError(f"unknown scope {scope!r}; use one of {', '.join(cls.Scope.values)}")
        raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
        api_key = cls.objects.create(
            name=name,
            key_prefix=raw_key[:12],
            key_hash=hash_key(raw_key),
            scope=scope,
            rate_limit_per_second=rate_limit_per_second,
            rate_limit_per_minute=rate_limit_per_minute,
        )
        return api_key, raw_key

    def revoke(self, *, now=None) -> None:
        if self.revoked_at is None:
            self.revoked_at = now or timezone.now()
            self.save(update_fields=["revoked_at"])

    @classmethod
    def find_active(cls, raw_key: str) -> ApiKey | None:
        return cls.objects.active().filter(key_hash=hash_key(raw_key)).first()


class LoginFailure(models.Model):
    """One failed staff login, kept for the throttle's window (billing_site/login_throttle.py).

    Rows in the database, not a per-process cache, so every web worker and host sees the same
    count; old rows are deleted as new failures arrive."""

    username = models.CharField(max_length=150)  # as typed, case-folded
    ip = models.CharField(max_length=64)
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["username", "at"], name="login_failure_username_at"),
            models.Index(fields=["ip", "at"], name="login_failure_ip_at"),
            models.Index(fields=["at"], name="login_failure_at"),
        ]

    def __str__(self) -> str:
        return f"{self.username} from {self.ip} at {self.at:%Y-%m-%d %H:%M:%S}"
