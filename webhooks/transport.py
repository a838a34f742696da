"""One webhook POST: to an address checked just before connecting, within one deadline for the
whole attempt, and answered as a short category ("timeout", "connection refused", "HTTP 500")
rather than a raw socket error.

http.client is driven by hand instead of urllib, for three reasons. urllib's timeout applies to
each socket read, so a receiver sending a byte every few seconds held a worker for hours; here
every read gets only the time left before the deadline. urllib resolves the host itself, after
any check we could make, so a re-pointed name could reach an internal address; here the socket
connects to an address destinations.py checked. And urllib also speaks ftp://, file:// and data:.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from dataclasses import dataclass
from typing import cast

from webhooks import destinations

RESPONSE_BODY_LIMIT = 4096  # bytes of the receiver's answer kept with the attempt


@dataclass(frozen=True)
class Answer:
    """What one POST got back: a status code and the start of the body, or an error category."""

    status_code: int | None
    body: str
    error: str
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return not self.error and self.status_code is not None and 200 <= self.status_code < 300


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each allowed only the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock, self._deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self._sock.settimeout(_remaining(self._deadline))
        return self._sock.recv_into(buffer)


class _DeadlineSocket:
    """What http.client.HTTPResponse needs of a socket (`makefile`), bound to the deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock, self._deadline = sock, deadline

    def makefile(self, mode: str):
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline passed")
    return left


def _connect(target: destinations.Destination, deadline: float) -> socket.socket:
    """A connection to one of the checked addresses (TLS for https, verified for the host
    name), made within the deadline."""
    failure: OSError | None = None
    for address in target.addresses:
        try:
            sock = socket.create_connection((address, target.port), timeout=_remaining(deadline))
            break
        except TimeoutError:
            raise
        except OSError as error:  # refused or unreachable: try the next address
            failure = error
    else:
        raise failure or OSError("no address to connect to")
    if target.scheme != "https":
        return sock
    try:
        sock.settimeout(_remaining(deadline))  # the whole handshake, as one operation
        return ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
    except BaseException:
        sock.close()
        raise


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").replace("\x00", "")  # PostgreSQL text has no NUL


def _exchange(
    sock: socket.socket,
    target: destinations.Destination,
    body: bytes,
    headers: dict[str, str],
    deadline: float,
) -> tuple[int, str, bool]:
    """Send the request on the connected socket: the answer's status, the start of its body,
    and whether that much of the body arrived before the deadline."""
    request = http.client.HTTPConnection(target.host, target.port)
    request.default_port = destinations.DEFAULT_PORTS[target.scheme]  # Host without :443
    request.sock = sock  # already connected, to the checked address
    request.putrequest("POST", target.target, skip_accept_encoding=True)
    for name, value in {**headers, "Content-Length": str(len(body)), "Connection": "close"}.items():
        request.putheader(name, value)
    sock.settimeout(_remaining(deadline))  # sendall's timeout covers the whole send
    request.endheaders(body)

    # HTTPResponse only calls makefile() on its socket: the deadline wrapper provides it.
    reader = cast(socket.socket, _DeadlineSocket(sock, deadline))
    response = http.client.HTTPResponse(reader, method="POST")
    response.begin()
    try:
        return response.status, _text(response.read(RESPONSE_BODY_LIMIT)), True
    except TimeoutError:
        return response.status, "", False
    finally:
        response.close()


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Answer:
    """POST once, all of it (resolving, connecting, sending, the answer's headers and body)
    within `timeout` seconds; never raises for what the network or the receiver does."""
    started = time.monotonic()
    deadline = started + timeout
    timed_out = f"timeout: timed out after {timeout:g} s without a whole answer"
    status, text, error = None, "", ""
    try:
        target = destinations.destination(url)
        sock = _connect(target, deadline)
        try:
            status, text, complete = _exchange(sock, target, body, headers, deadline)
        finally:
            sock.close()
        if not complete:
            error = timed_out
    except destinations.RefusedDestination as refused:
        error = f"refused address: {refused}"
    except destinations.UnresolvedHost:
        error = "DNS error: the host name does not resolve"
    except http.client.InvalidURL:
        error = "refused address: not a valid URL"
    except TimeoutError:
        error = timed_out
    except ssl.SSLCertVerificationError as failure:
        error = f"TLS error: {failure.verify_message or 'certificate verification failed'}"
    except ssl.SSLError as failure:
        error = f"TLS error: {failure.reason or 'handshake failed'}"
    except ConnectionRefusedError:
        error = "connection refused"
    except http.client.RemoteDisconnected:
        error = "no answer: the receiver closed the connection"
    except ConnectionResetError:
        error = "connection reset"
    except http.client.HTTPException:
        error = "invalid HTTP answer"
    except OSError as failure:
        error = f"connection error: {failure.strerror}" if failure.strerror else "connection error"
    if status is not None and not error and not 200 <= status < 300:
        error = f"HTTP {status}"
    duration_ms = round((time.monotonic() - started) * 1000)
    return Answer(status, text, error, duration_ms)
