"""The sending side of ``network.sender``: reads the source in batches and sends them."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from mimocorb2.exceptions import BufferTimeoutError
from mimocorb2.functions import _network_wire as wire
from mimocorb2.mimo_buffer import _record_dtype
from mimocorb2.worker_templates import Exporter


class Sender:
    """The sending side: reads the source in batches and sends them (see the module doc)."""

    def __init__(self, exporter: Exporter, settings: wire.Settings, link: wire.Link) -> None:
        self.io = exporter.io
        self.name = exporter.name
        self.log = exporter.logger
        self.reader = exporter.reader
        self.settings = settings
        self.link = link
        buf = self.reader.buffer
        self.slot = buf.slot_byte_size
        self.record = _record_dtype(buf)
        self.max_events = max(1, min(wire.BATCH_EVENTS, wire.BATCH_BYTES // max(1, self.slot)))
        self.info = wire.layout_info(buf, self.name)
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
        self.waiter = wire.Waiter(
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
        if self.session and time.monotonic() - self.heard > wire.SILENCE_LIMIT:
            self.lose(f"no sign of life from the receiver for {wire.SILENCE_LIMIT:g} s")
        if self.session and time.monotonic() - self.link.last_sent >= wire.HEARTBEAT:
            self.link.send(wire.PING, self.session, self.sent)

    def handle(self, msg: wire.Message) -> None:
        if msg.kind == wire.HELLO:
            if msg.session != self.session:
                self.hello(msg)
        elif msg.session == self.session and self.session:
            self.heard = time.monotonic()
            if msg.kind in (wire.ACK, wire.END_ACK):
                self.acked = max(self.acked, min(msg.number, self.sent))
                if msg.kind == wire.END_ACK:
                    self.end_acked = True
            elif msg.kind == wire.BYE:
                self.acked = max(self.acked, min(msg.number, self.sent))
                self.lose("the receiver stopped (its sink was shut down)")
        elif msg.session in self.old_sessions and msg.kind in (wire.ACK, wire.END_ACK, wire.BYE):
            late = msg.number - self.old_sessions[msg.session]
            if late > 0:  # delivered after all: not lost
                self.old_sessions[msg.session] = msg.number
                self.lost_in_transit -= late
                self.delivered += late

    def hello(self, msg: wire.Message) -> None:
        theirs = wire.json_payload(msg)
        problem = wire.layout_mismatch(self.info, theirs)
        if problem:
            payload = json.dumps({"reason": problem, "sender": self.info}).encode()
            deadline = time.monotonic() + min(self.settings.timeout, 5.0)
            while not self.link.send(wire.REJECT, msg.session, payload=payload):
                if time.monotonic() > deadline:
                    break
                self.link.writable(wire.POLL)
            # A refusal can be lost while the connection is still being set up: answer the
            # receiver's repeated HELLOs (every 0.5 s) for a little while before stopping.
            until = time.monotonic() + min(self.settings.timeout, 2.0)
            while time.monotonic() < until:
                again = self.link.recv(wire.POLL)
                if again is not None and again.kind == wire.HELLO:
                    self.link.send(wire.REJECT, again.session, payload=payload)
            raise wire.NetworkError(f"a network.receiver tried to connect, but {problem}")
        if self.session:
            self.lose("a new receiver connected (was the receiver restarted?)")
        self.session = msg.session
        self.sent = self.acked = 0
        self.sessions += 1
        self.heard = time.monotonic()
        self.lost_at = None
        self.end_acked = False
        self.send_control(wire.WELCOME, payload=json.dumps(self.info).encode())
        self.log.info(
            "worker '%s': connected to network.receiver '%s' (%s) at %s, pattern %s",
            self.name,
            theirs.get("worker"),
            wire.describe_layout(theirs),
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
                raise wire.NetworkError(
                    f"the receiver at {self.settings.address} took no message for "
                    f"{self.settings.timeout:g} s (config 'timeout')"
                )
            self.link.writable(wire.POLL)

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
        raise wire.NetworkError(
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
            slot = reader.acquire(wire.POLL)
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
        if not self.link.send(wire.DATA, self.session, self.sent, k, payload):
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
                self.service(wire.POLL)
                self.check_deadline()
            else:
                self.service(0.0)
                if not self.drop_one():
                    self.source_ended = True
            return
        if self.pending is not None:
            if not self.send_pending():
                self.link.writable(wire.POLL)
                self.service(0.0)
            return
        if not push and not self.link.writable(0.0):
            if not self.drop_one():
                self.source_ended = True
            self.service(0.0)
            return
        try:
            batch = self.read(wire.POLL)
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
                self.service(wire.POLL)
                self.check_deadline()
                continue
            if self.pending is not None:
                if not self.send_pending():
                    self.link.writable(wire.POLL)
                    self.service(0.0)
                continue
            totals = {
                "sent": self.sent_total,
                "lost_in_transit": self.lost_in_transit,
                "dropped_publish": self.dropped_lagging + self.dropped_no_receiver,
            }
            session = self.session
            self.send_control(wire.END, self.sent, json.dumps(totals).encode())
            while self.session == session and not self.end_acked:
                self.service(wire.POLL)
                if time.monotonic() - self.ended_at > self.settings.timeout + wire.SILENCE_LIMIT:
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
