"""The wire protocol of ``network.sender`` and ``network.receiver`` (:mod:`~.functions.network`).

Constants, message kinds and the 24-byte header; the checked configuration; the layouts the
two sides compare in the handshake; one ZeroMQ DEALER link with its framing; the ledger note.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import re
import secrets
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimocorb2._dtypes import METADATA_DTYPE, dtype_from_json, dtype_to_json
from mimocorb2.functions.importers._common import ConfigChecker
from mimocorb2.mimo_worker import BufferIO

PROTOCOL_VERSION = 1
"""Version of the wire protocol; both sides must speak the same."""

INSTALL_HINT = 'install it with: pip install "mimocorb2[network]"  (or: pip install pyzmq)'
"""What to do when pyzmq is missing."""

PATTERNS = ("push", "publish")
DEFAULT_HIGH_WATER_MARK = 64
DEFAULT_TIMEOUT = 10.0

HEARTBEAT = 0.25
"""Seconds between signs of life on an idle connection."""

SILENCE_LIMIT = 3.0
"""Seconds without a sign of life after which the peer counts as lost."""

NOTES_DIR = "ledger_notes"
"""Directory (in the run directory) of the workers' notes for the loss ledger."""

HELLO_EVERY = 0.5
HELLO_RETRY = 0.01
ACK_EVERY = 0.01
POLL = 0.1
WAIT_LOG_EVERY = 10.0
BATCH_EVENTS = 4096
BATCH_BYTES = 1 << 20
KNOWN_KEYS = ("address", "bind", "pattern", "high_water_mark", "timeout")

HELLO, WELCOME, REJECT, DATA, END, END_ACK, ACK, PING, BYE = range(1, 10)
KIND_NAMES = {
    HELLO: "HELLO",
    WELCOME: "WELCOME",
    REJECT: "REJECT",
    DATA: "DATA",
    END: "END",
    END_ACK: "END_ACK",
    ACK: "ACK",
    PING: "PING",
    BYE: "BYE",
}
HEADER = struct.Struct("<B3xIQQ")
"""kind, event count, session id, number (event index or count, depending on the kind)."""

ADDRESS = re.compile(r"^tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(?P<port>[0-9]{1,5})$")


class NetworkError(Exception):
    """The connection to the peer failed: lost for longer than ``timeout``, refused, or garbled."""


# ----- configuration -----


@dataclass(frozen=True)
class Settings:
    """The checked configuration of a sender or receiver.

    Attributes:
        address: ``tcp://host:port``.
        bind: Whether this side listens (binds) rather than connects.
        pattern: ``push`` or ``publish``.
        high_water_mark: Messages ZeroMQ queues per direction before the pattern applies.
        timeout: Seconds a lost connection is retried (and an end handshake awaited).
    """

    address: str
    bind: bool
    pattern: str
    high_water_mark: int
    timeout: float


def zmq_problem() -> str | None:
    """Why ``pyzmq`` cannot be used (None when ``import zmq`` works)."""
    if importlib.util.find_spec("zmq") is None:
        return (
            "the network workers need the Python package 'pyzmq', which is not installed; "
            + INSTALL_HINT
        )
    try:
        importlib.import_module("zmq")
    except Exception as e:
        return (
            f"pyzmq is installed but cannot be imported ({type(e).__name__}: {e}); {INSTALL_HINT}"
        )
    return None


def address_problem(address: str, bind: bool) -> str | None:
    m = ADDRESS.match(address)
    if m is None:
        return (
            f"{address!r} is not an address of the form tcp://HOST:PORT "
            "(e.g. tcp://192.168.1.20:5555, or tcp://*:5555 on the listening side)"
        )
    port = int(m["port"])
    if not 1 <= port <= 65535:
        return f"port {port} of {address!r} is out of range; use 1 to 65535"
    if m["host"] == "*" and not bind:
        return (
            f"{address!r}: '*' (every interface) is only for the side that listens (bind: "
            "true); the connecting side needs the host name or IP address of the other host"
        )
    return None


def parse_settings(config: Mapping[str, Any], role: str) -> tuple[Settings | None, list[str]]:
    """Checks the configuration of a ``network.sender`` or ``network.receiver``.

    Args:
        config: The worker's effective configuration.
        role: ``"sender"`` or ``"receiver"`` (the default of ``bind`` differs).

    Returns:
        The settings (None if invalid) and one message per problem.
    """
    c = ConfigChecker(config)
    address = c.string("address", example="tcp://127.0.0.1:5555")
    bind = c.boolean("bind", role == "sender")
    pattern = c.choice("pattern", PATTERNS, "push")
    hwm = c.integer("high_water_mark", DEFAULT_HIGH_WATER_MARK, lo=1, hi=1_000_000, example="64")
    timeout = c.number("timeout", DEFAULT_TIMEOUT, lo=0, hi=86400, strict_lo=True, example="10")
    if address is not None and bind is not None:
        problem = address_problem(address, bind)
        if problem:
            c.error("address", problem)
    c.typos(KNOWN_KEYS)
    if c.errors:
        return None, c.errors
    return Settings(str(address), bool(bind), str(pattern), int(hwm), float(timeout)), []


# ----- layouts -----


def layout_info(buffer: Any, worker: str) -> dict[str, Any]:
    """What one side tells the other in the handshake about its buffer."""
    return {
        "version": PROTOCOL_VERSION,
        "dtype": dtype_to_json(buffer.data_dtype),
        "data_length": int(buffer.data_length),
        "metadata_dtype": dtype_to_json(METADATA_DTYPE),
        "buffer": buffer.name,
        "worker": worker,
        "host": socket.gethostname(),
    }


def describe_layout(info: Mapping[str, Any]) -> str:
    """``buffer 'x' on host h: {ch1: float32} x data_length 500`` from a handshake payload."""
    try:
        dt = dtype_from_json(str(info["dtype"]))
        fields = ", ".join(f"{n}: {dt[n]}" for n in dt.names or ())
        dtype = "{" + fields + "}" if dt.names else str(dt)
    except Exception:
        dtype = repr(info.get("dtype"))
    where = f"buffer '{info.get('buffer', '?')}' on host {info.get('host', '?')}"
    return f"{where}: data_dtype {dtype} x data_length {info.get('data_length', '?')}"


def layout_mismatch(sender: Mapping[str, Any], receiver: Mapping[str, Any]) -> str | None:
    """Why the receiver's buffer cannot take the sender's events (None if it can)."""
    if receiver.get("version") != sender["version"]:
        return (
            f"protocol versions differ: sender speaks {sender['version']}, receiver "
            f"{receiver.get('version')!r}; install the same mimocorb2 version on both hosts"
        )
    try:
        same = (
            dtype_from_json(str(receiver["dtype"])) == dtype_from_json(sender["dtype"])
            and int(receiver["data_length"]) == sender["data_length"]
            and dtype_from_json(str(receiver["metadata_dtype"]))
            == dtype_from_json(sender["metadata_dtype"])
        )
    except Exception:
        same = False
    if same:
        return None
    return (
        "the buffers do not match: the sender's source is "
        f"{describe_layout(sender)}, the receiver's sink is {describe_layout(receiver)}; "
        "give both buffers the same data_dtype (field names, types, order) and data_length"
    )


# ----- the connection -----


@dataclass
class Message:
    kind: int
    count: int
    session: int
    number: int
    payload: Any  # zmq.Frame or None


class Link:
    """One ZeroMQ DEALER socket, bound or connected, with non-blocking send and timed receive."""

    def __init__(self, zmq: Any, settings: Settings) -> None:
        self.zmq = zmq
        self.settings = settings
        self.ctx = zmq.Context()
        sock = self.sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.SNDHWM, settings.high_water_mark)
        sock.setsockopt(zmq.RCVHWM, settings.high_water_mark)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        try:
            if settings.bind:
                sock.bind(settings.address)
            else:
                sock.connect(settings.address)
        except zmq.ZMQError as e:
            self.close()
            verb = "listen on" if settings.bind else "connect to"
            hint = (
                "is another run (or program) using this port? choose a free port, or a host "
                "address of this machine (or '*')"
                if settings.bind
                else "check the host name in 'address'"
            )
            raise NetworkError(f"cannot {verb} {settings.address}: {e}; {hint}") from None
        self.monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.last_sent = time.monotonic()

    def disconnected(self) -> bool:
        """Whether a connection of the socket closed since the last call."""
        seen = False
        while self.monitor.poll(0, self.zmq.POLLIN):
            self.monitor.recv_multipart()
            seen = True
        return seen

    def send(
        self, kind: int, session: int, number: int = 0, count: int = 0, payload: Any = None
    ) -> bool:
        """Queues one message without waiting; False when the queue is full (or no peer)."""
        parts: list[Any] = [HEADER.pack(kind, count, session, number)]
        if payload is not None:
            parts.append(payload)
        try:
            self.sock.send_multipart(parts, flags=self.zmq.NOBLOCK, copy=False)
        except self.zmq.Again:
            return False
        self.last_sent = time.monotonic()
        return True

    def writable(self, wait: float) -> bool:
        """Whether a message can be queued now (waits up to ``wait`` seconds)."""
        return bool(self.sock.poll(max(0, int(wait * 1000)), self.zmq.POLLOUT))

    def recv(self, wait: float) -> Message | None:
        """The next message, or None if none arrived within ``wait`` seconds."""
        if not self.sock.poll(max(0, int(wait * 1000)), self.zmq.POLLIN):
            return None
        parts = self.sock.recv_multipart(copy=False)
        head = parts[0].bytes
        if len(head) != HEADER.size or len(parts) > 2:
            raise NetworkError(
                f"received a message that is not mimocorb2 network protocol {PROTOCOL_VERSION} "
                f"from {self.settings.address}; is another program using this port?"
            )
        kind, count, session, number = HEADER.unpack(head)
        return Message(kind, count, session, number, parts[1] if len(parts) == 2 else None)

    def close(self, linger: float = 0.0) -> None:
        """Closes the socket, waiting up to ``linger`` seconds for queued messages."""
        with contextlib.suppress(Exception):
            self.sock.disable_monitor()
            self.monitor.close(linger=0)
        with contextlib.suppress(Exception):
            self.sock.close(linger=int(linger * 1000))
        with contextlib.suppress(Exception):
            self.ctx.term()


def json_payload(message: Message) -> dict[str, Any]:
    if message.payload is None:
        return {}
    try:
        value = json.loads(bytes(message.payload.buffer).decode())
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def write_note(io: BufferIO, note: dict[str, Any]) -> None:
    """Writes this process's note for the loss ledger (atomically)."""
    try:
        directory = Path(io.run_dir) / NOTES_DIR
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{io.name}.{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(note, indent=2) + "\n")
        tmp.replace(path)
    except (OSError, TypeError) as e:
        io.logger.warning("worker '%s': cannot write its ledger note: %s", io.name, e)


def new_session() -> int:
    return secrets.randbits(63) | 1


class Waiter:
    """Logs now and then that a side is still waiting for its peer."""

    def __init__(self, log: Callable[[str], None], what: str) -> None:
        self.log = log
        self.what = what
        self.next = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self.next:
            self.log(self.what)
            self.next = now + WAIT_LOG_EVERY

    def reset(self) -> None:
        self.next = time.monotonic()


# ----- sender -----
