"""Where a webhook may be sent: an https URL (http only with WEBHOOK_ALLOW_HTTP) whose host
resolves to public addresses only, so that staff registering an endpoint cannot make the server
connect to itself, its database, the cloud metadata service or the internal network.

The rule is checked when an endpoint is saved (a clear form error) and again before every
attempt, on the addresses the attempt then connects to (webhooks/transport.py), so a name that
is re-pointed after it was saved (DNS rebinding) is refused too. Networks listed in
WEBHOOK_ALLOWED_PRIVATE_NETWORKS are allowed as if they were public.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the IPv4 address is in the last 32 bits
DEFAULT_PORTS = {"https": 443, "http": 80}


class RefusedDestination(Exception):
    """The URL or the addresses its host resolves to are not a place webhooks may go."""


class UnresolvedHost(Exception):
    """The host name does not resolve (now): a failed attempt, retried later."""


@dataclass(frozen=True)
class Destination:
    """A checked URL: connect to one of `addresses`, speak to `host` (Host header, TLS name)."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]


def allowed_schemes() -> tuple[str, ...]:
    return ("https", "http") if settings.WEBHOOK_ALLOW_HTTP else ("https",)


def parse(url: str) -> tuple[str, str, int, str]:
    """Scheme, host, port and request target of an endpoint URL, or RefusedDestination."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as invalid:
        raise RefusedDestination(f"not a valid URL ({invalid})") from None
    scheme = parts.scheme.lower()
    if scheme not in allowed_schemes():
        if scheme == "http":
            raise RefusedDestination(
                "plain http is not allowed: use https (WEBHOOK_ALLOW_HTTP=true allows http)"
            )
        raise RefusedDestination(f"only https URLs are allowed, not {scheme or 'no'} scheme")
    if parts.username is not None or parts.password is not None:
        raise RefusedDestination("credentials in the URL are not supported")
    host = parts.hostname
    if not host:
        raise RefusedDestination("the URL has no host")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, host, port or DEFAULT_PORTS[scheme], target


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order (an IP literal is itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as failure:
        raise UnresolvedHost(str(failure)) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n) for n in settings.WEBHOOK_ALLOWED_PRIVATE_NETWORKS]


def refusal(address: IPAddress) -> str | None:
    """Why webhooks may not go to `address` ("a loopback address"), or None if they may."""
    if any(address in network for network in _allowed_networks()):
        return None
    return _kind_of_non_public(address)


def _kind_of_non_public(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "an IPv4-mapped address"
        embedded = _embedded_ipv4(address)
        if embedded is not None and _kind_of_non_public(embedded) is not None:
            return "an IPv6 address embedding a non-public IPv4 address"
        if address in _UNIQUE_LOCAL:
            return "a unique-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4, Teredo or NAT64 address reaches through a gateway."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def checked_addresses(host: str, addresses: list[str]) -> tuple[str, ...]:
    """`addresses` if every one may be used; RefusedDestination naming the first that may not.

    All of them, not just one: a name that mixes public and private addresses is someone's
    mistake or someone's trick, and either way is refused.
    """
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
        reason = refusal(address)
        if reason is not None:
            shown = host if host == text else f"{host} resolves to {text}, which"
            raise RefusedDestination(f"{shown} is {reason}")
    return tuple(addresses)


def destination(url: str) -> Destination:
    """Check `url` now, resolving its host: the Destination to connect to, or RefusedDestination
    (the rule) or UnresolvedHost (the name does not resolve at the moment)."""
    scheme, host, port, target = parse(url)
    addresses = checked_addresses(host, resolve(host, port))
    return Destination(scheme, host, port, target, addresses)


def validate_endpoint_url(url: str) -> None:
    """The check when staff save an endpoint: the URL rules first (the scheme, no credentials),
    then its form, then where its host resolves to. A name that does not resolve yet is accepted
    (every attempt resolves and checks it again); one that resolves to an address webhooks may
    not go to is refused, naming why."""
    try:
        scheme, host, port, _ = parse(url)
        URLValidator(schemes=allowed_schemes())(url)
        checked_addresses(host, resolve(host, port))
    except RefusedDestination as refused:
        raise ValidationError(
            f"Webhooks cannot be sent to this URL: {refused}.", code="refused_destination"
        ) from None
    except UnresolvedHost:
        pass
