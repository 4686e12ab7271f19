"""A fake of the stock Red Pitaya SCPI server (TCP, 127.0.0.1 only).

As in ``redpitaya-protocols.md`` §2: text commands end in ``\\r\\n`` (they may arrive split or
several in one read), replies too. ``ACQ:START`` arms a new capture (numbered over the server's
lifetime), ``ACQ:TRIG <src>`` sets the trigger, ``ACQ:TRIG:STAT?`` answers ``WAIT`` for the
first ``wait_polls`` polls and ``TD`` afterwards (``ACQ:TRIG NOW`` triggers at once),
``ACQ:TRIG:FILL?`` answers ``1`` once triggered. ``ACQ:SOUR<n>:DATA?`` answers the whole
16384-sample buffer as an IEEE-488.2 block ``#<d><n…><payload>\\r\\n`` of big-endian int16. The
trigger sits at sample ``8192 - DLY`` (``ACQ:TRIG:DLY``); buffer sample ``j`` of capture ``n``
is :func:`fakes.waveforms.ramp` ``(n, j - (8192 - DLY))`` on IN1 and its negative on IN2.

Trouble on request: ``chunk`` sends replies in random pieces, ``drop_after`` closes the
connection in the middle of the data block of that capture, ``malformed`` (``header``,
``length``, ``odd``, ``short``, ``terminator``) spoils the block of capture ``malformed_at``,
``silent`` never answers. Bounded by ``lifetime`` seconds; one connection at a time.
"""

from __future__ import annotations

import contextlib
import select
import socket

import numpy as np

from .tcp_server import FakeTcpServer
from .waveforms import ramp

SAMPLES = 16384
CENTER = SAMPLES // 2


class FakeScpiServer(FakeTcpServer):
    """Fake SCPI server; use as a context manager.

    Attributes:
        port: The listening port on 127.0.0.1.
        commands: The command lines received, one list per connection.
        captures: Captures whose data was sent completely.
        errors: Unexpected exceptions of the server thread (should stay empty).
    """

    thread_name = "fake-scpi"

    def __init__(
        self,
        *,
        chunk: int = 0,
        wait_polls: int = 2,
        drop_after: int | None = None,
        malformed: str | None = None,
        malformed_at: int = 0,
        silent: bool = False,
        fill_supported: bool = True,
        lifetime: float = 30.0,
        seed: int = 0,
    ) -> None:
        super().__init__(chunk=chunk, lifetime=lifetime, seed=seed)
        self.wait_polls = wait_polls
        self.drop_after = drop_after
        self.malformed = malformed
        self.malformed_at = malformed_at
        self.silent = silent
        self.fill_supported = fill_supported
        self.commands: list[list[str]] = []
        self.captures = 0
        self._capture = -1

    # ----- one connection -----

    def _handle(self, conn: socket.socket, number: int) -> None:
        with contextlib.suppress(OSError):  # the client went away
            self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lines: list[str] = []
        self.commands.append(lines)
        self.state = {"dly": 0, "armed": False, "triggered": False, "polls": 0, "src": None}
        pending = bytearray()
        while self._running():
            ready, _, _ = select.select([conn], [], [], 0.05)
            if not ready:
                continue
            data = conn.recv(4096)
            if not data:
                return
            pending += data
            while True:
                i = pending.find(b"\n")
                if i < 0:
                    break
                line = pending[:i].rstrip(b"\r").decode("ascii").strip()
                del pending[: i + 1]
                lines.append(line)
                if not self._command(conn, line):
                    return

    def _reply(self, conn: socket.socket, data: bytes) -> None:
        if not self.silent:
            self._send(conn, data)

    def _command(self, conn: socket.socket, line: str) -> bool:
        """Executes one command; False ends the connection."""
        st = self.state
        cmd, _, arg = line.partition(" ")
        cmd = cmd.upper()
        if cmd == "ACQ:RST":
            st.update(dly=0, armed=False, triggered=False, src=None)
        elif cmd in ("ACQ:DEC", "ACQ:DATA:FORMAT", "ACQ:DATA:UNITS", "ACQ:TRIG:LEV"):
            st[cmd] = arg
        elif cmd == "ACQ:TRIG:DLY":
            st["dly"] = int(arg)
        elif cmd == "ACQ:START":
            self._capture += 1
            st.update(armed=True, triggered=False, polls=0, src=None)
        elif cmd == "ACQ:TRIG":
            st["src"] = arg
            if arg == "NOW" and st["armed"]:
                st["triggered"] = True
        elif cmd == "ACQ:TRIG:STAT?":
            if st["armed"] and st["src"]:
                st["polls"] += 1
                if st["polls"] > self.wait_polls:
                    st["triggered"] = True
            self._reply(conn, b"TD\r\n" if st["triggered"] else b"WAIT\r\n")
        elif cmd == "ACQ:TRIG:FILL?":
            if self.fill_supported:
                self._reply(conn, b"1\r\n" if st["triggered"] else b"0\r\n")
            else:
                self._reply(conn, b"ERR!\r\n")
        elif cmd in ("ACQ:SOUR1:DATA?", "ACQ:SOUR2:DATA?"):
            return self._data(conn, 1 if cmd == "ACQ:SOUR1:DATA?" else 2)
        else:
            self._reply(conn, b"ERR!\r\n")
        return True

    def _data(self, conn: socket.socket, channel: int) -> bool:
        n = self._capture
        trigger = CENTER - self.state["dly"]
        values = ramp(n, np.arange(SAMPLES) - trigger)
        if channel == 2:
            values = -values
        payload = values.astype(">i2").tobytes()
        length = str(len(payload)).encode()
        block = b"#" + str(len(length)).encode() + length + payload + b"\r\n"
        if self.malformed and n == self.malformed_at:
            kind = self.malformed
            if kind == "header":
                block = b"X" + block[1:]
            elif kind == "length":
                block = b"#5ABCDE" + payload + b"\r\n"
            elif kind == "odd":
                block = b"#5" + b"%05d" % (len(payload) - 1) + payload[:-1] + b"\r\n"
            elif kind == "short":
                block = b"#3200" + payload[:200] + b"\r\n"
            elif kind == "terminator":
                block = block[:-2] + b"XY"
        if self.drop_after is not None and n == self.drop_after:
            self._reply(conn, block[: len(block) // 2])
            conn.shutdown(socket.SHUT_RDWR)
            return False
        self._reply(conn, block)
        if channel == 2:
            self.captures += 1
        return True
