"""A TCP proxy between the app and PostgreSQL that a test can cut and restore.

Cut: every open connection is shut down and new ones are reset as soon as they arrive, as when
the database host goes away. A cut can also be armed to fire on a pattern in what the app sends
(`COMMIT`), just before or just after forwarding it, so a test can lose the database at an exact
point of a request: the transaction never committed, or committed with the answer lost.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

# Long enough for PostgreSQL to act on a forwarded message before the connection goes.
SETTLE_SECONDS = 0.2


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    muted: bool = False  # drop what the server answers (the answer is "lost on the wire")


@dataclass
class _Trigger:
    pattern: bytes
    deliver: bool  # forward the message that matched before cutting
    hold: bool = False  # instead of cutting, keep forwarding but drop every answer from then on
    fired: threading.Event = field(default_factory=threading.Event)


class CuttableProxy:
    """Listens on 127.0.0.1:<port> and forwards to PostgreSQL at `upstream`.

    `upstream` is (host, port) for TCP or a path for a unix socket (the embedded server).
    """

    def __init__(self, upstream: tuple[str, int] | str) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._is_cut = False
        self._trigger: _Trigger | None = None
        self._stopped = False
        self.connections_accepted = 0
        self.connections_refused = 0
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    # --- control -------------------------------------------------------------------------------

    def cut(self) -> None:
        """Drop every connection now and refuse new ones until `restore()`."""
        with self._lock:
            self._is_cut = True
            self._trigger = None
            links, self._links = self._links, []
        for link in links:
            _shut(link.client)
            _shut(link.server)

    def restore(self) -> None:
        with self._lock:
            self._is_cut = False

    def cut_at(self, pattern: bytes, *, deliver: bool) -> threading.Event:
        """Cut when the app next sends `pattern`: with `deliver`, PostgreSQL gets that message
        (and acts on it) but its answer never reaches the app; without, it never arrives."""
        trigger = _Trigger(pattern, deliver)
        with self._lock:
            self._trigger = trigger
        return trigger.fired

    def mute_at(self, pattern: bytes) -> threading.Event:
        """When the app next sends `pattern`, forward it (the server acts on it) and keep the
        connection open, but drop every answer from then on: the app waits for an answer that
        never comes, as when the process is killed right after its request went out."""
        trigger = _Trigger(pattern, deliver=True, hold=True)
        with self._lock:
            self._trigger = trigger
        return trigger.fired

    def stop(self) -> None:
        self._stopped = True
        self.cut()
        self._acceptor.join(timeout=5)
        self._listener.close()

    # --- forwarding ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                refuse = self._is_cut
            if refuse:
                self.connections_refused += 1
                _reset(client)
                continue
            try:
                server = self._connect_upstream()
            except OSError:
                _reset(client)
                continue
            link = _Link(client, server)
            with self._lock:
                if self._is_cut:  # cut while connecting
                    _reset(client)
                    _shut(server)
                    continue
                self._links.append(link)
                self.connections_accepted += 1
            threading.Thread(target=self._pump_to_server, args=(link,), daemon=True).start()
            threading.Thread(target=self._pump_to_client, args=(link,), daemon=True).start()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream, str):
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.upstream)
            return server
        server = socket.create_connection(self.upstream, timeout=5)
        server.settimeout(None)  # an idle connection stays open, as PostgreSQL's would
        return server

    def _pump_to_server(self, link: _Link) -> None:
        tail = b""
        try:
            while True:
                data = link.client.recv(65536)
                if not data:
                    break
                trigger = self._trigger
                if trigger is not None and trigger.pattern in tail + data and self._claim(trigger):
                    if trigger.hold:
                        link.muted = True
                        link.server.sendall(data)
                        trigger.fired.set()
                        continue
                    self._fire(trigger, link, data)
                    return
                tail = data[-len(trigger.pattern) :] if trigger else b""
                link.server.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(link)

    def _pump_to_client(self, link: _Link) -> None:
        try:
            while True:
                data = link.server.recv(65536)
                if not data:
                    break
                if not link.muted:
                    link.client.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(link)

    def _claim(self, trigger: _Trigger) -> bool:
        """True for the one connection that fires an armed trigger."""
        with self._lock:
            if self._trigger is not trigger:
                return False
            self._trigger = None
            return True

    def _fire(self, trigger: _Trigger, link: _Link, data: bytes) -> None:
        if trigger.deliver:
            link.muted = True
            link.server.sendall(data)
            time.sleep(SETTLE_SECONDS)
        self.cut()
        trigger.fired.set()

    def _drop(self, link: _Link) -> None:
        with self._lock:
            if link in self._links:
                self._links.remove(link)
        _shut(link.client)
        _shut(link.server)


def _shut(sock: socket.socket) -> None:
    """Shut down first: that wakes a thread blocked in recv() on it, where close() alone won't."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a host with nothing listening answers."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
