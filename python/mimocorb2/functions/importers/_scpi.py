r"""Client of the stock Red Pitaya SCPI server (TCP port 5000).

Text commands end in ``\r\n``; so do replies. One triggered capture: ``ACQ:START``,
``ACQ:TRIG CH1_PE`` (source and edge from the configuration), poll ``ACQ:TRIG:STAT?`` until it
answers ``TD`` (then, on current firmware, ``ACQ:TRIG:FILL?`` until ``1``), then read
``ACQ:SOUR1:DATA?`` and ``ACQ:SOUR2:DATA?``. With ``ACQ:DATA:FORMAT BIN`` and
``ACQ:DATA:UNITS RAW`` each reply is an IEEE-488.2 definite-length block
``#<d><n…><payload>\r\n`` with big-endian int16 samples.

The trigger sits at sample ``8192 - ACQ:TRIG:DLY`` of the 16384-sample data buffer. The
client sets the delay to ``8192 - number_of_samples_before_trigger`` and keeps the first
``data_length`` samples, so the trigger is at index ``number_of_samples_before_trigger`` of
every event, as with the MCPHA server. Negation is done here, in software.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from mimocorb2.functions.importers._common import (
    DeviceError,
    StopRequested,
    recv_exact,
    send_all,
)
from mimocorb2.functions.importers._rp_client import RedPitayaClient
from mimocorb2.functions.importers._rp_settings import SCPI_BUFFER_SAMPLES, Settings
from mimocorb2.mimo_buffer import BufferWriter

TRIGGER_CENTER = SCPI_BUFFER_SAMPLES // 2
MAX_LINE = 1024
"""Longest text reply accepted (a longer one is a protocol error)."""
POLL_PAUSE = 0.0005
"""Seconds between two ``ACQ:TRIG:STAT?`` polls."""

HINT = (
    "the SCPI server is not running on the board (start it in the board's web interface: "
    "Development → SCPI server), or the board runs the MCPHA image (then use 'protocol: mcpha')"
)


class ScpiClient(RedPitayaClient):
    """One connection to the SCPI server (arguments as :class:`RedPitayaClient`)."""

    def __init__(
        self, settings: Settings, stopped: Callable[[], bool], logger: logging.Logger
    ) -> None:
        """Allocates the receive buffers; does not connect yet."""
        super().__init__(settings, stopped, logger)
        self._inbox = bytearray(64 * 1024)  # bytes received beyond the last reply
        self._in = memoryview(self._inbox)
        self._start = 0
        self._end = 0
        capacity = 2 * SCPI_BUFFER_SAMPLES
        self._payload = [bytearray(capacity), bytearray(capacity)]
        self._samples = [np.frombuffer(b, dtype=">i2") for b in self._payload]
        edge = "PE" if settings.trigger_slope == "rising" else "NE"
        self._trigger = f"CH{settings.trigger_source[-1]}_{edge}"

    # ----- connection -----

    def open(self) -> None:
        """Connects and configures the acquisition.

        Raises:
            DeviceError: If the board cannot be reached.
        """
        s = self.s
        self._connect(HINT)
        self._start = self._end = 0
        volts = s.trigger_level * s.volts_per_count
        for cmd in (
            "ACQ:RST",
            f"ACQ:DEC {s.sample_rate}",
            "ACQ:DATA:FORMAT BIN",
            "ACQ:DATA:UNITS RAW",
            f"ACQ:TRIG:LEV {volts:.6f}",
            f"ACQ:TRIG:DLY {TRIGGER_CENTER - s.pre_trigger}",
        ):
            self.send(cmd)

    def send(self, cmd: str) -> None:
        """Sends one command line."""
        assert self.sock is not None
        send_all(self.sock, (cmd + "\r\n").encode("ascii"), self.s.timeout, f"'{cmd}'")

    # ----- replies -----

    def _fill(self, what: str) -> None:
        """Receives more bytes into the inbox (at least one)."""
        assert self.sock is not None
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._inbox):
            n = self._end - self._start
            self._in[:n] = self._in[self._start : self._end]
            self._start, self._end = 0, n
        room = len(self._inbox) - self._end
        # one byte at least, whatever arrives within the stall limit
        stall = self.s.timeout
        t0 = time.monotonic()
        while True:
            try:
                k = self.sock.recv_into(self._in[self._end :], room)
            except TimeoutError:
                if time.monotonic() - t0 >= stall:
                    raise DeviceError(
                        f"the board did not answer {what} within {stall:g} s (config key 'timeout')"
                    ) from None
                if self.stopped():
                    raise StopRequested from None
                continue
            except OSError as e:
                raise DeviceError(f"the connection was lost while reading {what}: {e}") from None
            if k == 0:
                raise DeviceError(f"the board closed the connection (waiting for {what})")
            self._end += k
            return

    def read_line(self, what: str) -> str:
        """Reads one reply line (without its line end).

        Raises:
            DeviceError: On a timeout, a lost connection or an overlong line.
        """
        scanned = 0  # bytes after _start known to hold no line end (_fill may move them)
        while True:
            i = self._inbox.find(b"\n", self._start + scanned, self._end)
            if i >= 0:
                line = bytes(self._in[self._start : i])
                self._start = i + 1
                return line.rstrip(b"\r").decode("ascii", "replace").strip()
            if self._end - self._start > MAX_LINE:
                raise DeviceError(f"malformed reply to {what}: no line end within {MAX_LINE} bytes")
            scanned = self._end - self._start
            self._fill(what)

    def _read_exact(self, into: memoryview, n: int, what: str) -> None:
        """Reads ``n`` bytes: first what the inbox holds, the rest straight into ``into``."""
        have = min(n, self._end - self._start)
        if have:
            into[:have] = self._in[self._start : self._start + have]
            self._start += have
        if have < n:
            assert self.sock is not None
            recv_exact(
                self.sock,
                into[have:],
                n - have,
                self.s.timeout,
                self.s.timeout,
                self.stopped,
                what,
            )

    def _header_bytes(self, n: int, what: str) -> bytes:
        while self._end - self._start < n:
            self._fill(what)
        out = bytes(self._in[self._start : self._start + n])
        self._start += n
        return out

    def read_block(self, into: bytearray, what: str) -> int:
        """Reads one IEEE-488.2 definite-length block into ``into``; returns its length.

        Raises:
            DeviceError: For a malformed block (with what was wrong), a timeout or a lost
                connection.
        """
        head = self._header_bytes(2, what)
        if head[:1] != b"#":
            rest = self._peek_text()
            raise DeviceError(
                f"malformed reply to {what}: expected a binary block starting with '#', got "
                f"{(head + rest)!r} (is 'ACQ:DATA:FORMAT BIN' supported by the firmware?)"
            )
        if not head[1:2].isdigit() or head[1:2] == b"0":
            raise DeviceError(
                f"malformed block in the reply to {what}: the header {head!r} must give the "
                "number of length digits (1-9)"
            )
        digits = self._header_bytes(int(head[1:2]), what)
        if not digits.isdigit():
            raise DeviceError(
                f"malformed block in the reply to {what}: length field {digits!r} is not a number"
            )
        n = int(digits)
        if n % 2 or n > len(into):
            raise DeviceError(
                f"malformed block in the reply to {what}: {n} bytes announced; expected an even "
                f"number of at most {len(into)} (int16 samples)"
            )
        self._read_exact(memoryview(into), n, what)
        end = self._header_bytes(2, what)
        if end == b"\r\n":
            return n
        if end[:1] == b"\n":
            self._start -= 1
            return n
        raise DeviceError(
            f"malformed block in the reply to {what}: {n} payload bytes not followed by a line "
            f"end (got {end!r})"
        )

    def _peek_text(self) -> bytes:
        return bytes(self._in[self._start : min(self._end, self._start + 40)])

    def query(self, cmd: str) -> str:
        """Sends a query and returns its reply line."""
        self.send(cmd)
        return self.read_line(f"'{cmd}'")

    # ----- acquisition -----

    def _wait_for_trigger(self) -> None:
        s = self.s
        t0 = time.monotonic()
        forced = False
        while True:
            state = self.query("ACQ:TRIG:STAT?")
            if state == "TD":
                break
            if state != "WAIT":
                raise DeviceError(f"unexpected reply {state!r} to 'ACQ:TRIG:STAT?'")
            waited = time.monotonic() - t0
            if s.trigger_mode == "auto" and not forced and waited >= s.auto_trigger_after:
                self.send("ACQ:TRIG NOW")
                forced = True
            if s.trigger_timeout is not None and waited >= s.trigger_timeout:
                raise DeviceError(
                    f"no trigger within {s.trigger_timeout:g} s (config key 'trigger_timeout')"
                )
            if self.stopped():
                raise StopRequested
            time.sleep(POLL_PAUSE)
        if s.scpi_fill_check:
            while True:
                fill = self.query("ACQ:TRIG:FILL?")
                if fill == "1":
                    return
                if fill != "0":
                    raise DeviceError(
                        f"unexpected reply {fill!r} to 'ACQ:TRIG:FILL?' (firmware older than "
                        "2.0? then set 'scpi_fill_check: false')"
                    )
                if time.monotonic() - t0 >= s.timeout + (s.trigger_timeout or 0.0):
                    raise DeviceError("the capture buffer was not filled after the trigger")
                if self.stopped():
                    raise StopRequested
                time.sleep(POLL_PAUSE)

    def stream(self, writer: BufferWriter, done: int) -> int:
        """Captures waveforms one by one (see :meth:`RedPitayaClient.stream`)."""
        s = self.s
        n = s.data_length
        signs = (-1 if s.negator_IN1 else 1, -1 if s.negator_IN2 else 1)
        self.done = done
        first = True
        while s.max_events is None or done < s.max_events:
            self.send("ACQ:START")
            self.send(f"ACQ:TRIG {self._trigger}")
            self._wait_for_trigger()
            lengths = []
            for ch in (0, 1):
                what = f"'ACQ:SOUR{ch + 1}:DATA?' (waveform {done})"
                self.send(f"ACQ:SOUR{ch + 1}:DATA?")
                lengths.append(self.read_block(self._payload[ch], what))
            if min(lengths) < 2 * n:
                raise DeviceError(
                    f"the board sent {min(lengths) // 2} samples per channel; data_length is "
                    f"{n} (malformed or truncated data block)"
                )
            with writer as (_, data):
                for ch, field in enumerate(("IN1", "IN2")):
                    src = self._samples[ch][:n]
                    if signs[ch] < 0:
                        np.negative(src, out=data[field])
                    else:
                        data[field] = src
            if first:
                self.logger.info("first waveform received from %s", s.address)
                first = False
            done += 1
            self.done = done
        return done
