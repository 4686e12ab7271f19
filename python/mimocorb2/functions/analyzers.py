"""Prebuilt analyzers: ``analyzers.pha`` (pulse height analysis with scipy.signal.find_peaks).

Use them in a setup with ``function: analyzers.<name>`` and no ``file``. They need scipy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mimocorb2.exceptions import BufferEndedError
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import SetupError, UfuncError

__all__ = ["pha"]

_FIND_PEAKS_KEYS = (
    "height",
    "threshold",
    "distance",
    "prominence",
    "width",
    "wlen",
    "rel_height",
    "plateau_size",
)
"""Config keys passed on to ``scipy.signal.find_peaks`` (when set and not None)."""

_NEEDS: dict[str, tuple[str, ...]] = {
    "position": (),
    "peak_heights": ("height",),
    "left_thresholds": ("threshold",),
    "right_thresholds": ("threshold",),
    "prominences": ("prominence", "width"),
    "left_bases": ("prominence", "width"),
    "right_bases": ("prominence", "width"),
    "widths": ("width",),
    "width_heights": ("width",),
    "left_ips": ("width",),
    "right_ips": ("width",),
    "plateau_sizes": ("plateau_size",),
    "left_edges": ("plateau_size",),
    "right_edges": ("plateau_size",),
}
"""Sink field -> config keys of which one must be set for find_peaks to compute it."""


def _setup_error(io: BufferIO, message: str, exception: Any = None) -> SetupError:
    return SetupError(io.name, message, exception)


def _check_pha_setup(io: BufferIO) -> tuple[str, dict[str, Any], list[str]]:
    """Validates buffers and config; returns (channel, find_peaks kwargs, sink fields)."""
    counts = (len(io.read), len(io.write), len(io.observe))
    if counts != (1, 1, 0):
        raise _setup_error(
            io,
            "analyzers.pha needs 1 source, 1 sink and 0 observes, but the setup gives "
            f"sources {io.buffer_names_in}, sinks {io.buffer_names_out} and observes "
            f"{io.buffer_names_observe}",
        )
    source = io.read[0].buffer
    sink = io.write[0].buffer
    fields = list(source.data_dtype.names or ())
    channel = io.get("channel")
    if channel is None:
        channel = fields[0]
    if channel not in fields:
        raise _setup_error(
            io,
            f"config 'channel' is {channel!r}, but source '{source.name}' has the fields "
            f"{fields}; set 'channel' to one of them",
        )
    if source.data_dtype[channel].shape or source.data_dtype[channel].kind not in "biuf":
        raise _setup_error(
            io,
            f"channel {channel!r} of source '{source.name}' has dtype "
            f"{source.data_dtype[channel]}; analyzers.pha needs a numeric scalar field",
        )
    if sink.data_length != 1:
        raise _setup_error(
            io,
            f"analyzers.pha writes one event per peak to a sink of data_length 1, but sink "
            f"'{sink.name}' has data_length {sink.data_length}; set its data_length to 1",
        )
    kwargs = {k: io.get(k) for k in _FIND_PEAKS_KEYS if io.get(k) is not None}
    out_fields = list(sink.data_dtype.names or ())
    unknown = [f for f in out_fields if f not in _NEEDS]
    if unknown:
        raise _setup_error(
            io,
            f"sink '{sink.name}' has the field(s) {unknown}, which analyzers.pha cannot fill; "
            f"allowed fields are {list(_NEEDS)}",
        )
    missing = {}
    for f in out_fields:
        needs = _NEEDS[f]
        if needs and not any(k in kwargs for k in needs):
            missing.setdefault(needs[0], []).append(f)
    if missing:
        hints = "; ".join(
            f"add '{key}'" + (" (or 'width')" if key == "prominence" else "") + f" for {fs}"
            for key, fs in missing.items()
        )
        raise _setup_error(
            io,
            f"sink '{sink.name}' has fields that find_peaks only computes with more config: "
            f"{hints} (a minimum value such as 0 computes them for all peaks the other "
            "conditions accept)",
        )
    try:
        from scipy.signal import find_peaks
    except ImportError as e:
        raise _setup_error(
            io, "analyzers.pha needs scipy; install it (pip install scipy)", e
        ) from None
    probe = np.zeros(max(3, source.data_length), dtype=np.float64)
    probe[len(probe) // 2] = 1.0
    try:
        find_peaks(probe, **kwargs)
    except Exception as e:
        raise _setup_error(
            io,
            f"scipy.signal.find_peaks rejects the config {kwargs}; fix the value named in the "
            "error",
            e,
        ) from None
    return channel, kwargs, out_fields


def pha(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Pulse Height Analysis using scipy.signal.find_peaks.

    Analyzes pulse heights in a given channel of the input data using scipy.signal.find_peaks.
    This function processes the input data to find peaks and their properties based on the
    provided configuration parameters. Depending on the configuration, it can return various
    peak properties such as heights, thresholds, prominences, widths, and plateau sizes (see
    scipy documentation).

    Every peak of an event is reported: the sink receives one event per peak (with the
    metadata of the input event), in the order of the peak positions. Events without peaks
    produce no output.

    Type
        Processor

    Buffers
        sources
            1 source buffer containing the input data with multiple channels
        sinks
            1 with data_length = 1, possible field names:

            - position
                The sample index of the peak in the channel.
            - peak_heights
                If height is specified in the config, the height of each peak in the specified
                channel.
            - left_thresholds, right_thresholds
                If threshold is specified in the config, the left and right thresholds of each
                peak in the specified channel.
            - prominences, left_bases, right_bases
                If prominence is specified in the config, the prominence of each peak in the
                specified channel, along with the left and right bases.
            - widths, width_heights, left_ips, right_ips
                If width is specified in the config, the width of each peak in the specified
                channel.
            - plateau_sizes, left_edges, right_edges
                If plateau_size is specified in the config, the plateau size of each peak in the
                specified channel, along with the left and right edges.

            A field whose config key is missing is a setup error naming the key to add.
        observes
            0

    Configs
        channel : str, optional (default='first channel')
            Channel name to analyze. If not specified, the first channel in the input data will be
            used.
        height : float, optional (default=None)
            Minimum height of peaks to be detected. If None, peak heights will not be calculated.
        threshold : float, optional (default=None)
            Minimum vertical distance to its neighboring samples for a peak to be considered. If
            None, left and right thresholds will not be calculated.
        distance : int, optional (default=None)
            Minimum horizontal distance (in samples) between neighboring peaks. If None, no
            distance constraint is applied.
        prominence : float, optional (default=None)
            Minimum prominence of peaks. If None, prominences will not be calculated.
        width : float, optional (default=None)
            Minimum width of peaks. If None, widths will not be calculated.
        wlen : int, optional (default=None)
            Window length for peak width calculation. If None, the entire signal is used.
        rel_height : float, optional (default=0.5)
            Relative height at which to calculate the width of the peaks. Default is 0.5, meaning
            the width is calculated at half the peak height.
        plateau_size : float, optional (default=None)
            Minimum size of the plateau at the peak. If None, plateau sizes will not be
            calculated.

    Examples:
        Setup entries::

            Buffers:
              peaks: {slot_count: 128, data_length: 1,
                      data_dtype: {position: int32, peak_heights: float32, widths: float32}}
            Workers:
              pha:
                function: analyzers.pha
                sources: [waveforms]
                sinks: [peaks]
                config: {channel: ch1, height: 0.1, width: 2}
    """
    io = buffer_io
    channel, kwargs, out_fields = _check_pha_setup(io)
    from scipy.signal import find_peaks

    reader = io.read[0]
    writer = io.write[0]
    out_dtype = writer.buffer.data_dtype
    meta_dtype = io.metadata_in_examples[0].dtype
    sink_open = True
    n_in = n_out = 0
    failed = False
    try:
        while True:
            with reader as (metadata, data):
                if data is None:
                    break
                if not sink_open:
                    continue
                n_in += 1
                try:
                    peaks, props = find_peaks(data[channel], **kwargs)
                except Exception as e:
                    raise UfuncError(
                        io.name, "scipy.signal.find_peaks failed", e, ufunc_input=data.copy()
                    ) from e
                k = len(peaks)
                if k == 0:
                    continue
                out = np.zeros(k, dtype=out_dtype)
                for f in out_fields:
                    out[f] = peaks if f == "position" else props[f]
                meta = np.empty(k, dtype=meta_dtype)
                meta[:] = metadata[0]
            try:
                writer.write_batch(out, meta)
                n_out += k
            except BufferEndedError:
                sink_open = False
                io.logger.info(
                    "worker '%s': sink '%s' was shut down; discarding the rest of the input",
                    io.name,
                    writer.name,
                )
    except Exception:
        failed = True
        raise
    finally:
        io.end_sinks(failed)
        io.logger.info("worker '%s': %d events, %d peaks", io.name, n_in, n_out)
