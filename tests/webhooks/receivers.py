"""A receiver that never finishes answering, for the slow-receiver tests."""

from __future__ import annotations

import contextlib
import socket
import threading

DRIP_INTERVAL_SECONDS = 0.5  # well inside any deadline used, so no single read ever waits it out
ENDLESS_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
ENDLESS_HEADERS = b"HTTP/1.1 200 OK\r\nX-Slow: "


class DripReceiver:
    """Reads a request, then answers one byte per DRIP_INTERVAL_SECONDS until stopped: after
    whole headers (a body that never ends) or in the middle of them (headers that never end)."""

    def __init__(self, opening: bytes) -> None:
        self.opening = opening
        self.requests = 0
        self._stopped = threading.Event()
        self._connections: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hooks"
        self._server = threading.Thread(target=self._serve, daemon=True)
        self._server.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by stop()
                return
            self._connections.append(client)
            threading.Thread(target=self._drip, args=(client,), daemon=True).start()

    def _drip(self, client: socket.socket) -> None:
        try:
            received = b""
            while b"\r\n\r\n" not in received:
                received += client.recv(65536)
            self.requests += 1
            client.sendall(self.opening)
            while not self._stopped.wait(DRIP_INTERVAL_SECONDS):
                client.sendall(b"x")
        except OSError:
            pass

    def stop(self) -> None:
        self._stopped.set()
        self._server.join(timeout=5)
        for client in self._connections:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        self._listener.close()
