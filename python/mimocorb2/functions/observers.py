"""Prebuilt observers: live views of the events of a buffer.

An observer gets copies of the newest events of the buffer it observes; it never takes
events from the buffer's readers and never slows its writers. The plots are drawn with
pyqtgraph in the worker's own process (Qt is only imported when a worker runs). Without a
display the worker logs that it is skipped and returns; set ``QT_QPA_PLATFORM=offscreen`` to
render without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mimocorb2 import _plotting
from mimocorb2.exceptions import BufferTimeoutError
from mimocorb2.mimo_buffer import BufferObserver
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import Observer

__all__ = ["oscilloscope"]


def _triple(io: BufferIO, key: str, default: tuple[float, float, str]) -> tuple[float, float, str]:
    """A (scale, offset, unit) configuration value; missing entries take the default."""
    value = io.get(key, default)
    if value is None:
        value = default
    if isinstance(value, int | float):
        value = (value,)
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) > 3:
        raise ValueError(
            f"worker '{io.name}': config '{key}' must be [scale, offset, unit], got {value!r}"
        )
    parts = list(value) + list(default[len(value) :])
    try:
        return float(parts[0]), float(parts[1]), str(parts[2])
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"worker '{io.name}': config '{key}' must be [scale, offset, unit] with numbers "
            f"for scale and offset, got {value!r}"
        ) from e


def _channels(io: BufferIO, example: np.ndarray) -> list[str]:
    """The channels to plot: the configured ones, else every numeric scalar field."""
    names = example.dtype.names or ()

    def plottable(name: str) -> bool:
        field = example.dtype.fields[name][0]  # type: ignore[index]
        return field.shape == () and (field.kind in "biuf")

    requested = io.get("channels")
    if requested is None:
        channels = [n for n in names if plottable(n)]
        if not channels:
            raise ValueError(
                f"worker '{io.name}': the observed buffer has no numeric fields to plot "
                f"(fields: {', '.join(names) or 'none'})"
            )
        return channels
    if isinstance(requested, str):
        requested = [requested]
    channels = [str(c) for c in requested]
    unknown = [c for c in channels if c not in names]
    if unknown:
        raise ValueError(
            f"worker '{io.name}': config 'channels' names {unknown}, which the observed "
            f"buffer does not have (fields: {', '.join(names)})"
        )
    bad = [c for c in channels if not plottable(c)]
    if bad:
        raise ValueError(
            f"worker '{io.name}': channels {bad} are not numeric scalar fields and cannot be "
            "plotted"
        )
    return channels


def _ylim(io: BufferIO) -> tuple[float, float] | None:
    value = io.get("ylim")
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"worker '{io.name}': config 'ylim' must be [min, max] or null, got {value!r}"
        ) from e
    if not lo < hi:
        raise ValueError(f"worker '{io.name}': config 'ylim' needs min < max, got {value!r}")
    return lo, hi


def _colors(io: BufferIO, channels: list[str]) -> list[Any]:
    """One colour per channel from the config ``colors`` (a list or a {channel: colour} map)."""
    value = io.get("colors")
    if value is None:
        specs: list[Any] = [None] * len(channels)
    elif isinstance(value, dict):
        specs = [value.get(ch) for ch in channels]
    elif isinstance(value, str):
        specs = [value] + [None] * (len(channels) - 1)
    else:
        specs = list(value)[: len(channels)]
        specs += [None] * (len(channels) - len(specs))
    out = []
    for i, spec in enumerate(specs):
        try:
            out.append(_plotting.color(spec, i))
        except ValueError as e:
            raise ValueError(f"worker '{io.name}': config 'colors': {e}") from e
    return out


def oscilloscope(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Show an Oscilloscope plot of the buffer.

    Observes data from a buffer and shows it as an oscilloscope plot: the newest event,
    one curve per channel, redrawn when a new event arrived (at most once per
    ``update_interval``). Clicking a legend entry hides or shows its curve. The observer gets
    copies of the events: it never takes events from the buffer's readers and never slows the
    writers. When the observed buffer ends the last event stays shown and the window, marked
    "run finished", stays open until the user closes it (``MIMOCORB2_PLOTS_STAY_OPEN=0``, and
    display-less platforms such as ``offscreen``, close it at once); closing the window ends
    the worker. Without a display (no ``DISPLAY`` / ``WAYLAND_DISPLAY`` and ``QT_QPA_PLATFORM``
    not ``offscreen``) the worker logs that it is skipped and returns.

    Type
        Observer

    Buffers
        sources
            0
        sinks
            0
        observes
            1

    Configs
        ylim : tuple of float, optional (default=None)
            (min, max) of the y-axis, in the scaled units. If None, the y-axis will be
            autoscaled upon each update.
        t_scaling : tuple of float, optional (default=(1, 0, 'Samples'))
            (scaling, offset, unit) for the x-axis: sample ``i`` is drawn at
            ``i * scaling + offset``; the unit labels the axis.
        y_scaling : tuple of float, optional (default=(1, 0, 'Value'))
            (scaling, offset, unit) for the y-axis: a value ``v`` is drawn at
            ``v * scaling + offset``; the unit labels the axis.
        channels : list of str, optional (default=None)
            List of channel names to be plotted. If None, all available channels will be
            plotted.
        trigger_level : float, optional (default=None)
            If specified, a horizontal dotted line will be drawn at this level to indicate the
            trigger level. It is given in the units of the data (like the importer's
            ``trigger_level``) and scaled with ``y_scaling`` like the data.
        update_interval : float, optional (default=1)
            Interval to update the plot in seconds. Default is 1 second.
        colors : list or dict, optional (default=None)
            Colours of the channels, in order (a list) or by name (a dict): one-letter codes,
            SVG names, ``#rrggbb``, or matplotlib's ``C0`` .. ``C9``.
        screenshot : str, optional (default=None)
            If set, a PNG of the window is saved to this path when the worker ends (relative
            paths are taken in the run directory).

    Examples:
        In the setup file::

            Workers:
              scope:
                function: observers.oscilloscope
                observes: [waveforms]
                config:
                  ylim: [-500, 500]
                  t_scaling: [0.008, 0, 'µs']
                  y_scaling: [0.122, 0, 'mV']
                  channels: [IN1, IN2]
                  trigger_level: 1000
                  update_interval: 0.5
    """
    observer = Observer(buffer_io)
    example = observer.data_example
    channels = _channels(buffer_io, example)
    t_scale, t_offset, t_unit = _triple(buffer_io, "t_scaling", (1.0, 0.0, "Samples"))
    y_scale, y_offset, y_unit = _triple(buffer_io, "y_scaling", (1.0, 0.0, "Value"))
    ylim = _ylim(buffer_io)
    interval = _plotting.interval_config(buffer_io, "update_interval", 1.0)
    trigger = buffer_io.get("trigger_level")
    if trigger is not None:
        try:
            trigger = float(trigger)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"worker '{buffer_io.name}': config 'trigger_level' must be a number, "
                f"got {trigger!r}"
            ) from e
    screenshot = _plotting.screenshot_path(buffer_io)
    if _plotting.skip_without_display(buffer_io, "observers.oscilloscope"):
        return
    colors = _colors(buffer_io, channels)

    from mimocorb2._qt import QtCore, pg

    _plotting.application(buffer_io.logger)
    buffer_name = observer.buffer.name
    t = np.arange(len(example), dtype=np.float64) * t_scale + t_offset

    window = pg.PlotWidget(title=f"{buffer_name}: waiting for events")
    window.setWindowTitle(f"Oscilloscope: {buffer_io.name} ({buffer_name})")
    plot = window.getPlotItem()
    plot.setLabel("bottom", t_unit)
    plot.setLabel("left", y_unit)
    plot.showGrid(x=True, y=True, alpha=0.25)
    # under the axis, not on the traces
    _plotting.legend_below(plot, len(channels) + (trigger is not None))
    t_lo, t_hi = (float(t.min()), float(t.max())) if len(t) else (0.0, 1.0)
    if t_lo == t_hi:
        t_lo, t_hi = t_lo - 0.5, t_hi + 0.5
    plot.setXRange(t_lo, t_hi, padding=0)
    plot.enableAutoRange(x=False)
    if ylim is not None:
        plot.setYRange(*ylim, padding=0)
        plot.enableAutoRange(y=False)
    else:
        plot.enableAutoRange(y=True)
    if trigger is not None:
        level = trigger * y_scale + y_offset
        plot.plot(
            [t_lo, t_hi],
            [level, level],
            pen=pg.mkPen("w", width=1, style=QtCore.Qt.PenStyle.DotLine),
            name="Trigger Level",
        )
    curves = {}
    for ch, col in zip(channels, colors, strict=True):
        curve = plot.plot(pen=pg.mkPen(col, width=1), name=ch)
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method="peak")
        curves[ch] = curve

    # A non-blocking observer: each refresh copies the newest event if there is a new one
    # (into this observer's private memory; no slot is held, the GUI never waits).
    newest = BufferObserver(observer.buffer, timeout=0.0)
    state = {"ended": False}

    def refresh() -> None:
        if state["ended"]:
            return
        try:
            with newest as (metadata, data):
                if data is None:
                    state["ended"] = True
                    return
                for ch, curve in curves.items():
                    y = data[ch].astype(np.float64)
                    if y_scale != 1.0 or y_offset != 0.0:
                        y = y * y_scale + y_offset
                    curve.setData(t, y)
                plot.setTitle(f"{buffer_name}: event {int(metadata['counter'][0])}")
        except BufferTimeoutError:  # no new event since the last refresh
            pass

    def alive() -> bool:
        return not state["ended"] and not observer.buffer.flush_event_received

    _plotting.run_window(
        window,
        refresh=refresh,
        alive=alive,
        interval=interval,
        poll=min(0.1, interval),
        screenshot=screenshot,
        logger=buffer_io.logger,
    )
