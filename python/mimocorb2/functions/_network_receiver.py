"""The receiving side of ``network.receiver``: opens sessions, writes the events into the sink."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from mimocorb2.exceptions import BufferEndedError, BufferTimeoutError
from mimocorb2.functions import _network_wire as wire
from mimocorb2.worker_templates import Importer


class Receiver:
    """The receiving side: opens sessions and writes the events into the sink."""

    def __init__(self, importer: Importer, settings: wire.Settings, link: wire.Link) -> None:
        self.io = importer.io
        self.name = importer.name
        self.log = importer.logger
        self.writer = importer.writer
        self.buffer = self.writer.buffer
        self.settings = settings
        self.link = link
        self.slot = self.buffer.slot_byte_size
        self.info = wire.layout_info(self.buffer, self.name)
        self.hello_payload = json.dumps(self.info).encode()
        self.session = wire.new_session()
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
        self.waiter = wire.Waiter(
            lambda what: self.log.info("worker '%s': %s", self.name, what),
            f"waiting for a network.sender at {settings.address}",
        )

    def ack(self, force: bool = False) -> None:
        now = time.monotonic()
        due = self.committed > self.acked and now - self.last_ack >= wire.ACK_EVERY
        idle = now - self.link.last_sent >= wire.HEARTBEAT
        if (force or due or idle) and self.link.send(wire.ACK, self.session, self.committed):
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
        self.session = wire.new_session()
        self.open = False
        self.committed = self.acked = 0
        self.lost_at = time.monotonic()
        self.next_hello = 0.0
        self.waiter.reset()

    def write(self, msg: wire.Message) -> None:
        """Writes the events of a DATA message into the sink (sending signs of life)."""
        k = msg.count
        if msg.number != self.committed:
            raise wire.NetworkError(
                f"events out of order from {self.settings.address}: expected event "
                f"{self.committed} of the session, got {msg.number}"
            )
        frame = msg.payload
        rows = np.frombuffer(frame.buffer, dtype=np.uint8) if frame is not None else None
        if rows is None or rows.size != k * self.slot:
            got = 0 if rows is None else rows.size
            raise wire.NetworkError(
                f"a message from {self.settings.address} holds {got} bytes instead of "
                f"{k} events of {self.slot} bytes"
            )
        rows = rows.reshape(k, self.slot)
        done = 0
        while done < k:
            try:
                n = self.writer.write_rows(rows[done:], k - done, True, False, wire.POLL)
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

    def handle(self, msg: wire.Message) -> bool:
        """Handles one message; True when the stream has ended."""
        if msg.session != self.session:
            if msg.kind == wire.DATA:
                self.stale += msg.count
            return False
        self.heard = time.monotonic()
        if msg.kind == wire.WELCOME and not self.open:
            theirs = wire.json_payload(msg)
            self.open = True
            self.sessions += 1
            self.lost_at = None
            self.log.info(
                "worker '%s': connected to network.sender '%s' (%s) at %s",
                self.name,
                theirs.get("worker"),
                wire.describe_layout(theirs),
                self.settings.address,
            )
        elif msg.kind == wire.REJECT:
            reason = wire.json_payload(msg).get("reason", "the sender refused the connection")
            raise wire.NetworkError(
                f"the network.sender at {self.settings.address} refused: {reason}"
            )
        elif msg.kind == wire.DATA and self.open:
            self.write(msg)
        elif msg.kind == wire.END and self.open:
            self.upstream = wire.json_payload(msg)
            if msg.number != self.committed and not self.sink_ended:
                raise wire.NetworkError(
                    f"the sender ended the stream after {msg.number} event(s) of the session, "
                    f"but {self.committed} arrived"
                )
            deadline = time.monotonic() + min(self.settings.timeout, 5.0)
            while not self.link.send(wire.END_ACK, self.session, self.committed):
                if time.monotonic() > deadline:
                    break
                self.link.writable(wire.POLL)
            return True
        return False

    def run(self) -> None:
        """Receives until the sender ends the stream (or the sink is shut down)."""
        link = self.link
        while True:
            if self.sink_ended or self.buffer.flush_event_received:
                self.sink_ended = True
                link.send(wire.BYE, self.session, self.committed)
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
                    sent = link.send(wire.HELLO, self.session, payload=self.hello_payload)
                    self.next_hello = now + (wire.HELLO_EVERY if sent else wire.HELLO_RETRY)
                if self.lost_at is not None and now - self.lost_at > self.settings.timeout:
                    raise wire.NetworkError(
                        f"the connection to the sender at {self.settings.address} was lost and "
                        f"not restored within {self.settings.timeout:g} s (config 'timeout')"
                    )
                self.waiter.tick()
            msg = link.recv(wire.POLL if self.open else wire.HELLO_RETRY)
            if msg is None:
                if self.open:
                    if time.monotonic() - self.heard > wire.SILENCE_LIMIT:
                        self.lose(f"no sign of life from the sender for {wire.SILENCE_LIMIT:g} s")
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
