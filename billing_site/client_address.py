"""The client's address that throttles and rate limits count by (the staff login throttle, the
API's limits without a valid key): `REMOTE_ADDR`, or behind trusted reverse proxies the address
the outermost of them saw, read from `X-Forwarded-For`.

A client can write any `X-Forwarded-For` it likes, so the header is read only when the request
came from an address in `TRUSTED_PROXIES`, and only as far as the chain of trusted proxies goes:
each proxy appends the address it received from, so walking the header from its right end, the
first address that is not a trusted proxy is the client. What the client itself wrote lies left
of it and is never used.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def _hop_address(hop: str) -> str | None:
    """The address of one `X-Forwarded-For` entry, without the port some proxies append
    (`198.51.100.7:4711`, `[2001:db8::7]:443`); None if it is not an address."""
    if hop.startswith("["):
        host, bracket, rest = hop[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        hop = host
    elif hop.count(":") == 1:
        host, _, port = hop.partition(":")
        if not port.isdigit():
            return None
        hop = host
    try:
        return str(ipaddress.ip_address(hop))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str:
    """The address of the client that sent `request`, as far as trusted proxies vouch for it."""
    remote = request.META.get("REMOTE_ADDR") or "unknown"
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _is_trusted(remote, networks):
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    client = remote
    for hop in reversed(hops):
        hop_address = _hop_address(hop)
        if hop_address is None:
            # Trusted proxies append addresses; anything else came from the client's side.
            break
        client = hop_address
        if not _is_trusted(hop_address, networks):
            break
    return client
