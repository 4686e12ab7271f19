"""Remote run control over ZeroMQ: ``mimocorb2 SETUP --serve`` and ``mimocorb2 --connect``.

A served run is one more face of the :class:`~mimocorb2.control.Control`, next to the terminal
and the GUI link: :class:`RemoteServer` receives the worker output, the statistics and the end
of the run from the control's loop (``send_lines``, ``send_stats``, ``send_finished``; none of
them blocks) and puts the commands of its clients into ``Control.commands``, exactly like the
terminal and the GUI. :class:`RemoteClient` is the other end: the terminal (``-c kbd``) or the
Buffer Manager window (``-c gui``) on another host. The client has the interface of the GUI's
:class:`~mimocorb2._gui.link.Endpoint` (``messages``, ``send``, ``command``, ``close``), so the
window runs on it unchanged.

Wire: one ROUTER socket on the serving side, one DEALER socket per client; every message is one
JSON object in one frame (the GUI link's messages, see :mod:`mimocorb2._gui.link`):

- client → server: ``hello`` (protocol version), ``command``, ``ping`` (every second),
  ``bye``;
- server → client: ``setup`` (the answer to ``hello``, then the recent worker output and the
  newest statistics), ``lines``, ``stats``, ``finished``, ``ping`` (when nothing else was sent
  for a second) and ``closed`` (the control has ended).

Security: nothing listens unless ``--serve`` is given. An address without a host binds to
loopback (127.0.0.1). Any other bind needs ZeroMQ CURVE keys (``mimocorb2 keygen DIR``): the
connection is then encrypted, and only clients whose public key is in
``DIR/authorized_clients/`` are let in (ZAP, :class:`zmq.auth.thread.ThreadAuthenticator`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ipaddress
import json
import os
import queue
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mimocorb2._control_types import Command, ExitCommand, command_to_wire
from mimocorb2._gui.link import LINES_PER_MESSAGE, encode, valid_command

__all__ = [
    "RemoteClient",
    "RemoteError",
    "RemoteServer",
    "check_serve",
    "connect_main",
    "keygen",
    "keygen_main",
]

PROTOCOL_VERSION = 1
DEFAULT_HOST = "127.0.0.1"
CONNECT_TIMEOUT_S = 10.0
"""Seconds a client waits for the served run's answer (``MIMOCORB2_CONNECT_TIMEOUT``)."""
SILENCE_S = 10.0
"""Seconds without a message after which either side considers the other gone."""
PING_S = 1.0
"""Seconds between two signs of life when nothing else is sent."""
HISTORY_LINES = 2_000
"""Recent worker output lines a newly connected client receives."""
MAX_PENDING_LINES = 20_000
SEND_HWM = 1_000
"""Messages queued per client; a client that lags further loses lines (counted)."""
CLOSE_LINGER_MS = 1_000

SERVER_PUBLIC = "server.key"
SERVER_SECRET = "server.key_secret"
CLIENT_PUBLIC = "client.key"
CLIENT_SECRET = "client.key_secret"
AUTHORIZED_DIR = "authorized_clients"

INSTALL_HINT = 'pip install "mimocorb2[network]"'
_ADDRESS = re.compile(r"^(?:tcp://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]*):(?P<port>[0-9]+)$")


class RemoteError(Exception):
    """Remote run control cannot work: bad address, missing keys, no answer, refused."""


def _zmq() -> Any:
    """The ``zmq`` module, or a :class:`RemoteError` naming the pip command."""
    try:
        import zmq
    except ImportError as e:
        raise RemoteError(
            f"remote run control needs the Python package 'pyzmq' ({e}); {INSTALL_HINT}"
        ) from None
    return zmq


# ----- addresses and keys -----


def _split(address: str, serving: bool) -> tuple[str, int]:
    """``(host, port)`` of ``tcp://HOST:PORT`` (``PORT`` and ``:PORT`` too when serving)."""
    text = address.strip()
    if serving and text.isdigit():
        text = ":" + text
    m = _ADDRESS.match(text)
    form = "tcp://HOST:PORT (or PORT alone for loopback)" if serving else "tcp://HOST:PORT"
    if m is None:
        raise RemoteError(f"{address!r} is not an address of the form {form}")
    port = int(m["port"])
    if not 1 <= port <= 65535:
        raise RemoteError(f"port {port} of {address!r} is out of range; use 1 to 65535")
    host = m["host"]
    if not host:
        if not serving:
            raise RemoteError(f"{address!r}: name the host of the served run, {form}")
        host = DEFAULT_HOST
    if host == "*" and not serving:
        raise RemoteError(f"{address!r}: '*' is for --serve; --connect names the host")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    bare = host.strip("[]")
    if bare.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False  # an interface or host name: may be reachable from elsewhere


def _endpoint(host: str, port: int, bind: bool) -> str:
    if bind and host.lower() == "localhost":  # ZeroMQ binds interfaces and IPs, not names
        host = DEFAULT_HOST
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def _keygen_hint(keys: Path | str) -> str:
    return f"run 'mimocorb2 keygen {keys}' to write a key pair for the server and a client"


def _load(path: Path, keys: Path | str, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not path.is_file():
        raise RemoteError(f"the CURVE key file {path} is missing; {_keygen_hint(keys)}")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise RemoteError(f"the CURVE key file {path} cannot be read: {e}") from None
    if secret and not secret_key:
        raise RemoteError(f"{path} holds no secret key; {_keygen_hint(keys)}")
    return public, secret_key


def check_serve(address: str, keys: str | Path | None, probe: bool = False) -> tuple[str, bool]:
    """Checks ``--serve ADDRESS [--keys DIR]`` before anything starts.

    Args:
        address: ``tcp://HOST:PORT``, ``tcp://:PORT`` or ``PORT`` (loopback).
        keys: Directory of :func:`keygen`, or None.
        probe: Also bind the address once (and let it go), so that an address in use is
            reported before the run directory and the buffers are created.

    Returns:
        The ZeroMQ endpoint to bind and whether it is loopback only.

    Raises:
        RemoteError: Bad address; a non-loopback address without keys; missing key files;
            (with ``probe``) the address cannot be bound.
    """
    zmq = _zmq()
    host, port = _split(address, serving=True)
    loopback = is_loopback(host)
    if not loopback and keys is None:
        raise RemoteError(
            f"--serve {address} listens beyond this host, which needs authentication and "
            "encryption (ZeroMQ CURVE keys): run 'mimocorb2 keygen KEYDIR' once and add "
            "'--keys KEYDIR'; the connecting host needs KEYDIR/server.key and "
            f"KEYDIR/client.key_secret (or serve on loopback: --serve {port})"
        )
    if keys is not None:
        _server_keys(Path(keys))
    endpoint = _endpoint(host, port, bind=True)
    if probe:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            if endpoint.startswith("tcp://["):
                sock.setsockopt(zmq.IPV6, 1)
            sock.bind(endpoint)
        except zmq.ZMQError as e:
            raise RemoteError(f"cannot serve on {endpoint}: {e}") from None
        finally:
            sock.close(linger=0)
            ctx.term()
    return endpoint, loopback


def _server_keys(keys: Path) -> tuple[bytes, bytes, Path]:
    public, secret = _load(keys / SERVER_SECRET, keys, secret=True)
    authorized = keys / AUTHORIZED_DIR
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise RemoteError(
            f"no client keys in {authorized}: no client could connect; {_keygen_hint(keys)} "
            f"(or copy a client's public '.key' file there)"
        )
    assert secret is not None
    return public, secret, authorized


def keygen(directory: str | Path) -> list[Path]:
    """Writes a CURVE key pair for the server and one for a client into ``directory``.

    Files: ``server.key_secret`` (stays on the serving host), ``server.key`` (its public key,
    for the clients), ``client.key_secret`` (for the connecting host), ``client.key`` and
    ``authorized_clients/client.key`` (the public keys the server accepts).

    Returns:
        The files written.

    Raises:
        RemoteError: When keys exist already there (never overwritten).
    """
    _zmq()
    import zmq.auth

    if not zmq.has("curve"):
        raise RemoteError("this libzmq has no CURVE support; reinstall pyzmq from its wheels")
    target = Path(directory).expanduser()
    names = (SERVER_PUBLIC, SERVER_SECRET, CLIENT_PUBLIC, CLIENT_SECRET)
    existing = [target / n for n in names if (target / n).exists()]
    if existing:
        raise RemoteError(
            f"{', '.join(map(str, existing))} exist already; keys are never overwritten "
            "(remove them first, or choose another directory)"
        )
    target.mkdir(parents=True, exist_ok=True)
    authorized = target / AUTHORIZED_DIR
    authorized.mkdir(exist_ok=True)
    for d in (target, authorized):
        d.chmod(0o700)
    written: list[Path] = []
    for name in ("server", "client"):
        public, secret = zmq.auth.create_certificates(target, name)
        Path(secret).chmod(0o600)
        written += [Path(public), Path(secret)]
    copy = authorized / CLIENT_PUBLIC
    shutil.copyfile(target / CLIENT_PUBLIC, copy)
    written.append(copy)
    return written


def keygen_main(argv: list[str]) -> int:
    """``mimocorb2 keygen DIR``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="mimocorb2 keygen",
        description="Write ZeroMQ CURVE key pairs for 'mimocorb2 SETUP --serve' and "
        "'mimocorb2 --connect' (a server pair and a client pair).",
    )
    parser.add_argument("directory", help="where to write the keys (created if needed)")
    args = parser.parse_args(argv)
    try:
        keygen(args.directory)
    except (RemoteError, OSError) as e:
        print(f"mimocorb2: {e}", file=sys.stderr)
        return 2
    d = Path(args.directory)
    print(
        f"mimocorb2: keys written to {d}\n"
        f"  serving host:    mimocorb2 SETUP --serve tcp://HOST:PORT --keys {d}\n"
        f"                   (uses {SERVER_SECRET} and accepts the keys in {AUTHORIZED_DIR}/)\n"
        f"  connecting host: copy {SERVER_PUBLIC} and {CLIENT_SECRET} into a directory KEYS "
        "there,\n"
        "                   mimocorb2 --connect tcp://HOST:PORT --keys KEYS\n"
        f"  keep the '.key_secret' files private; more clients: their '{CLIENT_PUBLIC}' files "
        f"(renamed) into {AUTHORIZED_DIR}/"
    )
    return 0


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
        zmq = _zmq()
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

        public, secret, authorized = _server_keys(Path(keys))
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
        fails = [
            {
                "name": p["name"],
                "worker": p["worker"],
                "exit_code": p["exit_code"],
                "signal": p["signal"],
                "tail": list(p.get("tail", []))[-10:],
            }
            for p in failures
        ]
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
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(message, dict):
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
        for message in self._line_messages(history, 0):
            self._send(client, message)
        for last in (self._newest_stats, self._newest_finished):
            if last is not None:
                self._send(client, last)

    @staticmethod
    def _line_messages(lines: list[list[str]], dropped: int) -> list[dict[str, Any]]:
        out = []
        for i in range(0, max(len(lines), 1), LINES_PER_MESSAGE):
            chunk = lines[i : i + LINES_PER_MESSAGE]
            if chunk or dropped:
                out.append({"type": "lines", "lines": chunk, "dropped": dropped})
                dropped = 0
        return out

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
        messages = self._line_messages(lines, dropped)
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


# ----- the connecting side -----


def _connect_timeout() -> float:
    try:
        return max(0.5, float(os.environ.get("MIMOCORB2_CONNECT_TIMEOUT", CONNECT_TIMEOUT_S)))
    except ValueError:
        return CONNECT_TIMEOUT_S


class RemoteClient:
    """A connection to a served run; the GUI window's endpoint interface.

    Args:
        address: ``tcp://HOST:PORT`` of the served run.
        keys: Directory with the server's public key (``server.key``) and this client's key
            pair (``client.key_secret``); required when the run is served with keys.
        timeout: Seconds :meth:`connect` waits for the run's answer (default
            ``MIMOCORB2_CONNECT_TIMEOUT`` or 10).

    Raises:
        RemoteError: Bad address or missing key files.
    """

    def __init__(
        self, address: str, keys: str | Path | None = None, timeout: float | None = None
    ) -> None:
        """Prepares the socket; :meth:`connect` connects."""
        zmq = _zmq()
        self._zmq = zmq
        host, port = _split(address, serving=False)
        self.address = _endpoint(host, port, bind=False)
        self.timeout = _connect_timeout() if timeout is None else float(timeout)
        self.keys = None if keys is None else Path(keys)
        curve: dict[str, bytes] = {}
        if self.keys is not None:
            server_public, _ = _load(self.keys / SERVER_PUBLIC, self.keys, secret=False)
            public, secret = _load(self.keys / CLIENT_SECRET, self.keys, secret=True)
            assert secret is not None
            curve = {"server": server_public, "public": public, "secret": secret}
        self._ctx = zmq.Context()
        self._socket = self._ctx.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if "[" in self.address:
            self._socket.setsockopt(zmq.IPV6, 1)
        if curve:
            self._socket.curve_serverkey = curve["server"]
            self._socket.curve_publickey = curve["public"]
            self._socket.curve_secretkey = curve["secret"]
        self._incoming: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._outgoing: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.setup: dict[str, Any] | None = None
        self.closed = False

    def connect(self) -> dict[str, Any]:
        """Says hello and waits for the run's setup message; then starts the I/O thread.

        Returns:
            The setup message (buffers, roots, workers, run directory).

        Raises:
            RemoteError: No answer within ``timeout`` (no run served there, or keys that do
                not match), the run refused this client, or a protocol mismatch.
        """
        zmq = self._zmq
        from zmq.utils.monitor import recv_monitor_message

        events = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        monitor = self._socket.get_monitor_socket(events)
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        deadline = time.monotonic() + self.timeout
        problem: str | None = None
        try:
            self._socket.connect(self.address)
            self._socket.send(encode({"type": "hello", "version": PROTOCOL_VERSION}))
            while self.setup is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RemoteError(self._no_answer())
                ready = dict(poller.poll(min(left, 0.1) * 1000))
                if monitor in ready:
                    event = recv_monitor_message(monitor)
                    if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                        problem = (
                            f"the run on {self.address} refused this client's key "
                            f"({self.keys}/{CLIENT_SECRET}): its public key is not in the "
                            f"server's {AUTHORIZED_DIR}/"
                        )
                    else:
                        problem = (
                            f"the handshake with {self.address} failed: one side uses CURVE "
                            "keys and the other does not, or they do not match (--keys)"
                        )
                    raise RemoteError(problem)
                if self._socket in ready:
                    message = self._decode(self._socket.recv())
                    if message.get("type") == "refused":
                        raise RemoteError(f"the run on {self.address} refused: {message['reason']}")
                    if message.get("type") == "setup":
                        self.setup = message
        except BaseException:
            self._socket.disable_monitor()
            monitor.close(linger=0)
            self.close()
            raise
        self._socket.disable_monitor()
        monitor.close(linger=0)
        self._thread = threading.Thread(target=self._io, name="remote-client", daemon=True)
        self._thread.start()
        return self.setup

    def _no_answer(self) -> str:
        keys = (
            f"the keys in {self.keys} do not match the served run's"
            if self.keys is not None
            else "the run is served with keys (add --keys DIR with server.key and "
            "client.key_secret)"
        )
        return (
            f"no answer from {self.address} within {self.timeout:.0f} s: no run is served "
            f"there (mimocorb2 SETUP --serve ...), a firewall is in the way, or {keys}"
        )

    @staticmethod
    def _decode(raw: bytes) -> dict[str, Any]:
        try:
            message = json.loads(raw)
        except ValueError:
            return {}
        return message if isinstance(message, dict) else {}

    def _io(self) -> None:
        zmq = self._zmq
        heard = sent = time.monotonic()
        reason = None
        while not self._stop.is_set():
            if self._socket.poll(50, zmq.POLLIN):
                heard = time.monotonic()
                while True:
                    try:
                        message = self._decode(self._socket.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    kind = message.get("type")
                    if kind == "closed":
                        reason = f"the run on {self.address} has ended"
                        break
                    if kind in ("setup", "lines", "stats", "finished"):
                        self._incoming.put(message)
                if reason is not None:
                    break
            while True:
                try:
                    out = self._outgoing.get_nowait()
                except queue.Empty:
                    break
                with contextlib.suppress(zmq.ZMQError):
                    self._socket.send(encode(out), zmq.NOBLOCK)
                    sent = time.monotonic()
            now = time.monotonic()
            if now - sent >= PING_S:
                with contextlib.suppress(zmq.ZMQError):
                    self._socket.send(encode({"type": "ping"}), zmq.NOBLOCK)
                sent = now
            if now - heard > SILENCE_S:
                reason = (
                    f"lost the connection to {self.address} (nothing heard for {SILENCE_S:.0f} s)"
                )
                break
        if reason is not None:
            self._incoming.put({"type": "eof", "reason": reason})
        else:
            with contextlib.suppress(zmq.ZMQError):
                self._socket.send(encode({"type": "bye"}), zmq.NOBLOCK)

    # ----- the GUI endpoint's interface -----

    def messages(self) -> list[dict[str, Any]]:
        """Every message of the run received since the last call (``eof`` when it has gone)."""
        out = []
        while True:
            try:
                out.append(self._incoming.get_nowait())
            except queue.Empty:
                return out

    def send(self, message: dict[str, Any]) -> None:
        """Forwards a command message; the window's ``ready`` and ``keep_open`` stay here."""
        if message.get("type") == "command":
            self.command(message.get("command"))

    def command(self, command: Any) -> None:
        """Sends a command for the run's ``Control.commands``; ``None`` (exit) only leaves."""
        if command is None or self.closed:
            return
        if not valid_command(command):
            raise ValueError(f"not a command of the control: {command!r}")
        self._outgoing.put({"type": "command", "command": list(command)})

    def close(self) -> None:
        """Says goodbye (when still connected) and closes the connection; the run goes on."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        with contextlib.suppress(Exception):
            self._socket.close(linger=200)
        with contextlib.suppress(Exception):
            self._ctx.term()


def run_terminal(client: RemoteClient, setup: dict[str, Any]) -> int:
    """The terminal (``kbd``) for a served run, until it ends or the user leaves.

    Returns:
        The run's exit code when it finished, 0 when the user left, 1 when the connection
        was lost.
    """
    from mimocorb2._terminal import Terminal

    detached = threading.Event()

    def put(command: Command) -> None:  # a typed command: to the run, or (exit) leave
        if isinstance(command, ExitCommand):
            detached.set()
        else:
            client.command(command_to_wire(command))

    terminal = Terminal(put, interactive=True, exit_any_time=True)
    print(
        f"mimocorb2: connected to the run in {setup.get('run_dir')} on {client.address}; "
        "'exit' or Ctrl-C leaves it running",
        flush=True,
    )
    terminal.start(setup)  # type: ignore[arg-type]  # the setup message holds the RunInfo
    finished: dict[str, Any] | None = None
    gone: str | None = None
    stats: dict[str, Any] = {"buffers": {}, "workers": {}, "time_active": 0.0}
    last_status = 0.0
    try:
        while not detached.is_set() and finished is None and gone is None:
            for message in client.messages():
                kind = message["type"]
                if kind == "lines":
                    terminal.lines(message["lines"], int(message.get("dropped") or 0))
                elif kind == "stats":
                    stats = message["stats"]
                    if time.monotonic() - last_status >= terminal.stats_interval:
                        last_status = time.monotonic()
                        terminal.stats(stats, message.get("failures", []))  # type: ignore[arg-type]
                elif kind == "finished":
                    finished = message
                elif kind == "eof":
                    gone = str(message.get("reason"))
            sys.stdout.flush()
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        terminal.stop()
        client.close()
    if finished is not None:
        code = int(finished.get("exit_code") or 0)
        terminal.finished(stats, [], code)  # type: ignore[arg-type]
        print(f"mimocorb2: the run on {client.address} finished (exit code {code})", flush=True)
        return code
    if gone is not None:
        print(f"mimocorb2: {gone}", file=sys.stderr)
        return 1
    print(f"mimocorb2: left the run on {client.address}; it goes on", flush=True)
    return 0


def remote_window(client: RemoteClient, setup: dict[str, Any]) -> Any:
    """The Buffer Manager window on ``client``; closing it leaves the run running.

    Exit (or closing the window) asks nothing and sends no command: a viewer leaves, the
    run goes on. Kill Workers still asks first. A ``QApplication`` must exist.
    """
    from mimocorb2._gui.window import BufferManagerWindow  # imports the Qt binding

    class RemoteWindow(BufferManagerWindow):  # type: ignore[misc, valid-type]
        """The window for a run on another host."""

        def __init__(self, endpoint: Any, info: dict[str, Any]) -> None:
            super().__init__(endpoint, info)
            self._close_ok = True  # closeEvent: no "kill them and exit?" for a viewer

    info = {**setup, "title": f"{setup.get('title', 'mimocorb2')} on {client.address}"}
    return RemoteWindow(client, info)


def run_gui(client: RemoteClient, setup: dict[str, Any]) -> int:
    """The Buffer Manager window for a served run, in this process; returns on its close.

    Returns:
        The run's exit code when the window saw it finish, else 0.
    """
    from mimocorb2._gui import window as qt_window  # imports the Qt binding

    widgets = qt_window.QtWidgets
    app = widgets.QApplication.instance() or widgets.QApplication(sys.argv[:1])
    app.setApplicationName("mimocorb2")
    window = remote_window(client, setup)
    window.show()
    run = getattr(app, "exec", None) or app.exec_
    run()
    client.close()
    return int(window.exit_code or 0) if window.finished else 0


def connect_main(address: str, mode: str | None, keys: str | None) -> int:
    """``mimocorb2 --connect ADDRESS [-c gui|kbd] [--keys DIR]``; returns the exit code."""
    if mode is None:
        from mimocorb2._gui import unavailable_reason

        mode = "gui" if unavailable_reason(need_real_display=True) is None else "kbd"
    chosen = {m.strip().lower() for m in mode.split("+") if m.strip()}
    chosen.discard("stats")  # stats.csv is written on the serving host
    if len(chosen) != 1 or not chosen <= {"gui", "kbd"}:
        print(f"mimocorb2: --connect with -c {mode!r}: use 'gui' or 'kbd'", file=sys.stderr)
        return 2
    if chosen == {"gui"}:
        from mimocorb2._gui import unavailable_reason

        reason = unavailable_reason()
        if reason is not None:
            print(f"mimocorb2: {reason}; using the terminal instead", file=sys.stderr)
            chosen = {"kbd"}
    try:
        client = RemoteClient(address, keys)
        setup = client.connect()
    except RemoteError as e:
        print(f"mimocorb2: {e}", file=sys.stderr)
        return 2
    if chosen == {"gui"}:
        return run_gui(client, setup)
    return run_terminal(client, setup)
