"""The serving side of remote run control: :class:`RemoteServer` (``--serve``)."""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mimocorb2._face_messages import (
    decode,
    encode,
    failure_summaries,
    line_messages,
    valid_command,
)
from mimocorb2._remote_access import (
    CLOSE_LINGER_MS,
    HISTORY_LINES,
    MAX_PENDING_LINES,
    PING_S,
    PROTOCOL_VERSION,
    SEND_HWM,
    SILENCE_S,
    RemoteError,
    check_serve,
    import_zmq,
    server_keys,
)

# ----- the serving side -----


class RemoteServer:
    """The control's face for remote clients: publishes the run, takes their commands.

    Args:
        address: ``tcp://HOST:PORT`` (``PORT`` alone: loopback); see :func:`check_serve`.
        keys: Directory of :func:`keygen` (required for a non-loopback address).
        info: The setup message (:func:`mimocorb2._gui.setup_info`).
        on_command: Called (from the server thread) with every valid command of a client;
            the exit command (``None``) only detaches that client.

    Raises:
        RemoteError: See :func:`check_serve`; or the address cannot be bound.
    """

    def __init__(
        self,
        address: str,
        keys: str | Path | None,
        info: dict[str, Any],
        on_command: Callable[[Any], None],
    ) -> None:
        """Binds the socket and starts the server thread."""
        zmq = import_zmq()
        self._zmq = zmq
        endpoint, self.loopback = check_serve(address, keys)
        self._info = dict(info)
        self._on_command = on_command
        self._ctx = zmq.Context()
        self._auth: Any = None
        self._socket = self._ctx.socket(zmq.ROUTER)
        try:
            self._configure(endpoint, keys)
            self._socket.bind(endpoint)
        except zmq.ZMQError as e:
            self._shutdown_sockets(0)
            raise RemoteError(f"cannot serve on {endpoint}: {e}") from None
        except BaseException:
            self._shutdown_sockets(0)
            raise
        self.address = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.encrypted = keys is not None
        self._cond = threading.Condition()
        self._history: collections.deque[list[str]] = collections.deque(maxlen=HISTORY_LINES)
        self._lines: collections.deque[list[str]] = collections.deque(maxlen=MAX_PENDING_LINES)
        self._dropped = 0
        self._stats: dict[str, Any] | None = None
        self._finished: dict[str, Any] | None = None
        self._newest_stats: dict[str, Any] | None = None
        self._newest_finished: dict[str, Any] | None = None
        self._closing = False
        self._clients: dict[bytes, dict[str, float]] = {}
        self.commands_received = 0
        self._thread = threading.Thread(target=self._run, name="remote-server", daemon=True)
        self._thread.start()

    def _configure(self, endpoint: str, keys: str | Path | None) -> None:
        zmq = self._zmq
        s = self._socket
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)
        s.setsockopt(zmq.SNDHWM, SEND_HWM)
        s.setsockopt(zmq.LINGER, 0)
        if endpoint.startswith("tcp://["):
            s.setsockopt(zmq.IPV6, 1)
        if keys is None:
            return
        from zmq.auth.thread import ThreadAuthenticator

        public, secret, authorized = server_keys(Path(keys))
        self._auth = ThreadAuthenticator(self._ctx)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(authorized))
        s.curve_secretkey = secret
        s.curve_publickey = public
        s.curve_server = True

    @property
    def clients(self) -> int:
        """Clients connected now."""
        return len(self._clients)

    # ----- fed by the control's loop (never blocks) -----

    def send_lines(self, lines: Iterable[Iterable[str]], dropped: int = 0) -> None:
        """Queues worker output for every client."""
        rows = [[str(x) for x in line] for line in lines]
        if not rows and not dropped:
            return
        with self._cond:
            overflow = len(self._lines) + len(rows) - MAX_PENDING_LINES
            self._dropped += dropped + max(overflow, 0)
            self._lines.extend(rows)
            self._history.extend(rows)
            self._cond.notify()

    def send_stats(self, stats: dict[str, Any], failures: Iterable[dict[str, Any]]) -> None:
        """Queues the statistics (the newest replace ones not sent yet)."""
        fails = failure_summaries(failures)
        # JSON now, so that the server thread never sees a dictionary the control changes.
        message = json.loads(encode({"type": "stats", "stats": stats, "failures": fails}))
        with self._cond:
            self._stats = message
            self._cond.notify()

    def send_finished(self, exit_code: int) -> None:
        """Queues the end of the run (after the final statistics)."""
        with self._cond:
            self._finished = {"type": "finished", "exit_code": exit_code}
            self._cond.notify()

    def close(self, timeout: float = 3.0) -> None:
        """Sends what is pending and ``closed`` to every client, then closes the socket."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():  # never: the thread waits at most 50 ms at a time
            return
        self._shutdown_sockets(CLOSE_LINGER_MS)

    def _shutdown_sockets(self, linger_ms: int) -> None:
        with contextlib.suppress(Exception):
            self._socket.close(linger=linger_ms)
        if self._auth is not None:
            with contextlib.suppress(Exception):
                self._auth.stop()
        with contextlib.suppress(Exception):
            self._ctx.term()

    # ----- the server thread -----

    def _run(self) -> None:
        zmq = self._zmq
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        last_sent = time.monotonic()
        while True:
            with self._cond:
                closing = self._closing
            if dict(poller.poll(50)):
                self._receive()
            if self._flush():
                last_sent = time.monotonic()
            now = time.monotonic()
            if now - last_sent >= PING_S:
                self._broadcast({"type": "ping"})
                last_sent = now
            for client, seen in list(self._clients.items()):
                if now - seen["seen"] > SILENCE_S:
                    del self._clients[client]
            if closing:
                self._flush()
                self._broadcast({"type": "closed"})
                return

    def _receive(self) -> None:
        zmq = self._zmq
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                continue
            client, raw = frames
            message = decode(raw)
            if message is None:
                continue
            kind = message.get("type")
            if kind == "hello":
                self._welcome(client, message)
            elif client not in self._clients:
                continue  # a client the server has forgotten must say hello again
            elif kind == "bye":
                del self._clients[client]
            elif kind == "command":
                self._clients[client]["seen"] = time.monotonic()
                command = message.get("command")
                if command is not None and valid_command(command):
                    self.commands_received += 1
                    self._on_command(list(command))
            else:
                self._clients[client]["seen"] = time.monotonic()

    def _welcome(self, client: bytes, message: dict[str, Any]) -> None:
        if message.get("version") != PROTOCOL_VERSION:
            self._send(
                client,
                {
                    "type": "refused",
                    "reason": f"protocol version {message.get('version')!r}; this run "
                    f"speaks {PROTOCOL_VERSION} (use the same mimocorb2 version on both hosts)",
                },
            )
            return
        self._clients[client] = {"seen": time.monotonic()}
        self._send(client, {"type": "setup", "version": PROTOCOL_VERSION, **self._info})
        with self._cond:  # the lines still pending reach the client with everyone's
            history = list(self._history)[: max(len(self._history) - len(self._lines), 0)]
        for message in line_messages(history, 0):
            self._send(client, message)
        for last in (self._newest_stats, self._newest_finished):
            if last is not None:
                self._send(client, last)

    def _flush(self) -> bool:
        """Sends the pending lines, statistics and end; returns whether anything was sent."""
        with self._cond:
            lines = list(self._lines)
            self._lines.clear()
            dropped, self._dropped = self._dropped, 0
            stats, self._stats = self._stats, None
            finished, self._finished = self._finished, None
        # what a client that connects later receives after its setup message
        self._newest_stats = stats or self._newest_stats
        self._newest_finished = finished or self._newest_finished
        messages = line_messages(lines, dropped)
        messages += [m for m in (stats, finished) if m is not None]
        for message in messages:
            self._broadcast(message)
        return bool(messages)

    def _broadcast(self, message: dict[str, Any]) -> None:
        data = encode(message)
        for client in list(self._clients):
            self._send(client, message, data)

    def _send(self, client: bytes, message: dict[str, Any], data: bytes | None = None) -> None:
        zmq = self._zmq
        state = self._clients.get(client)
        if data is None:
            data = encode(message)
        if state is not None and state.get("dropped") and message["type"] == "lines":
            message = {**message, "dropped": int(message["dropped"] + state["dropped"])}
            data = encode(message)
            state["dropped"] = 0
        try:
            self._socket.send_multipart([client, data], zmq.NOBLOCK)
        except zmq.Again:  # the client lags behind: its queue is full
            if state is not None and message["type"] == "lines":
                state["dropped"] = state.get("dropped", 0) + len(message["lines"])
        except zmq.ZMQError:  # gone (EHOSTUNREACH)
            self._clients.pop(client, None)
