"""Rate limits per API key (and per IP without a valid key), shared by all worker processes.

Two fixed windows at once, as Dodo's tiers have them: a burst limit per second and a sustained
limit per minute (defaults 40/s and 240/min, Dodo's tier 0; `API_RATE_LIMIT_PER_SECOND` /
`API_RATE_LIMIT_PER_MINUTE`, overridden per key by `ApiKey.rate_limit_per_second/_minute`; 0 turns a
window off). Requests without a valid key are limited per client IP (billing_site/client_address.py:
`REMOTE_ADDR`, or behind `TRUSTED_PROXIES` the client they forward for) at 20/s and
100/min (`API_RATE_LIMIT_ANON_PER_SECOND` / `_PER_MINUTE`), except payment providers' webhooks
(`/api/providers/...`, signed), counted per IP on their own at 200/s
(`API_RATE_LIMIT_PROVIDER_PER_SECOND`).

Only admitted requests count, and a request is admitted only if *both* windows have room. With
`REDIS_URL` set, the counters live in Redis and one Lua script reads, checks and increments them
atomically on the Redis clock, so any number of gunicorn workers (on any number of hosts) share
them exactly. Without `REDIS_URL` (the embedded demo) the counters live in the process: each
worker process then has its own allowance.

If Redis is unreachable the limiter *fails open*: requests are served without limits (and without
the X-RateLimit headers) and a warning is logged; Redis is retried after a few seconds.

Fixed windows let a client reach twice a limit across a window boundary (the end of one second
and the start of the next); the per-minute window bounds what that can add up to.

Every response under /api/ carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
`X-RateLimit-Reset` (seconds until that window resets) for the window closest to its limit; a
refused request answers `429 {"code": "TOO_MANY_REQUESTS", ...}` with `Retry-After` (seconds).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse

from billing_site.api.authentication import bearer_token, lookup_api_key
from billing_site.api.exceptions import error_body, service_unavailable
from billing_site.client_address import client_ip

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
REDIS_KEY_PREFIX = "billing:ratelimit:"
# Redis answers in well under a millisecond; past this, treat it as unreachable (fail open).
REDIS_TIMEOUT_SECONDS = 0.25
# After a Redis failure, do not try it again for this long (no added latency during an outage).
REDIS_RETRY_AFTER_SECONDS = 5.0

# (name, length in milliseconds), in the order of `Limits` and of the Lua script's counters.
WINDOWS = (("second", 1_000), ("minute", 60_000))


@dataclass(frozen=True)
class Limits:
    """Requests allowed per window; 0 means that window is not limited."""

    per_second: int
    per_minute: int

    @property
    def values(self) -> tuple[int, int]:
        return (self.per_second, self.per_minute)

    @property
    def enabled(self) -> bool:
        return any(limit > 0 for limit in self.values)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    window: str  # the window reported in the headers: "second" or "minute"
    limit: int
    remaining: int
    reset: int  # whole seconds (rounded up) until that window starts afresh
    retry_after: int  # when refused: whole seconds until every full window has reset

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


def decide(limits: Limits, now_ms: int, counts: tuple[int, int], allowed: bool) -> Decision:
    """The answer for one request, from the window counts after it (unchanged if refused)."""
    windows = []
    for (name, length), limit, count in zip(WINDOWS, limits.values, counts, strict=True):
        if limit <= 0:
            continue
        reset_ms = (now_ms // length + 1) * length - now_ms
        windows.append((name, limit, max(limit - count, 0), reset_ms))
    if allowed:
        # The window the client will run into first: least room left, then the longer wait.
        name, limit, remaining, reset_ms = min(windows, key=lambda w: (w[2], -w[3]))
        return Decision(True, name, limit, remaining, _seconds(reset_ms), 0)
    full = [w for w in windows if w[2] == 0]
    name, limit, remaining, reset_ms = max(full, key=lambda w: w[3])
    return Decision(False, name, limit, remaining, _seconds(reset_ms), _seconds(reset_ms))


class InProcessLimiter:
    """The same fixed windows kept in this process only: per worker process, not shared."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # identity -> [second window, second count, minute window, minute count]
        self._state: dict[str, list[int]] = {}

    def hit(self, identity: str, limits: Limits) -> Decision:
        now_ms = time.time_ns() // 1_000_000
        current = [now_ms // length for _, length in WINDOWS]
        with self._lock:
            if len(self._state) > self.MAX_ENTRIES:
                self._prune(current[1])
            state = self._state.get(identity, [0, 0, 0, 0])
            counts = [
                state[2 * i + 1] if state[2 * i] == current[i] else 0 for i in range(len(WINDOWS))
            ]
            allowed = all(
                limit <= 0 or count < limit
                for limit, count in zip(limits.values, counts, strict=True)
            )
            if allowed:
                counts = [count + 1 for count in counts]
                self._state[identity] = [current[0], counts[0], current[1], counts[1]]
        return decide(limits, now_ms, (counts[0], counts[1]), allowed)

    def _prune(self, current_minute: int) -> None:
        stale = [key for key, state in self._state.items() if state[2] < current_minute]
        for key in stale:
            del self._state[key]


# KEYS[1]: the identity's hash {w1, c1, w2, c2} (window number and count per window);
# ARGV: the per-second and per-minute limits (0 = none). Runs atomically inside Redis, on its clock.
# Answers {allowed (1/0), now in ms, second count, minute count} with the counts after this request.
_LUA = """
local limits = {tonumber(ARGV[1]), tonumber(ARGV[2])}
local lengths = {1000, 60000}
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'w1', 'c1', 'w2', 'c2')
local windows, counts, allowed = {}, {}, 1
for i = 1, 2 do
  windows[i] = math.floor(now_ms / lengths[i])
  counts[i] = 0
  if tonumber(state[2 * i - 1]) == windows[i] then counts[i] = tonumber(state[2 * i]) or 0 end
  if limits[i] > 0 and counts[i] >= limits[i] then allowed = 0 end
end
if allowed == 1 then
  counts[1] = counts[1] + 1
  counts[2] = counts[2] + 1
  redis.call('HSET', KEYS[1], 'w1', windows[1], 'c1', counts[1], 'w2', windows[2], 'c2', counts[2])
  redis.call('PEXPIRE', KEYS[1], lengths[2] + 1000)
end
return {allowed, now_ms, counts[1], counts[2]}
"""


class RedisLimiter:
    """Counters in Redis, shared by every process; fails open while Redis is unreachable."""

    def __init__(self, url: str) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._errors = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        self._script = self.client.register_script(_LUA)
        self._down_until = 0.0

    def hit(self, identity: str, limits: Limits) -> Decision | None:
        """The decision, or None when Redis cannot be asked (the request is then allowed)."""
        if time.monotonic() < self._down_until:
            return None
        try:
            allowed, now_ms, per_second, per_minute = self._script(
                keys=[REDIS_KEY_PREFIX + identity], args=list(limits.values)
            )
        except self._errors as exc:
            self._down_until = time.monotonic() + REDIS_RETRY_AFTER_SECONDS
            logger.warning(
                "rate limiter: Redis is unreachable (%s); requests are served without rate "
                "limits, retrying Redis in %.0f s",
                exc,
                REDIS_RETRY_AFTER_SECONDS,
            )
            return None
        return decide(limits, int(now_ms), (int(per_second), int(per_minute)), bool(allowed))


PROVIDER_PREFIX = f"{API_PREFIX}providers/"

_limiters: dict[str, InProcessLimiter | RedisLimiter] = {}
_limiters_lock = threading.Lock()


def get_limiter() -> InProcessLimiter | RedisLimiter:
    """The limiter for the configured REDIS_URL (in-process when it is empty), made once."""
    url = settings.REDIS_URL or ""
    limiter = _limiters.get(url)
    if limiter is None:
        with _limiters_lock:
            limiter = _limiters.get(url)
            if limiter is None:
                limiter = RedisLimiter(url) if url else InProcessLimiter()
                _limiters[url] = limiter
    return limiter


def _or_default(value: int | None, default: int) -> int:
    return default if value is None else value


def identify(request) -> tuple[str, Limits, str]:
    """(counter identity, its limits, who it is in words) for a request under /api/."""
    raw_key = bearer_token(request)
    api_key = lookup_api_key(request, raw_key) if raw_key else None
    if api_key is not None:
        limits = Limits(
            _or_default(api_key.rate_limit_per_second, settings.API_RATE_LIMIT_PER_SECOND),
            _or_default(api_key.rate_limit_per_minute, settings.API_RATE_LIMIT_PER_MINUTE),
        )
        # The hash, not the primary key: unique even across databases sharing one Redis.
        return f"key:{api_key.key_hash[:32]}", limits, "this API key"
    ip = client_ip(request)
    if request.path_info.startswith(PROVIDER_PREFIX):
        # A payment provider's webhooks come in bursts (a billing run's charges) from a few
        # addresses, and carry their own signature: a counter of their own, not the anonymous
        # allowance meant for clients that forgot their key.
        limits = Limits(settings.API_RATE_LIMIT_PROVIDER_PER_SECOND, 0)
        return f"provider:{ip}", limits, "payment provider webhooks from this address"
    limits = Limits(
        settings.API_RATE_LIMIT_ANON_PER_SECOND, settings.API_RATE_LIMIT_ANON_PER_MINUTE
    )
    return f"ip:{ip}", limits, "requests without a valid API key from this address"


def too_many_requests(decision: Decision, who: str) -> JsonResponse:
    message = (
        f"Rate limit exceeded: {who} may make at most {decision.limit} requests per "
        f"{decision.window}. Retry in {decision.retry_after} s."
    )
    response = JsonResponse(error_body("TOO_MANY_REQUESTS", message), status=429)
    response["Retry-After"] = str(decision.retry_after)
    return response


class RateLimitMiddleware:
    """Counts every request under /api/ (whatever its answer) before the view runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
        try:
            identity, limits, who = identify(request)
        except (OperationalError, InterfaceError) as exc:
            logger.warning("database unavailable: %s", exc)
            return service_unavailable()
        decision = get_limiter().hit(identity, limits) if limits.enabled else None
        if decision is not None and not decision.allowed:
            response = too_many_requests(decision, who)
        else:
            response = self.get_response(request)
        if decision is not None:
            for header, value in decision.headers().items():
                response[header] = value
        return response
