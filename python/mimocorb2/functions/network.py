"""Bridge workers joining runs on different hosts: ``network.sender``, ``network.receiver``.

A ``network.sender`` (Exporter) in one run reads its source buffer and sends every event over
ZeroMQ (``pyzmq``, an optional dependency: ``pip install "mimocorb2[network]"``) to a
``network.receiver`` (Importer) in another run, usually on another host, which writes the events
into its sink with the origin's ``counter``, ``timestamp`` and ``deadtime``. The shared-memory
core is not involved: each run keeps its own buffers, and the two workers are joined by one
ZeroMQ connection (``DEALER`` to ``DEALER`` over TCP, one receiver per sender).

Protocol (version :data:`PROTOCOL_VERSION`). Every message is a 24-byte header (kind, event
count, session id, number; little endian), for some kinds followed by a payload frame:

- the receiver opens a *session*: ``HELLO`` with a random session id and a JSON payload
  (protocol version, data dtype, ``data_length``, metadata dtype, host, worker), repeated
  every 0.5 s until the sender answers ``WELCOME`` or ``REJECT`` (a mismatch: both sides stop
  with an error naming both layouts);
- ``DATA`` carries ``count`` events packed as in a slot (metadata record, then the data),
  ``number`` being the index of its first event in the session. A batch holds what the source
  had at hand (up to 4096 events or 1 MiB): no waiting to fill it, so latency stays bounded;
- the receiver acknowledges what it committed to its sink (``ACK``, at most every 10 ms, and
  every 0.25 s as its sign of life); the sender pings every 0.25 s while it has nothing to send;
- at the end of the source the sender sends ``END`` (with the number of events of the session
  and its totals); the receiver answers ``END_ACK`` once every event is in its sink, and ends
  its sink. A receiver whose sink was shut down from outside says ``BYE``.

A peer silent for :data:`SILENCE_LIMIT` seconds, or a receiver that opens a new session (it was
restarted), means the connection was lost: it is reported and retried for ``timeout`` seconds
(then the worker fails). Events sent in a lost session and not acknowledged are counted as lost
in transit (an acknowledgement arriving later moves them back to delivered).

Accounting (``run_summary.json``): each worker writes ``ledger_notes/<worker>.<pid>.json`` in the
run directory; the Control adds it to the loss ledger. Events the sender drops in pattern
``publish`` are released with the disposition ``dropped`` and named with their reason; events
lost in transit count as dropped by the sender. The receiver's events are the events it wrote;
events that reached it but could not be written (its sink had ended, or they belonged to a
session already given up) count as dropped by the receiver.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
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

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE, dtype_from_json, dtype_to_json
from mimocorb2.exceptions import BufferEndedError, BufferTimeoutError
from mimocorb2.functions.importers._common import ConfigChecker
from mimocorb2.mimo_buffer import _record_dtype
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import Exporter, Importer, SetupError

__all__ = ["NetworkError", "receiver", "sender"]

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

_HELLO_EVERY = 0.5
_HELLO_RETRY = 0.01
_ACK_EVERY = 0.01
_POLL = 0.1
_WAIT_LOG_EVERY = 10.0
_BATCH_EVENTS = 4096
_BATCH_BYTES = 1 << 20
_KNOWN_KEYS = ("address", "bind", "pattern", "high_water_mark", "timeout")

_HELLO, _WELCOME, _REJECT, _DATA, _END, _END_ACK, _ACK, _PING, _BYE = range(1, 10)
_KIND_NAMES = {
    _HELLO: "HELLO",
    _WELCOME: "WELCOME",
    _REJECT: "REJECT",
    _DATA: "DATA",
    _END: "END",
    _END_ACK: "END_ACK",
    _ACK: "ACK",
    _PING: "PING",
    _BYE: "BYE",
}
_HEADER = struct.Struct("<B3xIQQ")
"""kind, event count, session id, number (event index or count, depending on the kind)."""

_ADDRESS = re.compile(r"^tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(?P<port>[0-9]{1,5})$")

_log = logging.getLogger(__name__)


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


def _address_problem(address: str, bind: bool) -> str | None:
    m = _ADDRESS.match(address)
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
        problem = _address_problem(address, bind)
        if problem:
            c.error("address", problem)
    c.typos(_KNOWN_KEYS)
    if c.errors:
        return None, c.errors
    return Settings(str(address), bool(bind), str(pattern), int(hwm), float(timeout)), []


def _validator(role: str) -> Callable[[Mapping[str, Any], Any, int | None], list[str]]:
    def validate_config(
        config: Mapping[str, Any], sink_dtype: Any, data_length: int | None
    ) -> list[str]:
        """Checks a configuration (and that pyzmq is there) without opening a connection.

        Args:
            config: The worker's effective configuration.
            sink_dtype: The sink's data_dtype (unused: layouts are compared on connect).
            data_length: The sink's data_length (unused).

        Returns:
            One message per problem; empty if valid.
        """
        errors = parse_settings(config, role)[1]
        problem = zmq_problem()
        if problem:
            errors.append(problem)
        return errors

    validate_config.__qualname__ = f"{role}.validate_config"
    return validate_config


def _setup(io: BufferIO, role: str) -> tuple[Settings, Any]:
    """The settings and the ``zmq`` module; SetupError (sinks ended) for anything wrong."""
    settings, errors = parse_settings(io.config, role)
    problem = zmq_problem()
    if problem:
        errors.append(problem)
    if errors or settings is None:
        io.end_sinks(failed=True)
        lines = "\n  - ".join(errors)
        raise SetupError(io.name, f"network.{role}: invalid configuration:\n  - {lines}")
    return settings, importlib.import_module("zmq")


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
class _Message:
    kind: int
    count: int
    session: int
    number: int
    payload: Any  # zmq.Frame or None


class _Link:
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
        parts: list[Any] = [_HEADER.pack(kind, count, session, number)]
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

    def recv(self, wait: float) -> _Message | None:
        """The next message, or None if none arrived within ``wait`` seconds."""
        if not self.sock.poll(max(0, int(wait * 1000)), self.zmq.POLLIN):
            return None
        parts = self.sock.recv_multipart(copy=False)
        head = parts[0].bytes
        if len(head) != _HEADER.size or len(parts) > 2:
            raise NetworkError(
                f"received a message that is not mimocorb2 network protocol {PROTOCOL_VERSION} "
                f"from {self.settings.address}; is another program using this port?"
            )
        kind, count, session, number = _HEADER.unpack(head)
        return _Message(kind, count, session, number, parts[1] if len(parts) == 2 else None)

    def close(self, linger: float = 0.0) -> None:
        """Closes the socket, waiting up to ``linger`` seconds for queued messages."""
        with contextlib.suppress(Exception):
            self.sock.disable_monitor()
            self.monitor.close(linger=0)
        with contextlib.suppress(Exception):
            self.sock.close(linger=int(linger * 1000))
        with contextlib.suppress(Exception):
            self.ctx.term()


def _json_payload(message: _Message) -> dict[str, Any]:
    if message.payload is None:
        return {}
    try:
        value = json.loads(bytes(message.payload.buffer).decode())
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_note(io: BufferIO, note: dict[str, Any]) -> None:
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


def _new_session() -> int:
    return secrets.randbits(63) | 1


class _Waiter:
    """Logs now and then that a side is still waiting for its peer."""

    def __init__(self, log: Callable[[str], None], what: str) -> None:
        self.log = log
        self.what = what
        self.next = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self.next:
            self.log(self.what)
            self.next = now + _WAIT_LOG_EVERY

    def reset(self) -> None:
        self.next = time.monotonic()


# ----- sender -----


class _Sender:
    """The sending side: reads the source in batches and sends them (see the module doc)."""

    def __init__(self, exporter: Exporter, settings: Settings, link: _Link) -> None:
        self.io = exporter.io
        self.name = exporter.name
        self.log = exporter.logger
        self.reader = exporter.reader
        self.settings = settings
        self.link = link
        buf = self.reader.buffer
        self.slot = buf.slot_byte_size
        self.record = _record_dtype(buf)
        self.max_events = max(1, min(_BATCH_EVENTS, _BATCH_BYTES // max(1, self.slot)))
        self.info = layout_info(buf, self.name)
        self.session = 0  # 0: no receiver
        self.heard = 0.0
        self.sent = 0  # events sent in this session
        self.acked = 0
        self.old_sessions: dict[int, int] = {}  # given-up session -> events acknowledged
        self.pending: tuple[np.ndarray, int] | None = None
        self.source_ended = False
        self.ended_at: float | None = None
        self.lost_at: float | None = None
        self.end_acked = False
        self.sent_total = 0
        self.delivered = 0
        self.lost_in_transit = 0
        self.dropped_lagging = 0
        self.dropped_no_receiver = 0
        self.dropped_after_read = 0
        self.sessions = 0
        self.waiter = _Waiter(
            lambda what: self.log.info("worker '%s': %s", self.name, what),
            f"waiting for a network.receiver at {settings.address}",
        )

    # -- incoming messages --

    def service(self, wait: float) -> None:
        """Handles every waiting message (waits up to ``wait`` for the first one)."""
        while True:
            msg = self.link.recv(wait)
            if msg is None:
                break
            wait = 0.0
            self.handle(msg)
        if self.link.disconnected() and self.session and not self.end_acked:
            self.lose("its connection closed")
        if self.session and time.monotonic() - self.heard > SILENCE_LIMIT:
            self.lose(f"no sign of life from the receiver for {SILENCE_LIMIT:g} s")
        if self.session and time.monotonic() - self.link.last_sent >= HEARTBEAT:
            self.link.send(_PING, self.session, self.sent)

    def handle(self, msg: _Message) -> None:
        if msg.kind == _HELLO:
            if msg.session != self.session:
                self.hello(msg)
        elif msg.session == self.session and self.session:
            self.heard = time.monotonic()
            if msg.kind in (_ACK, _END_ACK):
                self.acked = max(self.acked, min(msg.number, self.sent))
                if msg.kind == _END_ACK:
                    self.end_acked = True
            elif msg.kind == _BYE:
                self.acked = max(self.acked, min(msg.number, self.sent))
                self.lose("the receiver stopped (its sink was shut down)")
        elif msg.session in self.old_sessions and msg.kind in (_ACK, _END_ACK, _BYE):
            late = msg.number - self.old_sessions[msg.session]
            if late > 0:  # delivered after all: not lost
                self.old_sessions[msg.session] = msg.number
                self.lost_in_transit -= late
                self.delivered += late

    def hello(self, msg: _Message) -> None:
        theirs = _json_payload(msg)
        problem = layout_mismatch(self.info, theirs)
        if problem:
            payload = json.dumps({"reason": problem, "sender": self.info}).encode()
            deadline = time.monotonic() + min(self.settings.timeout, 5.0)
            while not self.link.send(_REJECT, msg.session, payload=payload):
                if time.monotonic() > deadline:
                    break
                self.link.writable(_POLL)
            # A refusal can be lost while the connection is still being set up: answer the
            # receiver's repeated HELLOs (every 0.5 s) for a little while before stopping.
            until = time.monotonic() + min(self.settings.timeout, 2.0)
            while time.monotonic() < until:
                again = self.link.recv(_POLL)
                if again is not None and again.kind == _HELLO:
                    self.link.send(_REJECT, again.session, payload=payload)
            raise NetworkError(f"a network.receiver tried to connect, but {problem}")
        if self.session:
            self.lose("a new receiver connected (was the receiver restarted?)")
        self.session = msg.session
        self.sent = self.acked = 0
        self.sessions += 1
        self.heard = time.monotonic()
        self.lost_at = None
        self.end_acked = False
        self.send_control(_WELCOME, payload=json.dumps(self.info).encode())
        self.log.info(
            "worker '%s': connected to network.receiver '%s' (%s) at %s, pattern %s",
            self.name,
            theirs.get("worker"),
            describe_layout(theirs),
            self.settings.address,
            self.settings.pattern,
        )

    def lose(self, reason: str) -> None:
        """The session is over: its unacknowledged events count as lost in transit."""
        lost = self.sent - self.acked
        self.lost_in_transit += lost
        self.delivered += self.acked
        self.old_sessions[self.session] = self.acked
        if len(self.old_sessions) > 64:
            self.old_sessions.pop(next(iter(self.old_sessions)))
        self.session = 0
        self.sent = self.acked = 0
        self.lost_at = time.monotonic()
        self.waiter.reset()
        self.log.warning(
            "worker '%s': connection to the receiver at %s lost: %s; %d event(s) in flight "
            "counted as lost; waiting up to %g s for it to come back",
            self.name,
            self.settings.address,
            reason,
            lost,
            self.settings.timeout,
        )

    def send_control(self, kind: int, number: int = 0, payload: Any = None) -> None:
        """Sends a control message of the session, waiting up to ``timeout`` for room."""
        deadline = time.monotonic() + self.settings.timeout
        session = self.session
        while not self.link.send(kind, session, number, payload=payload):
            if time.monotonic() > deadline:
                raise NetworkError(
                    f"the receiver at {self.settings.address} took no message for "
                    f"{self.settings.timeout:g} s (config 'timeout')"
                )
            self.link.writable(_POLL)

    # -- waiting for a receiver --

    def check_deadline(self) -> None:
        """Fails once a lost (or, after the end of the source, missing) receiver is overdue."""
        now = time.monotonic()
        since = self.lost_at
        if self.ended_at is not None and (since is None or self.ended_at > since):
            since = self.ended_at
        if since is None or now - since <= self.settings.timeout:
            self.waiter.tick()
            return
        left = self.pending[1] if self.pending else 0
        if self.lost_at is not None:
            what = "the connection to the receiver was lost and not restored"
        else:
            what = "the source ended, but no network.receiver connected"
        raise NetworkError(
            f"{what} within {self.settings.timeout:g} s (config 'timeout') at "
            f"{self.settings.address}; {self.sent_total - self.lost_in_transit} event(s) "
            f"delivered, {self.lost_in_transit} lost in transit, {left} read but not sent"
        )

    # -- sending --

    def read(self, timeout: float) -> tuple[np.ndarray, int] | None:
        """Up to ``max_events`` events of the source (None at its end); may time out."""
        out = np.empty(self.max_events, dtype=self.record)
        k = self.reader.read_rows(out.view(np.uint8), self.max_events, timeout)
        if k == 0:
            return None
        return out, k

    def drop_one(self) -> bool:
        """Publish pattern: takes one event and releases it as dropped; False at the end."""
        reader = self.reader
        try:
            slot = reader.acquire(_POLL)
        except BufferTimeoutError:
            return True
        if slot is None:
            return False
        reader.set_disposition("dropped")
        reader.release()
        if self.session:
            self.dropped_lagging += 1
        else:
            self.dropped_no_receiver += 1
        return True

    def send_pending(self) -> bool:
        assert self.pending is not None
        out, k = self.pending
        payload = out.view(np.uint8)[: k * self.slot]
        if not self.link.send(_DATA, self.session, self.sent, k, payload):
            return False
        self.pending = None
        self.sent += k
        self.sent_total += k
        return True

    def step(self) -> None:
        """One step of the main loop (the source has not ended)."""
        push = self.settings.pattern == "push"
        if not self.session:
            if push:
                self.service(_POLL)
                self.check_deadline()
            else:
                self.service(0.0)
                if not self.drop_one():
                    self.source_ended = True
            return
        if self.pending is not None:
            if not self.send_pending():
                self.link.writable(_POLL)
                self.service(0.0)
            return
        if not push and not self.link.writable(0.0):
            if not self.drop_one():
                self.source_ended = True
            self.service(0.0)
            return
        try:
            batch = self.read(_POLL)
        except BufferTimeoutError:
            self.service(0.0)
            return
        if batch is None:
            self.source_ended = True
            return
        self.pending = batch
        if not self.send_pending() and not push:
            # cannot happen with one thread (the socket was writable); count it honestly
            self.pending = None
            self.dropped_after_read += batch[1]
        self.service(0.0)

    def finish(self) -> None:
        """The source ended: delivers what is left, then END, and waits for END_ACK."""
        self.ended_at = time.monotonic()
        push = self.settings.pattern == "push"
        while True:
            if not self.session:
                if not push and self.lost_at is None:
                    self.log.info(
                        "worker '%s': end of the source; no receiver is connected", self.name
                    )
                    return
                self.service(_POLL)
                self.check_deadline()
                continue
            if self.pending is not None:
                if not self.send_pending():
                    self.link.writable(_POLL)
                    self.service(0.0)
                continue
            totals = {
                "sent": self.sent_total,
                "lost_in_transit": self.lost_in_transit,
                "dropped_publish": self.dropped_lagging + self.dropped_no_receiver,
            }
            session = self.session
            self.send_control(_END, self.sent, json.dumps(totals).encode())
            while self.session == session and not self.end_acked:
                self.service(_POLL)
                if time.monotonic() - self.ended_at > self.settings.timeout + SILENCE_LIMIT:
                    self.lose("no END_ACK")
            if self.end_acked:
                self.delivered += self.acked
                self.sent = self.acked = 0
                return
            if not push:
                return

    def run(self) -> None:
        """Sends until the source ends and the receiver has everything (or fails)."""
        while not self.source_ended:
            self.step()
        self.finish()

    def note(self) -> dict[str, Any]:
        lost = self.lost_in_transit + (self.sent - self.acked if self.session else 0)
        return {
            "worker": self.name,
            "relabel_dropped": {
                "publish_receiver_lagging": self.dropped_lagging,
                "publish_no_receiver": self.dropped_no_receiver,
            },
            "dropped": {"lost_in_transit": lost + self.dropped_after_read},
            "explain": {
                "publish_receiver_lagging": "pattern publish, the receiver lagged "
                "(high_water_mark reached)",
                "publish_no_receiver": "pattern publish, no receiver was connected",
                "lost_in_transit": "sent over the network, not acknowledged by a receiver "
                "whose connection was lost",
            },
            "network": {
                "role": "sender",
                "address": self.settings.address,
                "pattern": self.settings.pattern,
                "sent": self.sent_total,
                "delivered": self.delivered + (self.acked if self.session else 0),
                "lost_in_transit": lost,
                "dropped_publish": self.dropped_lagging + self.dropped_no_receiver,
                "sessions": self.sessions,
            },
        }


def sender(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Send the events of a buffer to a network.receiver on another host.

    Reads the source buffer and sends every event (metadata and data, as stored in the slot,
    no pickling) over ZeroMQ to the ``network.receiver`` at ``address``, which writes it into
    its own sink with the same ``counter``, ``timestamp`` and ``deadtime``. Needs ``pyzmq``:
    ``pip install "mimocorb2[network]"``.

    On connect the receiver's sink must have the source's ``data_dtype`` and ``data_length``
    (and both sides the same protocol version); otherwise both workers stop with an error
    naming both layouts. When the source ends, the receiver's sink ends after every event
    arrived. A lost connection (peer silent for 3 s, or a receiver that restarted) is
    reported and retried for ``timeout`` seconds; events in flight then count as lost in the
    run's ledger (``run_summary.json``).

    Patterns: ``push`` delivers every event once; when the receiver lags, at most
    ``high_water_mark`` messages queue up, then the sender waits, the source fills and the
    writers upstream wait (dead time), as with a full buffer. It waits (without limit) for
    its receiver to connect. ``publish`` never waits: events that find the queue full, or no
    receiver connected, are dropped and counted (``dropped`` in the ledger, with the
    reason); use it for a live view. One receiver per sender (use ``misc.copy`` and two
    senders for two destinations).

    Type
        Exporter

    Buffers
        sources
            1
        sinks
            0
        observes
            0

    Configs
        address : str
            ``tcp://HOST:PORT``. The listening side (``bind: true``) may use ``*`` for every
            interface (``tcp://*:5555``); the other side names the listening host.
        bind : bool, optional (default=true)
            Whether the sender listens; set ``bind: false`` here and ``bind: true`` on the
            receiver when the receiving host is the one that can be reached.
        pattern : str, optional (default='push')
            ``push`` (every event, back-pressure) or ``publish`` (newest events, never waits,
            drops counted). Give the receiver the same pattern.
        high_water_mark : int, optional (default=64)
            Messages (batches of up to 4096 events or 1 MiB) queued per direction before
            ``push`` waits or ``publish`` drops.
        timeout : float, optional (default=10)
            Seconds a lost connection is retried, and a receiver awaited after the end of the
            source, before the worker fails.

    Examples:
        On the DAQ host::

            send:
              function: network.sender
              sources: [pulses]
              config: {address: "tcp://*:5555"}
    """
    exporter = Exporter(buffer_io)
    if exporter.write:
        buffer_io.end_sinks(failed=True)
        raise SetupError(
            buffer_io.name,
            f"network.sender has no sinks, but the setup gives {buffer_io.buffer_names_out}; "
            "remove them (use misc.copy to keep a copy of the stream in this run)",
        )
    settings, zmq = _setup(buffer_io, "sender")
    link = _Link(zmq, settings)
    state = _Sender(exporter, settings, link)
    linger = 0.0
    try:
        state.run()
        linger = 1.0
    except NetworkError as e:
        linger = 1.0
        raise NetworkError(f"worker '{buffer_io.name}': {e}") from None
    finally:
        _write_note(buffer_io, state.note())
        link.close(linger)
        n = state.note()["network"]
        exporter.logger.info(
            "worker '%s': sent %d event(s), %d delivered, %d lost in transit, %d dropped (publish)",
            buffer_io.name,
            n["sent"],
            n["delivered"],
            n["lost_in_transit"],
            n["dropped_publish"],
        )


# ----- receiver -----


class _Receiver:
    """The receiving side: opens sessions and writes the events into the sink."""

    def __init__(self, importer: Importer, settings: Settings, link: _Link) -> None:
        self.io = importer.io
        self.name = importer.name
        self.log = importer.logger
        self.writer = importer.writer
        self.buffer = self.writer.buffer
        self.settings = settings
        self.link = link
        self.slot = self.buffer.slot_byte_size
        self.info = layout_info(self.buffer, self.name)
        self.hello_payload = json.dumps(self.info).encode()
        self.session = _new_session()
        self.open = False
        self.heard = 0.0
        self.next_hello = 0.0
        self.last_ack = 0.0
        self.acked = 0
        self.committed = 0  # events of this session in the sink
        self.received = 0
        self.stale = 0
        self.dropped_sink_ended = 0
        self.sessions = 0
        self.lost_at: float | None = None
        self.upstream: dict[str, Any] = {}
        self.sink_ended = False
        self.waiter = _Waiter(
            lambda what: self.log.info("worker '%s': %s", self.name, what),
            f"waiting for a network.sender at {settings.address}",
        )

    def ack(self, force: bool = False) -> None:
        now = time.monotonic()
        due = self.committed > self.acked and now - self.last_ack >= _ACK_EVERY
        idle = now - self.link.last_sent >= HEARTBEAT
        if (force or due or idle) and self.link.send(_ACK, self.session, self.committed):
            self.acked = self.committed
            self.last_ack = now

    def lose(self, reason: str) -> None:
        self.log.warning(
            "worker '%s': connection to the sender at %s lost: %s; reconnecting for up to %g s",
            self.name,
            self.settings.address,
            reason,
            self.settings.timeout,
        )
        self.session = _new_session()
        self.open = False
        self.committed = self.acked = 0
        self.lost_at = time.monotonic()
        self.next_hello = 0.0
        self.waiter.reset()

    def write(self, msg: _Message) -> None:
        """Writes the events of a DATA message into the sink (sending signs of life)."""
        k = msg.count
        if msg.number != self.committed:
            raise NetworkError(
                f"events out of order from {self.settings.address}: expected event "
                f"{self.committed} of the session, got {msg.number}"
            )
        frame = msg.payload
        rows = np.frombuffer(frame.buffer, dtype=np.uint8) if frame is not None else None
        if rows is None or rows.size != k * self.slot:
            got = 0 if rows is None else rows.size
            raise NetworkError(
                f"a message from {self.settings.address} holds {got} bytes instead of "
                f"{k} events of {self.slot} bytes"
            )
        rows = rows.reshape(k, self.slot)
        done = 0
        while done < k:
            try:
                n = self.writer.write_rows(rows[done:], k - done, True, False, _POLL)
            except BufferTimeoutError:  # the sink is full: stay alive for the sender
                self.ack()
                continue
            except BufferEndedError:
                self.sink_ended = True
                self.dropped_sink_ended += k - done
                break
            done += n
            self.committed += n
            self.received += n
        self.ack()

    def handle(self, msg: _Message) -> bool:
        """Handles one message; True when the stream has ended."""
        if msg.session != self.session:
            if msg.kind == _DATA:
                self.stale += msg.count
            return False
        self.heard = time.monotonic()
        if msg.kind == _WELCOME and not self.open:
            theirs = _json_payload(msg)
            self.open = True
            self.sessions += 1
            self.lost_at = None
            self.log.info(
                "worker '%s': connected to network.sender '%s' (%s) at %s",
                self.name,
                theirs.get("worker"),
                describe_layout(theirs),
                self.settings.address,
            )
        elif msg.kind == _REJECT:
            reason = _json_payload(msg).get("reason", "the sender refused the connection")
            raise NetworkError(f"the network.sender at {self.settings.address} refused: {reason}")
        elif msg.kind == _DATA and self.open:
            self.write(msg)
        elif msg.kind == _END and self.open:
            self.upstream = _json_payload(msg)
            if msg.number != self.committed and not self.sink_ended:
                raise NetworkError(
                    f"the sender ended the stream after {msg.number} event(s) of the session, "
                    f"but {self.committed} arrived"
                )
            deadline = time.monotonic() + min(self.settings.timeout, 5.0)
            while not self.link.send(_END_ACK, self.session, self.committed):
                if time.monotonic() > deadline:
                    break
                self.link.writable(_POLL)
            return True
        return False

    def run(self) -> None:
        """Receives until the sender ends the stream (or the sink is shut down)."""
        link = self.link
        while True:
            if self.sink_ended or self.buffer.flush_event_received:
                self.sink_ended = True
                link.send(_BYE, self.session, self.committed)
                self.log.info(
                    "worker '%s': sink '%s' was shut down; stopping the receiver",
                    self.name,
                    self.writer.name,
                )
                return
            now = time.monotonic()
            if not self.open:
                if now >= self.next_hello:
                    # not connected yet (the send fails): try again soon, so that a sender
                    # learns of a new session before it sends more to a lost one
                    sent = link.send(_HELLO, self.session, payload=self.hello_payload)
                    self.next_hello = now + (_HELLO_EVERY if sent else _HELLO_RETRY)
                if self.lost_at is not None and now - self.lost_at > self.settings.timeout:
                    raise NetworkError(
                        f"the connection to the sender at {self.settings.address} was lost and "
                        f"not restored within {self.settings.timeout:g} s (config 'timeout')"
                    )
                self.waiter.tick()
            msg = link.recv(_POLL if self.open else _HELLO_RETRY)
            if msg is None:
                if self.open:
                    if time.monotonic() - self.heard > SILENCE_LIMIT:
                        self.lose(f"no sign of life from the sender for {SILENCE_LIMIT:g} s")
                    else:
                        self.ack()
                continue
            if self.handle(msg):
                return
            if self.open:
                self.ack()

    def note(self) -> dict[str, Any]:
        return {
            "worker": self.name,
            "dropped": {
                "sink_ended": self.dropped_sink_ended,
                "stale_session": self.stale,
            },
            "explain": {
                "stale_session": "arrived over a connection already given up as lost (the "
                "sender counts them as lost in transit too)",
            },
            "network": {
                "role": "receiver",
                "address": self.settings.address,
                "pattern": self.settings.pattern,
                "received": self.received,
                "sessions": self.sessions,
                "upstream": self.upstream,
            },
        }


def receiver(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Receive the events of a network.sender on another host.

    Writes every event a ``network.sender`` sends into the sink, keeping the origin's
    ``counter``, ``timestamp`` and ``deadtime`` (no re-stamping). Needs ``pyzmq``:
    ``pip install "mimocorb2[network]"``.

    A receiver that starts first waits (without limit) for its sender. On connect the sink
    must have the sender's ``data_dtype`` and ``data_length``; otherwise both workers stop
    with an error naming both layouts. The sink ends when the sender's source has ended and
    every event arrived. A lost connection is reported and retried for ``timeout`` seconds.

    Type
        Importer

    Buffers
        sources
            0
        sinks
            1 with the data_dtype and data_length of the sender's source
        observes
            0

    Configs
        address : str
            ``tcp://HOST:PORT`` of the sender (or, with ``bind: true``, where to listen:
            ``tcp://*:5555``).
        bind : bool, optional (default=false)
            Whether the receiver listens instead of the sender.
        pattern : str, optional (default='push')
            The sender's pattern (``push`` or ``publish``), for the messages; the sender
            decides what is dropped.
        high_water_mark : int, optional (default=64)
            Messages queued on the receiving side.
        timeout : float, optional (default=10)
            Seconds a lost connection is retried before the worker fails.

    Examples:
        On the analysis host::

            receive:
              function: network.receiver
              sinks: [pulses]
              config: {address: "tcp://daq-pc.lab:5555"}
    """
    importer = Importer(buffer_io)
    settings, zmq = _setup(buffer_io, "receiver")
    failed = True
    try:
        link = _Link(zmq, settings)
    except NetworkError as e:
        buffer_io.end_sinks(failed=True)
        raise NetworkError(f"worker '{buffer_io.name}': {e}") from None
    state = _Receiver(importer, settings, link)
    try:
        state.run()
        failed = False
    except NetworkError as e:
        raise NetworkError(f"worker '{buffer_io.name}': {e}") from None
    finally:
        _write_note(buffer_io, state.note())
        link.close(1.0)
        buffer_io.end_sinks(failed)
        importer.logger.info(
            "worker '%s': received %d event(s) in %d session(s)",
            buffer_io.name,
            state.received,
            state.sessions,
        )


sender.validate_config = _validator("sender")  # type: ignore[attr-defined]
receiver.validate_config = _validator("receiver")  # type: ignore[attr-defined]
