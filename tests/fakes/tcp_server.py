"""The life cycle shared by the fake boards: a bounded TCP server on 127.0.0.1.

It serves one connection at a time (like the boards) for at most ``lifetime`` seconds, in a
daemon thread. A subclass implements ``_handle(conn, number)`` for one connection (``number``
counts the connections from 1) and may send with ``_send``, which splits the data into random
pieces of at most ``chunk`` bytes (partial reads on the client side) when ``chunk`` is set.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from typing import Self


class FakeTcpServer:
    """Base of the fake servers; use as a context manager (``with FakeX() as srv``).

    Attributes:
        port: The listening port on 127.0.0.1.
        connections: Connections accepted.
        errors: Unexpected exceptions of the server threads (should stay empty).
    """

    thread_name = "fake-server"

    def __init__(self, *, chunk: int, lifetime: float, seed: int) -> None:
        self.chunk = chunk
        self.lifetime = lifetime
        self.rng = random.Random(seed)
        self.connections = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._active: socket.socket | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._deadline = time.monotonic() + self.lifetime
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        active = self._active
        if active is not None:
            with contextlib.suppress(OSError):
                active.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._listener.close()

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def _serve(self) -> None:
        try:
            while self._running():
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                self.connections += 1
                with conn:
                    self._active = conn
                    try:
                        self._handle(conn, self.connections)
                    finally:
                        self._active = None
        except BaseException as e:  # pragma: no cover - reported to the test
            self.errors.append(e)

    def _handle(self, conn: socket.socket, number: int) -> None:
        raise NotImplementedError

    def _send(self, conn: socket.socket, data: memoryview | bytes) -> None:
        if not self.chunk:
            conn.sendall(data)
            return
        view = memoryview(data)
        i = 0
        while i < len(view):
            j = min(len(view), i + self.rng.randint(1, self.chunk))
            conn.sendall(view[i:j])
            i = j
