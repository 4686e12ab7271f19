"""A stand-in for ``picosdk.ps3000a.ps3000a``: the calls the PicoScope importer makes.

Functions take the same arguments as the ctypes wrappers of picosdk (``ctypes.byref`` for
outputs, ``ctypes`` pointers for data buffers) and return PICO status codes (0 = OK). Each
segment of each rapid block is a numbered waveform; channel ``c`` (0 = A) sample ``k`` of waveform
``e`` has the ADC value :func:`adc_value`. Calls are recorded in ``calls``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

MAX_ADC = 32512
PICO_OK = 0
PICO_NOT_FOUND = 3
PICO_NOT_RESPONDING = 7


def adc_value(event: int, channel: int, k: np.ndarray) -> np.ndarray:
    """ADC counts of waveform ``event``, channel index ``channel`` (0 = A), samples ``k``."""
    return (((event * 7 + k + 1000 * channel) % 4096) - 2048) * 8


def expected_mv(event: int, channel: int, length: int, range_mv: float) -> np.ndarray:
    """The mV values the importer should deliver."""
    return (adc_value(event, channel, np.arange(length)) * (range_mv / MAX_ADC)).astype(np.float32)


def _out(ref: Any) -> Any:
    """The ctypes object behind ``ctypes.byref(x)``."""
    return ref._obj


class FakePs3000a:
    """The driver object. Options: ``present`` (a scope is connected), ``ready_polls``
    (IsReady polls before a block is complete), ``fail_after_blocks`` (GetValuesBulk fails
    from that block on, like an unplugged scope), ``never_ready``."""

    PS3000A_CHANNEL: ClassVar[dict[str, int]] = {
        "PS3000A_CHANNEL_A": 0,
        "PS3000A_CHANNEL_B": 1,
        "PS3000A_CHANNEL_C": 2,
        "PS3000A_CHANNEL_D": 3,
        "PS3000A_EXTERNAL": 4,
    }
    PS3000A_COUPLING: ClassVar[dict[str, int]] = {"PS3000A_AC": 0, "PS3000A_DC": 1}
    PS3000A_RANGE: ClassVar[dict[str, int]] = {
        f"PS3000A_{n}": i
        for i, n in enumerate(
            [
                "10MV",
                "20MV",
                "50MV",
                "100MV",
                "200MV",
                "500MV",
                "1V",
                "2V",
                "5V",
                "10V",
                "20V",
                "50V",
            ]
        )
    }
    PS3000A_THRESHOLD_DIRECTION: ClassVar[dict[str, int]] = {
        "PS3000A_ABOVE": 0,
        "PS3000A_BELOW": 1,
        "PS3000A_RISING": 2,
        "PS3000A_FALLING": 3,
        "PS3000A_RISING_OR_FALLING": 4,
    }
    PS3000A_RATIO_MODE: ClassVar[dict[str, int]] = {"PS3000A_RATIO_MODE_NONE": 0}

    def __init__(
        self,
        *,
        present: bool = True,
        ready_polls: int = 2,
        fail_after_blocks: int | None = None,
        never_ready: bool = False,
    ) -> None:
        self.present = present
        self.ready_polls = ready_polls
        self.fail_after_blocks = fail_after_blocks
        self.never_ready = never_ready
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.buffers: dict[tuple[int, int], np.ndarray] = {}
        self.channels: dict[int, tuple[int, int, int, float]] = {}
        self.trigger: tuple[Any, ...] | None = None
        self.segments = 1
        self.blocks_started = 0
        self.blocks_read = 0
        self.events = 0
        self.polls = 0
        self.open = False

    def _log(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def ps3000aOpenUnit(self, handle_ref: Any, serial: Any) -> int:  # noqa: N802
        self._log("OpenUnit")
        if not self.present:
            return PICO_NOT_FOUND
        _out(handle_ref).value = 1
        self.open = True
        return PICO_OK

    def ps3000aChangePowerSource(self, handle: Any, status: int) -> int:  # noqa: N802
        self._log("ChangePowerSource", status)
        return PICO_OK

    def ps3000aMaximumValue(self, handle: Any, value_ref: Any) -> int:  # noqa: N802
        _out(value_ref).value = MAX_ADC
        return PICO_OK

    def ps3000aSetChannel(  # noqa: N802
        self, handle: Any, channel: int, enabled: int, coupling: int, rng: int, offset: float
    ) -> int:
        self._log("SetChannel", channel, enabled, coupling, rng, offset)
        self.channels[channel] = (enabled, coupling, rng, offset)
        return PICO_OK

    def ps3000aSetSimpleTrigger(self, handle: Any, *args: Any) -> int:  # noqa: N802
        self._log("SetSimpleTrigger", *args)
        self.trigger = args
        return PICO_OK

    def ps3000aGetTimebase2(  # noqa: N802
        self,
        handle: Any,
        timebase: int,
        n: int,
        interval_ref: Any,
        oversample: int,
        max_ref: Any,
        segment: int,
    ) -> int:
        self._log("GetTimebase2", timebase, n)
        _out(interval_ref).value = 4.0 * 2 ** min(timebase, 2)
        _out(max_ref).value = 1 << 26
        return PICO_OK

    def ps3000aMemorySegments(self, handle: Any, n: int, max_ref: Any) -> int:  # noqa: N802
        self._log("MemorySegments", n)
        self.segments = n
        _out(max_ref).value = (1 << 26) // n
        return PICO_OK

    def ps3000aSetNoOfCaptures(self, handle: Any, n: int) -> int:  # noqa: N802
        self._log("SetNoOfCaptures", n)
        return PICO_OK

    def ps3000aSetDataBuffer(  # noqa: N802
        self, handle: Any, channel: int, ptr: Any, n: int, segment: int, mode: int
    ) -> int:
        self.buffers[(channel, segment)] = np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_int16)), shape=(n,)
        )
        return PICO_OK

    def ps3000aRunBlock(self, handle: Any, pre: int, post: int, timebase: int, *rest: Any) -> int:  # noqa: N802
        self._log("RunBlock", pre, post, timebase)
        self.blocks_started += 1
        self.polls = 0
        return PICO_OK

    def ps3000aIsReady(self, handle: Any, ready_ref: Any) -> int:  # noqa: N802
        self.polls += 1
        _out(ready_ref).value = int(not self.never_ready and self.polls > self.ready_polls)
        return PICO_OK

    def ps3000aGetValuesBulk(  # noqa: N802
        self, handle: Any, n_ref: Any, first: int, last: int, ratio: int, mode: int, ovf: Any
    ) -> int:
        if self.fail_after_blocks is not None and self.blocks_read >= self.fail_after_blocks:
            return PICO_NOT_RESPONDING
        self.blocks_read += 1
        n = int(_out(n_ref).value)
        k = np.arange(n)
        for seg in range(first, last + 1):
            for (channel, s), buf in self.buffers.items():
                if s == seg:
                    buf[:n] = adc_value(self.events, channel, k)
            self.events += 1
        return PICO_OK

    def ps3000aStop(self, handle: Any) -> int:  # noqa: N802
        self._log("Stop")
        return PICO_OK

    def ps3000aCloseUnit(self, handle: Any) -> int:  # noqa: N802
        self._log("CloseUnit")
        self.open = False
        return PICO_OK


def make_driver(config: Mapping[str, Any]) -> FakePs3000a:
    """Factory for the importer's ``_driver`` hook: options from ``_fake`` in the config."""
    return FakePs3000a(**dict(config.get("_fake") or {}))
