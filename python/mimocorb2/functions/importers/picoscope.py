"""PicoScope importer: ``importers.picoscope.source`` (3000A series, rapid block mode).

The oscilloscope is driven through Pico's Python wrapper ``picosdk`` (``picosdk.ps3000a``), an
optional dependency: ``pip install picosdk`` plus Pico's C drivers (the PicoSDK, from
https://www.picotech.com/downloads). Both are imported only when the worker runs (and by
:func:`validate_config`, to say what is missing).

For tests the driver can be replaced: :func:`load_driver` is the one place that loads it (tests
may monkeypatch it), and the config key ``_driver: "<file.py or module>:<factory>"`` names a
factory called with the worker configuration that returns a stand-in for the ``ps3000a``
object of ``picosdk.ps3000a`` (used by tests that run the worker in its own process).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2.exceptions import BufferEndedError
from mimocorb2.functions.importers._common import (
    ConfigChecker,
    DeviceError,
    StopRequested,
    as_dtype,
    config_error,
    dtype_text,
)
from mimocorb2.mimo_buffer import BufferWriter
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import Importer, SetupError, UfuncError

__all__ = [
    "CHANNELS",
    "COUPLINGS",
    "RANGES_MV",
    "TRIGGER_DIRECTIONS",
    "load_driver",
    "source",
    "validate_config",
]

CHANNELS = ("chA", "chB", "chC", "chD")
"""Sink field names, one per input (any subset, in any order)."""

RANGES_MV = {
    "10MV": 10,
    "20MV": 20,
    "50MV": 50,
    "100MV": 100,
    "200MV": 200,
    "500MV": 500,
    "1V": 1000,
    "2V": 2000,
    "5V": 5000,
    "10V": 10000,
    "20V": 20000,
    "50V": 50000,
}
"""Input ranges (``PS3000A_<name>``) and their full scale in mV."""

COUPLINGS = ("DC", "AC")
TRIGGER_SOURCES = ("A", "B", "C", "D", "EXT")
TRIGGER_DIRECTIONS = ("RISING", "FALLING", "ABOVE", "BELOW", "RISING_OR_FALLING")
EXT_RANGE_MV = 5000
"""Full scale of the external trigger input."""

INSTALL_HINT = (
    "install Pico's Python wrapper with 'pip install picosdk' and Pico's C drivers (the "
    "PicoSDK for your system, from https://www.picotech.com/downloads)"
)

POLL_PAUSE = 0.001
"""Seconds between two readiness checks of a capture."""

KNOWN_KEYS = (
    "channel_coupling",
    "channel_range",
    *(f"channel{c[-1]}_range" for c in CHANNELS),
    "analogue_offset",
    *(f"analogue_offset_{c}" for c in CHANNELS),
    "trigger_channel",
    "trigger_level",
    "trigger_threshold",
    "trigger_direction",
    "pre_trigger_samples",
    "post_trigger_samples",
    "timebase",
    "number_of_memory_segments",
    "auto_trigger_ms",
    "trigger_timeout",
    "max_events",
    "_driver",
)


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one PicoScope importer."""

    channels: tuple[str, ...]
    coupling: str
    ranges: dict[str, str]
    offsets: dict[str, float]
    trigger_channel: str
    trigger_level_mv: float
    trigger_direction: str
    pre_trigger: int
    post_trigger: int
    timebase: int
    segments: int
    auto_trigger_ms: int
    trigger_timeout: float | None
    max_events: int | None
    data_length: int


def _range_name(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    name = value.strip().upper().replace(" ", "")
    return name if name in RANGES_MV else None


def parse_settings(
    config: Mapping[str, Any], sink_dtype: Any, data_length: int | None
) -> tuple[Settings | None, list[str]]:
    """Checks a configuration (see :func:`validate_config`); returns settings or messages."""
    c = ConfigChecker(config)
    c.typos(KNOWN_KEYS)
    channels: tuple[str, ...] = CHANNELS
    dtype = None
    try:
        dtype = as_dtype(sink_dtype)
    except (TypeError, ValueError) as e:
        c.error("", f"the sink's data_dtype is not a valid data type ({e})")
    if dtype is not None:
        names = dtype.names or ()
        fields = dtype.fields or {}
        bad = [n for n in names if n not in CHANNELS]
        not_float = [n for n in names if n in CHANNELS and fields[n][0].kind != "f"]
        if bad or not names:
            c.error(
                "",
                f"the sink's data_dtype must have fields named chA, chB, chC and/or chD (one "
                f"per input, values in mV), got {dtype_text(dtype)}",
            )
        elif not_float:
            c.error(
                "",
                f"the sink fields {', '.join(not_float)} must be float32 or float64 (values in "
                f"mV; float32 recommended), got {dtype_text(dtype)}",
            )
        else:
            channels = tuple(names)
    coupling = c.choice("channel_coupling", COUPLINGS, default="DC")
    default_range = "20V"
    if "channel_range" in config:
        name = _range_name(config["channel_range"])
        if name is None:
            c.error(
                "channel_range",
                f"{config['channel_range']!r} is not a range; use one of {', '.join(RANGES_MV)}",
            )
        else:
            default_range = name
    ranges = {}
    for ch in CHANNELS:
        key = f"channel{ch[-1]}_range"
        if key in config:
            name = _range_name(config[key])
            if name is None:
                c.error(key, f"{config[key]!r} is not a range; use one of {', '.join(RANGES_MV)}")
                continue
            ranges[ch] = name
        else:
            ranges[ch] = default_range
    default_offset = c.number("analogue_offset", default=0.0, lo=-50.0, hi=50.0, example="0.0")
    offsets = {}
    for ch in CHANNELS:
        value = c.number(f"analogue_offset_{ch}", default=None, lo=-50.0, hi=50.0)
        offsets[ch] = value if value is not None else (default_offset or 0.0)
    trigger_channel = c.choice("trigger_channel", TRIGGER_SOURCES, default="A")
    if trigger_channel not in (None, "EXT") and f"ch{trigger_channel}" not in channels:
        c.error(
            "trigger_channel",
            f"channel {trigger_channel} is not recorded (sink fields: {', '.join(channels)}); "
            "trigger on a recorded channel or on EXT",
        )
    if "trigger_level" in config and "trigger_threshold" in config:
        c.error("trigger_threshold", "give either trigger_level or trigger_threshold, not both")
    level_key = "trigger_threshold" if "trigger_threshold" in config else "trigger_level"
    level = c.number(level_key, example="50.0")
    if level is not None and trigger_channel is not None:
        full = (
            EXT_RANGE_MV
            if trigger_channel == "EXT"
            else RANGES_MV.get(ranges.get(f"ch{trigger_channel}", "20V"), 20000)
        )
        if abs(level) > full:
            c.error(
                level_key,
                f"{level} mV is outside the range of the trigger input (±{full} mV)",
            )
    direction = c.choice("trigger_direction", TRIGGER_DIRECTIONS, default="RISING")
    pre = c.integer("pre_trigger_samples", lo=0, example="100")
    post = c.integer("post_trigger_samples", default=None, lo=0)
    timebase = c.integer("timebase", lo=0, hi=2**32 - 1, example="2")
    segments = c.integer("number_of_memory_segments", default=1, lo=1, hi=1_000_000)
    auto_ms = c.integer("auto_trigger_ms", default=0, lo=0, hi=32767)
    trigger_timeout = c.number("trigger_timeout", default=None, lo=0.0, strict_lo=True)
    max_events = c.integer("max_events", default=None, lo=1)
    driver = config.get("_driver")
    if driver is not None and (not isinstance(driver, str) or ":" not in driver):
        c.error("_driver", "expected '<file.py or module>:<factory>' (a testing hook)")
    if data_length is not None:
        if data_length < 1:
            c.error("", f"the sink's data_length must be at least 1, got {data_length}")
        if pre is not None and pre > data_length:
            c.error(
                "pre_trigger_samples",
                f"{pre} is more than the sink's data_length ({data_length} samples per event)",
            )
        elif pre is not None and post is not None and pre + post != data_length:
            c.error(
                "post_trigger_samples",
                f"pre_trigger_samples + post_trigger_samples = {pre + post} must equal the "
                f"sink's data_length ({data_length}); or leave post_trigger_samples out",
            )
    if c.errors:
        return None, c.errors
    length = int(data_length or 0)
    return (
        Settings(
            channels=channels,
            coupling=coupling,
            ranges=ranges,
            offsets=offsets,
            trigger_channel=trigger_channel,
            trigger_level_mv=level,
            trigger_direction=direction,
            pre_trigger=pre,
            post_trigger=length - pre,
            timebase=timebase,
            segments=segments,
            auto_trigger_ms=auto_ms,
            trigger_timeout=trigger_timeout,
            max_events=max_events,
            data_length=length,
        ),
        [],
    )


def driver_problem() -> str | None:
    """Why the real driver cannot be used (None if ``picosdk.ps3000a`` loads)."""
    if importlib.util.find_spec("picosdk") is None:
        return f"the Python package 'picosdk' is not installed; {INSTALL_HINT}"
    try:
        importlib.import_module("picosdk.ps3000a")
    except Exception as e:
        return (
            f"picosdk is installed, but the PicoScope 3000A driver cannot be loaded "
            f"({type(e).__name__}: {e}); {INSTALL_HINT}"
        )
    return None


def validate_config(
    config: Mapping[str, Any], sink_dtype: Any, data_length: int | None
) -> list[str]:
    """Checks a configuration of ``importers.picoscope.source``; does not open the scope.

    Also reports a missing ``picosdk`` package or C driver, with what to install (unless the
    testing hook ``_driver`` is set).

    Args:
        config: The worker's effective configuration.
        sink_dtype: The sink buffer's data_dtype (numpy dtype or mapping); None skips it.
        data_length: The sink buffer's data_length; None skips the checks that need it.

    Returns:
        One message per problem; empty if valid.
    """
    errors = parse_settings(config, sink_dtype, data_length)[1]
    if config.get("_driver") is None:
        problem = driver_problem()
        if problem:
            errors.append(problem)
    return errors


def _load_factory(spec: str, setup_dir: Path | None) -> Callable[[Mapping[str, Any]], Any]:
    where, _, attr = spec.rpartition(":")
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_absolute() and setup_dir is not None:
            path = setup_dir / path
        module_spec = importlib.util.spec_from_file_location(f"_mimocorb2_driver_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, attr)  # type: ignore[no-any-return]


def load_driver(config: Mapping[str, Any], setup_dir: Path | None = None) -> Any:
    """Returns the ``ps3000a`` driver object of ``picosdk`` (or the stand-in named by ``_driver``).

    Raises:
        DeviceError: If picosdk or its C library is missing (saying what to install).
    """
    spec = config.get("_driver")
    if spec is not None:
        return _load_factory(str(spec), setup_dir)(config)
    problem = driver_problem()
    if problem:
        raise DeviceError(problem)
    from picosdk.ps3000a import ps3000a  # type: ignore[import-not-found]

    return ps3000a


def _status_text(status: int) -> str:
    try:
        from picosdk.constants import PICO_STATUS_LOOKUP  # type: ignore[import-not-found]

        name = PICO_STATUS_LOOKUP.get(status)
    except Exception:
        name = None
    return f"status {status}" + (f" ({name})" if name else "")


class PicoScope:
    """A PicoScope 3000A in rapid block mode.

    Args:
        ps: The driver object (``picosdk.ps3000a.ps3000a`` or a stand-in).
        settings: The validated configuration.
        stopped: Returns True once the run is being stopped.
        logger: The worker's logger.
    """

    def __init__(
        self,
        ps: Any,
        settings: Settings,
        stopped: Callable[[], bool],
        logger: logging.Logger,
    ) -> None:
        """Does not open the device yet."""
        self.ps = ps
        self.s = settings
        self.stopped = stopped
        self.logger = logger
        self.handle = ctypes.c_int16(0)
        self.opened = False
        self.running = False
        self.done = 0
        self.overflows = 0

    def _check(self, status: int, call: str) -> None:
        if status != 0:
            raise DeviceError(f"{call} failed: {_status_text(int(status))}")

    def open(self) -> None:
        """Opens the first PicoScope found and configures channels, trigger and segments.

        Raises:
            DeviceError: If no scope is found or a setting is rejected.
        """
        ps, s = self.ps, self.s
        status = ps.ps3000aOpenUnit(ctypes.byref(self.handle), None)
        if status in (282, 286):  # powered by USB only / USB 3 device on a USB 2 port
            status = ps.ps3000aChangePowerSource(self.handle, status)
        if status != 0:
            raise DeviceError(
                f"no PicoScope 3000A could be opened ({_status_text(int(status))}); is it "
                "connected, and not in use by another program?"
            )
        self.opened = True
        max_adc = ctypes.c_int16(0)
        self._check(ps.ps3000aMaximumValue(self.handle, ctypes.byref(max_adc)), "MaximumValue")
        self.max_adc = int(max_adc.value)
        coupling = ps.PS3000A_COUPLING[f"PS3000A_{s.coupling}"]
        for ch in CHANNELS:
            enabled = ch in s.channels
            self._check(
                ps.ps3000aSetChannel(
                    self.handle,
                    ps.PS3000A_CHANNEL[f"PS3000A_CHANNEL_{ch[-1]}"],
                    int(enabled),
                    coupling,
                    ps.PS3000A_RANGE[f"PS3000A_{s.ranges[ch]}"],
                    float(s.offsets[ch]) if enabled else 0.0,
                ),
                f"SetChannel({ch}, range {s.ranges[ch]}, offset {s.offsets[ch]} V)",
            )
        if s.trigger_channel == "EXT":
            source = ps.PS3000A_CHANNEL["PS3000A_EXTERNAL"]
            full = EXT_RANGE_MV
        else:
            source = ps.PS3000A_CHANNEL[f"PS3000A_CHANNEL_{s.trigger_channel}"]
            full = RANGES_MV[s.ranges[f"ch{s.trigger_channel}"]]
        threshold = round(s.trigger_level_mv * self.max_adc / full)
        self._check(
            ps.ps3000aSetSimpleTrigger(
                self.handle,
                1,
                source,
                threshold,
                ps.PS3000A_THRESHOLD_DIRECTION[f"PS3000A_{s.trigger_direction}"],
                0,
                s.auto_trigger_ms,
            ),
            "SetSimpleTrigger",
        )
        interval = ctypes.c_float(0.0)
        max_samples = ctypes.c_int32(0)
        self._check(
            ps.ps3000aGetTimebase2(
                self.handle,
                s.timebase,
                s.data_length,
                ctypes.byref(interval),
                1,
                ctypes.byref(max_samples),
                0,
            ),
            f"GetTimebase2(timebase {s.timebase}, {s.data_length} samples)",
        )
        per_segment = ctypes.c_int32(0)
        self._check(
            ps.ps3000aMemorySegments(self.handle, s.segments, ctypes.byref(per_segment)),
            f"MemorySegments({s.segments})",
        )
        if per_segment.value and per_segment.value < s.data_length * len(s.channels):
            raise DeviceError(
                f"{s.segments} memory segments hold {per_segment.value} samples each, too few "
                f"for {len(s.channels)} channel(s) x {s.data_length} samples; use fewer "
                "segments (number_of_memory_segments) or a shorter data_length"
            )
        self._check(ps.ps3000aSetNoOfCaptures(self.handle, s.segments), "SetNoOfCaptures")
        # one int16 buffer per channel and segment, registered once, reused for every capture
        self.raw = np.zeros((len(s.channels), s.segments, s.data_length), dtype=np.int16)
        mode = ps.PS3000A_RATIO_MODE["PS3000A_RATIO_MODE_NONE"]
        for c, ch in enumerate(s.channels):
            for seg in range(s.segments):
                self._check(
                    ps.ps3000aSetDataBuffer(
                        self.handle,
                        ps.PS3000A_CHANNEL[f"PS3000A_CHANNEL_{ch[-1]}"],
                        self.raw[c, seg].ctypes.data_as(ctypes.POINTER(ctypes.c_int16)),
                        s.data_length,
                        seg,
                        mode,
                    ),
                    "SetDataBuffer",
                )
        self.scale = [RANGES_MV[s.ranges[ch]] / self.max_adc for ch in s.channels]
        self.overflow = np.zeros(s.segments, dtype=np.int16)
        self.logger.info(
            "PicoScope: %s, %d samples (%d before the trigger) every %.3g ns, %d segments",
            ", ".join(f"{ch} ±{s.ranges[ch]}" for ch in s.channels),
            s.data_length,
            s.pre_trigger,
            interval.value,
            s.segments,
        )

    def _run_block(self) -> None:
        s = self.s
        indisposed = ctypes.c_int32(0)
        self._check(
            self.ps.ps3000aRunBlock(
                self.handle,
                s.pre_trigger,
                s.post_trigger,
                s.timebase,
                1,
                ctypes.byref(indisposed),
                0,
                None,
                None,
            ),
            "RunBlock",
        )
        self.running = True

    def _wait_ready(self) -> None:
        ready = ctypes.c_int16(0)
        t0 = time.monotonic()
        limit = self.s.trigger_timeout
        while True:
            self._check(self.ps.ps3000aIsReady(self.handle, ctypes.byref(ready)), "IsReady")
            if ready.value:
                return
            if self.stopped():
                raise StopRequested
            if limit is not None and time.monotonic() - t0 >= limit:
                raise DeviceError(
                    f"{self.s.segments} capture(s) not complete within {limit:g} s "
                    "(config key 'trigger_timeout'); is the trigger reached?"
                )
            time.sleep(POLL_PAUSE)

    def stream(self, writer: BufferWriter) -> int:
        """Captures rapid blocks and writes each segment as one event (values in mV).

        The next block is started before the current one is converted, so the scope keeps
        capturing while the events are written.

        Returns:
            The number of events written.
        """
        s = self.s
        limit = s.max_events
        n_samples = ctypes.c_uint32(s.data_length)
        overflow_ptr = self.overflow.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))
        mode = self.ps.PS3000A_RATIO_MODE["PS3000A_RATIO_MODE_NONE"]
        fields = list(enumerate(s.channels))
        self._run_block()
        while limit is None or self.done < limit:
            self._wait_ready()
            n_samples.value = s.data_length
            self._check(
                self.ps.ps3000aGetValuesBulk(
                    self.handle,
                    ctypes.byref(n_samples),
                    0,
                    s.segments - 1,
                    0,  # no downsampling
                    mode,
                    overflow_ptr,
                ),
                "GetValuesBulk",
            )
            self.running = False
            self.overflows += int(np.count_nonzero(self.overflow))
            take = s.segments if limit is None else min(s.segments, limit - self.done)
            if limit is None or self.done + take < limit:
                self._run_block()
            for seg in range(take):
                with writer as (_, data):
                    for c, ch in fields:
                        np.multiply(self.raw[c, seg], self.scale[c], out=data[ch], casting="unsafe")
                self.done += 1
        return self.done

    def close(self) -> None:
        """Stops a running capture and closes the device (errors are logged, not raised)."""
        if not self.opened:
            return
        for call in ("ps3000aStop", "ps3000aCloseUnit"):
            try:
                status = getattr(self.ps, call)(self.handle)
                if status != 0:
                    self.logger.warning("PicoScope %s: %s", call, _status_text(int(status)))
            except Exception:
                self.logger.exception("PicoScope %s failed", call)
        self.opened = False


def source(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Picoscope Source.

    Reads waveforms from a PicoScope 3000A USB oscilloscope in rapid block mode: each block
    captures ``number_of_memory_segments`` triggered waveforms, which become one event each
    (the next block is already capturing while they are written). Values are in mV, as the
    ADC sees them (an analogue offset is added to the input by the scope).

    Needs Pico's Python wrapper and C drivers: ``pip install picosdk`` and the PicoSDK from
    https://www.picotech.com/downloads; setup validation says so when they are missing.

    Type
        Importer

    Buffers
        sources
            0
        sinks
            1 with fields chA, chB, chC and/or chD (float32 recommended; the fields present are
            the channels recorded); data_length = samples per waveform
        observes
            0

    Configs
        channel_coupling : str, optional (default='DC')
            DC or AC, for all channels.
        trigger_channel : str, optional (default='A')
            A, B, C, D (a recorded channel) or EXT.
        trigger_level : float
            Trigger threshold in mV (``trigger_threshold`` is accepted too); within the
            trigger channel's range (EXT: ±5000 mV).
        trigger_direction : str, optional (default='RISING')
            RISING, FALLING, ABOVE, BELOW or RISING_OR_FALLING.
        pre_trigger_samples : int
            Samples before the trigger, 0..data_length (the rest follow it).
        post_trigger_samples : int, optional
            If given, must equal data_length - pre_trigger_samples.
        timebase : int
            Sampling interval code of the 3000A series (see the programmer's guide; e.g. 2 =
            4 ns on a 3404D).
        number_of_memory_segments : int, optional (default=1)
            Waveforms captured per rapid block.
        channel_range : str, optional (default='20V')
            Input range of all channels: 10MV, 20MV, 50MV, 100MV, 200MV, 500MV, 1V, 2V, 5V,
            10V, 20V or 50V.
        channelA_range, channelB_range, channelC_range, channelD_range : str, optional
            Range of one channel (overrides channel_range).
        analogue_offset : float, optional (default=0)
            Offset in V added to all inputs.
        analogue_offset_chA, ..._chB, ..._chC, ..._chD : float, optional
            Offset of one channel (overrides analogue_offset).
        auto_trigger_ms : int, optional (default=0)
            Trigger automatically after this many ms without a trigger (0: never).
        trigger_timeout : float or null, optional (default=null)
            Seconds a block may take before the importer gives up with an error.
        max_events : int or null, optional (default=null)
            Stop after this many events.

    Examples:
        Four channels, 10 waveforms per block::

            Buffers:
              pico: {slot_count: 64, data_length: 1000,
                     data_dtype: {chA: float32, chB: float32, chC: float32, chD: float32}}
            Workers:
              scope:
                function: importers.picoscope.source
                sinks: [pico]
                config: {trigger_channel: A, trigger_level: 50, pre_trigger_samples: 100,
                         timebase: 2, number_of_memory_segments: 10, channel_range: 500MV}
    """
    importer = Importer(buffer_io)
    writer = importer.writer
    buffer = writer.buffer
    settings, errors = parse_settings(buffer_io.config, buffer.data_dtype, buffer.data_length)
    if settings is None:
        raise config_error(buffer_io, "importers.picoscope.source", errors)
    log = importer.logger
    try:
        ps = load_driver(buffer_io.config, buffer_io.setup_dir)
    except DeviceError as e:
        buffer_io.end_sinks(failed=True)
        raise SetupError(buffer_io.name, f"importers.picoscope.source: {e}") from e
    writer.stamp = True

    def stopped() -> bool:
        return buffer.flush_event_received

    scope = PicoScope(ps, settings, stopped, log)
    try:
        scope.open()
        scope.stream(writer)
    except (StopRequested, BufferEndedError):
        log.info("worker '%s': the sink was shut down; stopping the acquisition", buffer_io.name)
    except DeviceError as e:
        buffer_io.end_sinks(failed=True)
        raise UfuncError(buffer_io.name, f"PicoScope: {e}") from e
    finally:
        scope.close()
    if scope.overflows:
        log.warning("PicoScope: %d waveforms had an over-range channel", scope.overflows)
    buffer_io.end_sinks(failed=False)
    log.info("worker '%s': %d waveforms received; done", buffer_io.name, scope.done)


source.validate_config = validate_config  # type: ignore[attr-defined]
