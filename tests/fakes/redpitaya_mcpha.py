"""A fake of the RedPitaya MCPHA-style waveform server (TCP, 127.0.0.1 only).

Wire format as in ``redpitaya-protocols.md`` §1: the client sends 64-bit little-endian words
``code << 56 | channel << 52 | value`` (commands may arrive split across reads); after
"start daq N" (code 31; requests add up, counted per connection here, globally on the board)
the server sends N waveforms back to back, each ``total`` (code 18) pairs of little-endian
int16 (IN1, IN2). Waveform ``n`` (counted over the server's lifetime) carries
:func:`fakes.waveforms.ramp` on IN1 and its negative on IN2, negated per input when the
negator (code 5) is set. Its last ``corrupt_tail`` samples are garbage, as on the real board,
which is why clients request extra samples.

Options simulate trouble: ``chunk`` sends every waveform in random pieces (partial reads),
``drop_after`` closes the connection in the middle of a waveform, ``silent`` never sends.
The server is bounded: it serves connections one at a time (like the board) for at most
``lifetime`` seconds and sends at most ``max_waveforms`` waveforms.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading

import numpy as np

from .tcp_server import FakeTcpServer
from .waveforms import PERIOD, STEP

MASK = 0x000F_FFFF_FFFF_FFFF
GARBAGE = struct.pack("<hh", 32767, 32767)


def decode(word: int) -> tuple[int, int, int]:
    """``(code, channel, value)`` of a command word."""
    return word >> 56, (word >> 52) & 0xF, word & MASK


def signed(value: int, bits: int = 52) -> int:
    """Two's complement reading of a command value."""
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


class _Connection:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.daq_count = 0
        self.closed = False
        self.negators = [0, 0]
        self.total = 0
        self.sent = 0


class FakeMcphaServer(FakeTcpServer):
    """Fake MCPHA server; use as a context manager (``with FakeMcphaServer() as srv``).

    Attributes:
        port: The listening port on 127.0.0.1.
        commands: Decoded ``(code, channel, value)`` commands, one list per connection.
        sent: Waveforms sent completely.
        connections: Connections accepted.
        errors: Unexpected exceptions of the server threads (should stay empty).
    """

    thread_name = "fake-mcpha"

    def __init__(
        self,
        *,
        chunk: int = 0,
        drop_after: int | None = None,
        drop_connections: int = 1,
        silent: bool = False,
        corrupt_tail: int = 5,
        lifetime: float = 30.0,
        max_waveforms: int = 10_000_000,
        seed: int = 0,
    ) -> None:
        super().__init__(chunk=chunk, lifetime=lifetime, seed=seed)
        self.drop_after = drop_after
        self.drop_connections = drop_connections
        self.silent = silent
        self.corrupt_tail = corrupt_tail
        self.max_waveforms = max_waveforms
        self.commands: list[list[tuple[int, int, int]]] = []
        self.sent = 0
        self._next = 0
        self._patterns: dict[tuple[int, int, int], memoryview] = {}

    # ----- serving -----

    def _handle(self, conn: socket.socket, number: int) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        state = _Connection()
        cmds: list[tuple[int, int, int]] = []
        self.commands.append(cmds)
        sender = threading.Thread(
            target=self._send_loop, args=(conn, state, number), name="fake-mcpha-send"
        )
        sender.start()
        pending = bytearray()
        try:
            while self._running() and not state.closed:
                ready, _, _ = select.select([conn], [], [], 0.05)
                if not ready:
                    continue
                try:
                    data = conn.recv(4096)
                except OSError:
                    break
                if not data:
                    break
                pending += data
                while len(pending) >= 8:
                    (word,) = struct.unpack_from("<Q", pending)
                    del pending[:8]
                    cmd = decode(word)
                    cmds.append(cmd)
                    self._apply(state, cmd)
        finally:
            with state.cond:
                state.closed = True
                state.cond.notify_all()
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            sender.join()

    def _apply(self, state: _Connection, cmd: tuple[int, int, int]) -> None:
        code, chan, value = cmd
        with state.cond:
            if code == 5 and chan in (0, 1):
                state.negators[chan] = int(value == 1)
            elif code == 18:
                state.total = value
            elif code == 31:
                state.daq_count += value
                state.cond.notify_all()

    # ----- waveforms -----

    def _pattern(self, state: _Connection) -> memoryview:
        key = (state.total, *state.negators)
        mv = self._patterns.get(key)
        if mv is None:
            k = np.arange(PERIOD + state.total)
            base = (k % PERIOD - PERIOD // 2).astype(np.int16)
            pairs = np.empty((len(k), 2), dtype="<i2")
            pairs[:, 0] = -base if state.negators[0] else base
            pairs[:, 1] = base if state.negators[1] else -base
            mv = self._patterns[key] = memoryview(pairs.tobytes())
        return mv

    def _parts(self, state: _Connection, n: int) -> list[memoryview | bytes]:
        total = state.total
        bad = min(self.corrupt_tail, total)
        off = (n * STEP) % PERIOD
        pattern = self._pattern(state)
        return [pattern[off * 4 : (off + total - bad) * 4], GARBAGE * bad]

    def _send_loop(self, conn: socket.socket, state: _Connection, number: int) -> None:
        try:
            while True:
                with state.cond:
                    while (
                        (state.daq_count == 0 or self.silent or self.sent >= self.max_waveforms)
                        and not state.closed
                        and self._running()
                    ):
                        state.cond.wait(0.05)
                    if state.closed or not self._running():
                        return
                    state.daq_count -= 1
                n = self._next
                self._next += 1
                parts = self._parts(state, n)
                if (
                    self.drop_after is not None
                    and number <= self.drop_connections
                    and state.sent == self.drop_after
                ):
                    conn.sendall(parts[0][: len(parts[0]) // 2])
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                for part in parts:
                    self._send(conn, part)
                state.sent += 1
                self.sent += 1
        except OSError:
            return  # the client went away
        except BaseException as e:  # pragma: no cover - reported to the test
            self.errors.append(e)
