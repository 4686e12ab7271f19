"""Client of the MCPHA-style oscilloscope server of the RedPitaya (TCP port 1001).

Client → board: 64-bit little-endian command words ``code << 56 | channel << 52 | value``
(value: 52 bits, two's complement for negative numbers); settings get no reply. After
"start daq N" (code 31) the board sends N waveforms back to back, each ``total`` pairs of
little-endian int16 (IN1, IN2, IN1, …), where ``total = data_length + extra_samples``.

That wire format is the slot layout of a ``{IN1: int16, IN2: int16}`` buffer, so each waveform
is received straight into a ring slot (``recv_into`` on the slot's bytes); the
``extra_samples`` tail goes into one scratch buffer. Nothing is allocated per waveform.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

import numpy as np

from mimocorb2.functions.importers._common import recv_exact, send_all
from mimocorb2.functions.importers._rp_client import RedPitayaClient
from mimocorb2.functions.importers._rp_settings import (
    INPUTS,
    TRIGGER_MODES,
    TRIGGER_SLOPES,
    Settings,
)
from mimocorb2.mimo_buffer import BufferWriter

VALUE_MASK = 0x000F_FFFF_FFFF_FFFF
_PACK = struct.Struct("<Q").pack

RESET_OSCILLOSCOPE = 2
SET_SAMPLE_RATE = 4
SET_NEGATOR = 5
SET_TRIGGER_SOURCE = 13
SET_TRIGGER_SLOPE = 14
SET_TRIGGER_MODE = 15
SET_TRIGGER_LEVEL = 16
SET_PRE_TRIGGER = 17
SET_TOTAL_SAMPLES = 18
START_OSCILLOSCOPE = 19
START_DAQ = 31

SETS_IN_FLIGHT = 2
"""Sets requested ahead: the next "start daq" is sent while the current set arrives, so the
board never idles waiting for the client (the server adds requests to its count)."""

HINT = (
    "the MCPHA waveform server is not running on the board (start it, e.g. from the board's "
    "web interface), or the board runs the stock image (then set 'protocol: scpi')"
)


def command(code: int, channel: int, value: int) -> bytes:
    """Encodes one command word."""
    return _PACK((code << 56) | (channel << 52) | (int(value) & VALUE_MASK))


def setup_commands(s: Settings) -> bytes:
    """The configuration sequence, in the reference's order, ending with starting the scope."""
    return b"".join(
        (
            command(SET_SAMPLE_RATE, 0, s.sample_rate),
            command(SET_NEGATOR, INPUTS["IN1"], int(s.negator_IN1)),
            command(SET_NEGATOR, INPUTS["IN2"], int(s.negator_IN2)),
            command(SET_TRIGGER_SLOPE, 0, TRIGGER_SLOPES[s.trigger_slope]),
            command(SET_TRIGGER_MODE, 0, TRIGGER_MODES[s.trigger_mode]),
            command(SET_TRIGGER_LEVEL, 0, s.trigger_level),
            command(SET_PRE_TRIGGER, 0, s.pre_trigger),
            command(SET_TRIGGER_SOURCE, INPUTS[s.trigger_source], 0),
            command(SET_TOTAL_SAMPLES, 0, s.data_length + s.extra_samples),
            command(RESET_OSCILLOSCOPE, 0, 0),
            command(START_OSCILLOSCOPE, 0, 0),
        )
    )


class McphaClient(RedPitayaClient):
    """One connection to the MCPHA server (arguments as :class:`RedPitayaClient`)."""

    def __init__(
        self, settings: Settings, stopped: Callable[[], bool], logger: logging.Logger
    ) -> None:
        """Prepares the scratch buffer; does not connect yet."""
        super().__init__(settings, stopped, logger)
        self.wave_bytes = settings.data_length * 4
        self.tail_bytes = settings.extra_samples * 4
        self._tail = memoryview(bytearray(max(self.tail_bytes, 1)))
        self._views: dict[int, tuple[np.ndarray, memoryview]] = {}

    def open(self) -> None:
        """Connects and configures the oscilloscope.

        Raises:
            DeviceError: If the board cannot be reached.
        """
        sock = self._connect(HINT)
        send_all(sock, setup_commands(self.s), self.s.timeout, "the configuration commands")

    def _bytes_of(self, data: np.ndarray) -> memoryview:
        """The writable bytes of a slot view (cached per slot view)."""
        hit = self._views.get(id(data))
        if hit is not None and hit[0] is data:
            return hit[1]
        mv = memoryview(data.view(np.uint8)).cast("B")
        self._views[id(data)] = (data, mv)
        return mv

    def stream(self, writer: BufferWriter, done: int) -> int:
        """Receives waveforms sent back to back (see :meth:`RedPitayaClient.stream`).

        The next set of waveforms is requested while the current one arrives.
        """
        assert self.sock is not None
        s = self.s
        sock = self.sock
        set_size = s.set_size
        limit = s.max_events
        wave_bytes, tail_bytes, tail = self.wave_bytes, self.tail_bytes, self._tail
        idle, stall, stopped = s.trigger_timeout, s.timeout, self.stopped
        self.done = done
        outstanding = 0
        first = True
        while limit is None or done < limit:
            while outstanding <= set_size * (SETS_IN_FLIGHT - 1) and (
                limit is None or done + outstanding < limit
            ):
                n = set_size if limit is None else min(set_size, limit - done - outstanding)
                send_all(sock, command(START_DAQ, 0, n), s.timeout, "'start daq'")
                outstanding += n
            with writer as (_, data):
                recv_exact(
                    sock,
                    self._bytes_of(data),
                    wave_bytes,
                    idle,
                    stall,
                    stopped,
                    f"waveform {done}",
                )
                if tail_bytes:
                    recv_exact(
                        sock, tail, tail_bytes, stall, stall, stopped, f"waveform {done} (tail)"
                    )
            if first:
                self.logger.info("first waveform received from %s", s.address)
                first = False
            done += 1
            self.done = done
            outstanding -= 1
        return done
