"""Configuration of ``importers.redpitaya.waveform``: constants, ranges and the parsed settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mimocorb2.functions.importers._common import ConfigChecker, as_dtype, dtype_text

SAMPLE_RATES = (1, 4, 8, 16, 32, 54, 128, 256)
"""Allowed ``sample_rate`` values: decimation factors of the 125 MHz ADC clock."""

INPUTS = {"IN1": 0, "IN2": 1}
"""Inputs and their channel numbers in MCPHA commands."""

TRIGGER_SLOPES = {"rising": 0, "falling": 1}
TRIGGER_MODES = {"normal": 0, "auto": 1}
MIN_ADC_VALUE = -4096
MAX_ADC_VALUE = 4095

MAXIMUM_SAMPLES = 8_388_607
"""Most samples per waveform the MCPHA server can send (its 32 MiB ring of int16 pairs),
including ``extra_samples``."""

SCPI_BUFFER_SAMPLES = 16384
"""Samples per channel of the stock firmware's capture buffer (the SCPI limit)."""

PROTOCOLS = ("mcpha", "scpi")
DEFAULT_PORTS = {"mcpha": 1001, "scpi": 5000}
DEFAULT_EXTRA_SAMPLES = 100
"""Samples requested beyond ``data_length`` and discarded (the MCPHA server delivers the last
few samples of a waveform incorrectly; the reference requests 100 more)."""

SINK_DTYPE = np.dtype([("IN1", "<i2"), ("IN2", "<i2")])
"""The sink layout: one record per sample, the two inputs as little-endian int16. It is the
MCPHA wire format (interleaved IN1, IN2 pairs), so waveforms are received straight into slots."""

KNOWN_KEYS = (
    "ip",
    "port",
    "protocol",
    "sample_rate",
    "negator_IN1",
    "negator_IN2",
    "trigger_slope",
    "trigger_mode",
    "trigger_level",
    "trigger_source",
    "number_of_samples_before_trigger",
    "set_size",
    "extra_samples",
    "timeout",
    "trigger_timeout",
    "reconnect",
    "reconnect_delay",
    "max_events",
    "volts_per_count",
    "scpi_fill_check",
    "auto_trigger_after",
)


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one RedPitaya importer (see the function's docstring)."""

    ip: str
    port: int
    protocol: str
    sample_rate: int
    negator_IN1: bool  # noqa: N815 - config key of the spec
    negator_IN2: bool  # noqa: N815 - config key of the spec
    trigger_slope: str
    trigger_mode: str
    trigger_level: int
    trigger_source: str
    pre_trigger: int
    set_size: int
    extra_samples: int
    timeout: float
    trigger_timeout: float | None
    reconnect: int
    reconnect_delay: float
    max_events: int | None
    volts_per_count: float
    scpi_fill_check: bool
    auto_trigger_after: float
    data_length: int

    @property
    def address(self) -> str:
        """``ip:port (protocol)`` for messages."""
        return f"{self.ip}:{self.port} ({self.protocol})"


def parse_settings(
    config: Mapping[str, Any], sink_dtype: Any, data_length: int | None
) -> tuple[Settings | None, list[str]]:
    """Checks a configuration against the documented ranges.

    Args:
        config: The worker configuration.
        sink_dtype: The sink's data_dtype (numpy dtype or mapping), or None to skip its check.
        data_length: The sink's data_length, or None to skip the checks that need it.

    Returns:
        ``(settings, [])`` or ``(None, messages)``.
    """
    c = ConfigChecker(config)
    c.typos(KNOWN_KEYS)
    protocol = c.choice("protocol", PROTOCOLS, default="mcpha")
    ip = c.string("ip", example="rp-f0c38f.local")
    port = c.integer("port", default=DEFAULT_PORTS.get(protocol or "mcpha"), lo=1, hi=65535)
    sample_rate = c.choice("sample_rate", SAMPLE_RATES)
    neg1 = c.boolean("negator_IN1", default=False)
    neg2 = c.boolean("negator_IN2", default=False)
    slope = c.choice("trigger_slope", tuple(TRIGGER_SLOPES), default="rising")
    mode = c.choice("trigger_mode", tuple(TRIGGER_MODES), default="normal")
    level = c.integer("trigger_level", lo=MIN_ADC_VALUE, hi=MAX_ADC_VALUE, example="100")
    source = c.choice("trigger_source", tuple(INPUTS), default="IN1")
    pre = c.integer("number_of_samples_before_trigger", lo=0, example="100")
    set_size = c.integer("set_size", default=100, lo=1, hi=1 << 31)
    extra = c.integer("extra_samples", default=DEFAULT_EXTRA_SAMPLES, lo=0, hi=MAXIMUM_SAMPLES)
    timeout = c.number("timeout", default=5.0, lo=0.0, hi=3600.0, strict_lo=True)
    trigger_timeout = c.number(
        "trigger_timeout", default=60.0, lo=0.0, hi=1e9, strict_lo=True, example="60"
    )
    if "trigger_timeout" in config and config["trigger_timeout"] is None:
        trigger_timeout = None
    reconnect = c.integer("reconnect", default=0, lo=0, hi=1000)
    reconnect_delay = c.number("reconnect_delay", default=1.0, lo=0.0, hi=3600.0)
    max_events = c.integer("max_events", default=None, lo=1)
    volts_per_count = c.number(
        "volts_per_count", default=1.0 / 8192, lo=0.0, hi=1.0, strict_lo=True
    )
    fill_check = c.boolean("scpi_fill_check", default=True)
    auto_after = c.number("auto_trigger_after", default=0.1, lo=0.0, hi=3600.0)

    dtype = None
    try:
        dtype = as_dtype(sink_dtype)
    except (TypeError, ValueError) as e:
        c.error("", f"the sink's data_dtype is not a valid data type ({e})")
    if dtype is not None and dtype != SINK_DTYPE:
        c.error(
            "",
            f"the sink buffer must have data_dtype {{IN1: int16, IN2: int16}} (in this order), "
            f"got {dtype_text(dtype)}; change the buffer's data_dtype",
        )
    if data_length is not None:
        limit = SCPI_BUFFER_SAMPLES if protocol == "scpi" else MAXIMUM_SAMPLES - (extra or 0)
        if data_length < 1 or data_length > limit:
            why = (
                "the capture buffer of the stock firmware holds 16384 samples"
                if protocol == "scpi"
                else f"the board sends at most {MAXIMUM_SAMPLES} samples per waveform, "
                f"including extra_samples = {extra}"
            )
            c.error(
                "",
                f"the sink's data_length (samples per waveform) is {data_length}; it must be "
                f"from 1 to {limit}: {why}",
            )
        if pre is not None and pre >= data_length:
            c.error(
                "number_of_samples_before_trigger",
                f"{pre} must be smaller than the sink's data_length ({data_length})",
            )
    if c.errors:
        return None, c.errors
    assert ip is not None and port is not None and protocol is not None
    return (
        Settings(
            ip=ip,
            port=port,
            protocol=protocol,
            sample_rate=sample_rate,
            negator_IN1=neg1,
            negator_IN2=neg2,
            trigger_slope=slope,
            trigger_mode=mode,
            trigger_level=level,
            trigger_source=source,
            pre_trigger=pre,
            set_size=set_size,
            extra_samples=extra,
            timeout=timeout,
            trigger_timeout=trigger_timeout,
            reconnect=reconnect,
            reconnect_delay=reconnect_delay,
            max_events=max_events,
            volts_per_count=volts_per_count,
            scpi_fill_check=fill_check,
            auto_trigger_after=auto_after,
            data_length=int(data_length or 0),
        ),
        [],
    )
