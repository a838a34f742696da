"""Who is acting right now, for the audit log: a staff user (set by AuditActorMiddleware), an API
key (set by API authentication) or "system" (Celery tasks, management commands: the default).

A context variable rather than an argument, so the service functions keep their signatures and
every caller (API, admin, seed, tasks) is attributed without passing anything along.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    kind: str  # "user", "api_key" or "system"
    id: str | None
    name: str

    @classmethod
    def for_user(cls, user) -> Actor:
        """A logged-in user; anyone else (an anonymous visitor) changes nothing, so: system."""
        if user is None or not user.is_authenticated:
            return SYSTEM
        return cls("user", str(user.pk), user.get_username())

    @classmethod
    def for_api_key(cls, api_key) -> Actor:
        """An API key, by id (stable) and name (readable; keys are never shown again)."""
        return cls("api_key", str(api_key.pk), api_key.name)


SYSTEM = Actor("system", None, "system")

# An Actor, or a function that finds it: the middleware defers reading request.user (a session
# lookup) until something is actually written.
_actor: ContextVar[Actor | Callable[[], Actor]] = ContextVar("audit_actor", default=SYSTEM)


def current_actor() -> Actor:
    value = _actor.get()
    return value if isinstance(value, Actor) else value()


def set_actor(actor: Actor | Callable[[], Actor]) -> Token:
    """Set the actor; pass the token to `reset_actor` when the unit of work ends."""
    return _actor.set(actor)


def reset_actor(token: Token) -> None:
    _actor.reset(token)


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Attribute the changes made inside the block to `actor` (scripts, tests)."""
    token = set_actor(actor)
    try:
        yield actor
    finally:
        reset_actor(token)
