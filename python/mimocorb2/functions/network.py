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

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from mimocorb2.functions import _network_wire
from mimocorb2.functions._network_receiver import Receiver
from mimocorb2.functions._network_sender import Sender

# The protocol's public names stay importable from here (network.DEFAULT_TIMEOUT, ...).
from mimocorb2.functions._network_wire import (  # noqa: F401
    DEFAULT_HIGH_WATER_MARK,
    DEFAULT_TIMEOUT,
    HEARTBEAT,
    INSTALL_HINT,
    NOTES_DIR,
    PATTERNS,
    Link,
    NetworkError,
    Settings,
    describe_layout,
    layout_info,
    layout_mismatch,
    parse_settings,
    write_note,
    zmq_problem,
)
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import Exporter, Importer, SetupError

__all__ = ["NetworkError", "receiver", "sender"]

# Defined here too, so that the documentation of this module carries their descriptions.
PROTOCOL_VERSION = _network_wire.PROTOCOL_VERSION
"""Version of the wire protocol; both sides must speak the same."""

SILENCE_LIMIT = _network_wire.SILENCE_LIMIT
"""Seconds without a sign of life after which the peer counts as lost."""


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
    link = Link(zmq, settings)
    state = Sender(exporter, settings, link)
    linger = 0.0
    try:
        state.run()
        linger = 1.0
    except NetworkError as e:
        linger = 1.0
        raise NetworkError(f"worker '{buffer_io.name}': {e}") from None
    finally:
        write_note(buffer_io, state.note())
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
        link = Link(zmq, settings)
    except NetworkError as e:
        buffer_io.end_sinks(failed=True)
        raise NetworkError(f"worker '{buffer_io.name}': {e}") from None
    state = Receiver(importer, settings, link)
    try:
        state.run()
        failed = False
    except NetworkError as e:
        raise NetworkError(f"worker '{buffer_io.name}': {e}") from None
    finally:
        write_note(buffer_io, state.note())
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
