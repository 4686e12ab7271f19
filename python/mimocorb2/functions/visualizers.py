"""Prebuilt visualizers: live histograms of the files written by the exporters.

``visualizers.histogram`` shows the histograms of ``exporters.histogram``
(``Histograms_<buffer>/info.csv`` and ``<field>.npy`` in the run directory) and
``visualizers.csv`` histograms columns of the CSV file of ``exporters.csv``. Both observe
the buffer the exporter reads, only to learn when it ends; they read nothing from it. The
plots are drawn with pyqtgraph in the worker's own process (Qt is only imported when a
worker runs). Without a display the worker logs that it is skipped and returns; set
``QT_QPA_PLATFORM=offscreen`` to render without one.
"""

from __future__ import annotations

import csv as _csv
import io as _io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2 import _plotting
from mimocorb2.functions._histogram_files import _HistogramFiles as _HistogramFiles
from mimocorb2.functions._histogram_files import _UntilFinalWrite
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import IsAlive

__all__ = ["csv", "histogram"]

PLOT_TYPES = ("line", "bar", "step", "stepfilled")
"""Ways to draw a histogram (``plot_type``)."""

METADATA_COLUMNS = ("counter", "timestamp", "deadtime")

_END = {"ended": "buffer ended", "closed": "window closed"}


def _plot_type(io: BufferIO, default: str, alias: str | None = None) -> str:
    value = io.get("plot_type")
    key = "plot_type"
    if value is None and alias is not None:
        value, key = io.get(alias), alias
    if value is None:
        return default
    if value not in PLOT_TYPES:
        raise ValueError(
            f"worker '{io.name}': config '{key}' must be one of {', '.join(PLOT_TYPES)}, "
            f"got {value!r}"
        )
    return str(value)


class _HistogramPlot:
    """One histogram in a pyqtgraph PlotItem, drawn as line, bar, step or stepfilled."""

    def __init__(
        self, plot: Any, name: str, plot_type: str, color: Any, unit: str | None = None
    ) -> None:
        from mimocorb2._qt import pg

        self.plot = plot
        self.name = name
        self.plot_type = plot_type
        self.color = color
        self.edges: np.ndarray | None = None
        self.item: Any = None
        self._pg = pg
        plot.setLabel("bottom", f"{name} ({unit})" if unit else name)
        plot.setLabel("left", "entries per bin")
        plot.showGrid(x=True, y=True, alpha=0.25)
        plot.setTitle(name)
        # nothing to show yet: an empty 0..1 frame, not pyqtgraph's default range
        plot.setXRange(0.0, 1.0, padding=0)
        plot.setYRange(0.0, 1.0, padding=0)
        plot.enableAutoRange(x=False, y=False)
        self.title = name

    def _build(self, edges: np.ndarray, counts: np.ndarray) -> None:
        pg = self._pg
        if self.item is not None:
            self.plot.removeItem(self.item)
        fill = pg.mkColor(self.color)
        fill.setAlpha(110)
        if self.plot_type == "bar":
            self.item = pg.BarGraphItem(
                x0=edges[:-1],
                x1=edges[1:],
                height=counts,
                brush=pg.mkBrush(self.color),
                # thin dark separators, unless the bars are too narrow to show them
                pen=pg.mkPen("k", width=0) if len(counts) <= 200 else pg.mkPen(None),
            )
        elif self.plot_type == "line":
            # fillLevel without a brush: nothing is filled, but the y-range includes 0
            self.item = pg.PlotDataItem(
                0.5 * (edges[:-1] + edges[1:]),
                counts,
                pen=pg.mkPen(self.color, width=1),
                fillLevel=0,
                brush=None,
            )
        else:  # step, stepfilled
            self.item = pg.PlotDataItem(
                edges,
                counts,
                stepMode="center",
                pen=pg.mkPen(self.color, width=1),
                fillLevel=0,
                brush=pg.mkBrush(fill) if self.plot_type == "stepfilled" else None,
            )
        self.plot.addItem(self.item)
        self.plot.setXRange(float(edges[0]), float(edges[-1]), padding=0.02)
        self.edges = edges

    def update(self, edges: np.ndarray, counts: np.ndarray, title: str | None = None) -> None:
        """Shows ``counts`` (one per bin between ``edges``)."""
        counts = np.asarray(counts, dtype=np.float64)
        if self.edges is None or not np.array_equal(self.edges, edges):
            self._build(edges, counts)
        elif self.plot_type == "bar":
            self.item.setOpts(height=counts)
        elif self.plot_type == "line":
            self.item.setData(0.5 * (edges[:-1] + edges[1:]), counts)
        else:
            self.item.setData(edges, counts)
        if counts.any():
            self.plot.enableAutoRange(y=True)
        else:  # empty: 0..1 counts instead of an autoscaled range around nothing
            self.plot.enableAutoRange(y=False)
            self.plot.setYRange(0.0, 1.0, padding=0)
        if title is not None:
            self.plot.setTitle(title)
            self.title = title


def _units(io: BufferIO) -> dict[str, str]:
    """The ``units`` config: a unit per field, shown on the x-axes (``{energy: keV}``)."""
    value = io.get("units")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(
            f"worker '{io.name}': config 'units' must map field names to units, e.g. "
            f"{{peak_heights: mV}}, got {value!r}"
        )
    return {str(k): str(v) for k, v in value.items() if v is not None and str(v)}


def _layout(
    window: Any, names: list[str], plot_type: str, units: dict[str, str] | None = None
) -> dict[str, _HistogramPlot]:
    """A grid of histogram plots in a GraphicsLayoutWidget; x-axes: field (unit)."""
    window.clear()
    _, cols = _plotting.grid_shape(len(names))
    plots = {}
    for i, name in enumerate(names):
        row, col = divmod(i, cols)
        item = window.addPlot(row=row, col=col)
        unit = (units or {}).get(name)
        plots[name] = _HistogramPlot(item, name, plot_type, _plotting.color(None, i), unit)
    return plots


def _entries_title(name: str, entries: int, under: int | None, over: int | None) -> str:
    parts = [f"{entries} entries"]
    if under:
        parts.append(f"{under} underflow")
    if over:
        parts.append(f"{over} overflow")
    return f"{name} ({', '.join(parts)})"


def _open_window(io: BufferIO, function: str, title: str) -> Any:
    """A GraphicsLayoutWidget titled ``title``, or None (logged) when there is no display."""
    if _plotting.skip_without_display(io, function):
        return None

    from mimocorb2._qt import pg

    _plotting.application(io.logger)
    window = pg.GraphicsLayoutWidget()
    window.setWindowTitle(title)
    return window


def _show(
    io: BufferIO,
    function: str,
    window: Any,
    *,
    refresh: Callable[[], None],
    alive: Callable[[], bool],
    interval: float,
    screenshot: Path | None,
    summary: Callable[[], str],
) -> None:
    """Runs the window until the end (see :func:`_plotting.run_window`); logs ``summary()``."""
    how = _plotting.run_window(
        window,
        refresh=refresh,
        alive=alive,
        interval=interval,
        poll=min(0.1, interval),
        screenshot=screenshot,
        logger=io.logger,
    )
    io.logger.info("%s %s (%s): %s", function, io.name, _END[how], summary())


# ----- visualizers.histogram -----


def histogram(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Visualize histograms from the histogram exporter.

    Visualizes histograms of the data in the source buffer with pyqtgraph. The histograms
    are read from the npy files saved by the histogram exporter
    (``Histograms_<buffer>/info.csv`` and ``<channel>.npy`` in the run directory), every
    ``update_interval`` seconds; until the files exist the window says it is waiting. When
    the observed buffer has ended the final counts are shown (it waits up to 2 s for the
    exporter's last write) and the window, marked "run finished", stays open until the user
    closes it (``MIMOCORB2_PLOTS_STAY_OPEN=0``, and display-less platforms such as
    ``offscreen``, close it at once); closing the window ends the worker. Without a display
    the worker logs that it is skipped and returns.

    Type
        IsAlive

    Buffers
        sources
            0
        sinks
            0
        observes
            1 the same as the source buffer of the exporter

    Configs
        update_interval : int, optional (default=1)
            Interval in seconds to update the histograms.
        plot_type : str, optional (default='line')
            Type of plot to use for the histograms. Options are 'line', 'bar', 'step' or
            'stepfilled'.
        units : dict, optional (default=None)
            Unit of each field, shown with its name on the x-axis, e.g.
            ``{peak_heights: mV}``.
        screenshot : str, optional (default=None)
            If set, a PNG of the window is saved to this path when the worker ends (relative
            paths are taken in the run directory).

    Examples:
        In the setup file::

            Workers:
              histograms:
                function: exporters.histogram
                sources: [pulse_parameters]
                config:
                  bins: {peak_heights: [0, 4096, 128]}
              show_histograms:
                function: visualizers.histogram
                observes: [pulse_parameters]
                config:
                  plot_type: step
    """
    is_alive = IsAlive(buffer_io)
    interval = _plotting.interval_config(buffer_io, "update_interval", 1.0)
    plot_type = _plot_type(buffer_io, "line")
    units = _units(buffer_io)
    screenshot = _plotting.screenshot_path(buffer_io)
    buffer_name = is_alive.buffer.name
    function = "visualizers.histogram"
    window = _open_window(buffer_io, function, f"Histograms: {buffer_io.name} ({buffer_name})")
    if window is None:
        return

    files = _HistogramFiles(Path(buffer_io.run_dir) / f"Histograms_{buffer_name}")
    window.addLabel(f"waiting for {files.info_file.parent.name}/{files.info_file.name} ...")
    state: dict[str, Any] = {"channels": None, "plots": {}}

    def refresh() -> None:
        snapshot = files.read(state["channels"])
        if snapshot is None:
            return
        info, counts = snapshot
        channels = [row["channel"] for row in info]
        if channels != state["channels"]:
            state["channels"] = channels
            state["plots"] = _layout(window, channels, plot_type, units)
        for row in info:
            channel_counts = counts.get(row["channel"])
            if channel_counts is None:
                continue
            # exactly NBins counts; older files had NBins - 1 (linspace edges): same formula
            edges = np.linspace(row["min"], row["max"], channel_counts.size + 1)
            title = _entries_title(
                row["channel"], int(channel_counts.sum()), row["underflow"], row["overflow"]
            )
            state["plots"][row["channel"]].update(edges, channel_counts, title)

    def summary() -> str:
        shown = [p.title for p in state["plots"].values()]
        return "; ".join(shown) or f"{files.info_file} never appeared"

    _show(
        buffer_io,
        function,
        window,
        refresh=refresh,
        alive=_UntilFinalWrite(is_alive, files, poll=min(0.1, interval)),
        interval=interval,
        screenshot=screenshot,
        summary=summary,
    )


# ----- visualizers.csv -----


class _CsvTail:
    """Reads the rows appended to a CSV file since the last call.

    The file may be replaced (atomically) by a longer version of itself: reading goes on at
    the previous end, after checking that the bytes before it did not change; otherwise the
    whole file is read again. An incomplete last line is left for the next call.
    """

    _CHECK = 64  # bytes before the read position compared to detect a rewritten file

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self.header: list[str] | None = None
        self.indices: dict[str, int] = {}
        self.offset = 0
        self._tail = b""

    def read(self) -> tuple[bool, dict[str, np.ndarray]] | None:
        """``(restarted, {column: new values})``; None while the file is missing or empty.

        ``restarted`` is true when the values are the whole file again (the earlier values
        must be dropped).
        """
        try:
            with open(self.path, "rb") as f:
                restarted = False
                if self.header is not None and not self._unchanged(f):
                    self.header, self.offset, self._tail = None, 0, b""
                    restarted = True
                if self.header is None:
                    f.seek(0)
                    first = f.readline()
                    if not first.endswith(b"\n"):
                        return None
                    self._set_header(first)
                    self.offset = len(first)
                    self._tail = first[-self._CHECK :]
                    restarted = True
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return None
        end = chunk.rfind(b"\n") + 1
        chunk = chunk[:end]
        if chunk:
            self.offset += end
            self._tail = (self._tail + chunk)[-self._CHECK :]
        return restarted, self._parse(chunk)

    def _unchanged(self, f: Any) -> bool:
        start = self.offset - len(self._tail)
        try:
            size = os.fstat(f.fileno()).st_size
        except OSError:
            return False
        if size < self.offset:
            return False
        f.seek(start)
        return bool(f.read(len(self._tail)) == self._tail)

    def _set_header(self, line: bytes) -> None:
        names = next(_csv.reader([line.decode(errors="replace").strip()]), [])
        self.header = [n.strip() for n in names]
        self.indices = {c: self.header.index(c) for c in self.columns if c in self.header}

    def _parse(self, chunk: bytes) -> dict[str, np.ndarray]:
        if not chunk or not self.indices:
            return {c: np.empty(0) for c in self.indices}
        cols = list(self.indices.values())
        text = chunk.decode(errors="replace")
        try:
            table = np.loadtxt(
                _io.StringIO(text), delimiter=",", usecols=cols, ndmin=2, dtype=np.float64
            )
        except ValueError:  # a malformed line: parse line by line, skipping bad ones
            rows = []
            for line in text.splitlines():
                parts = line.split(",")
                try:
                    rows.append([float(parts[i]) for i in cols])
                except (IndexError, ValueError):
                    continue
            table = np.array(rows, dtype=np.float64).reshape(-1, len(cols))
        return {c: table[:, j] for j, c in enumerate(self.indices)}


def _bins(io: BufferIO, available: list[str]) -> dict[str, np.ndarray]:
    """The histogram edges of the configured channels (``bins: {channel: [min, max, n]}``)."""
    config = io["bins"]
    if not isinstance(config, dict) or not config:
        raise ValueError(
            f"worker '{io.name}': config 'bins' must map channel names to [min, max, "
            f"number_of_bins], got {config!r}"
        )
    edges = {}
    for name, spec in config.items():
        name = str(name)
        if name not in available:
            io.logger.warning(
                "worker '%s': channel '%s' of config 'bins' is not in the data "
                "(available: %s); it is not shown",
                io.name,
                name,
                ", ".join(available),
            )
            continue
        try:
            lo, hi, n = spec
            lo, hi, n_bins = float(lo), float(hi), int(n)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"worker '{io.name}': config 'bins' entry '{name}' must be [min, max, "
                f"number_of_bins], got {spec!r}"
            ) from e
        if not (lo < hi and n_bins >= 1):
            raise ValueError(
                f"worker '{io.name}': config 'bins' entry '{name}' needs min < max and at "
                f"least 1 bin, got {spec!r}"
            )
        edges[name] = np.linspace(lo, hi, n_bins + 1)
    if not edges:
        raise ValueError(
            f"worker '{io.name}': none of the channels in config 'bins' is in the data "
            f"(available: {', '.join(available)})"
        )
    return edges


def csv(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Visualize histograms from the CSV exporter.

    Visualizes histograms of the data in the source buffer with pyqtgraph. The histograms
    are filled from the CSV file saved by the csv exporter: every ``update_interval``
    seconds the rows added since the last update are read and counted (the file is never
    read twice). Until the file exists the plots stay empty. When the observed buffer ends
    the window, marked "run finished", stays open until the user closes it (see
    ``visualizers.histogram``); closing the window ends the worker. Without a display the worker
    logs that it is skipped and returns.

    Type
        IsAlive

    Buffers
        sources
            0
        sinks
            0
        observes
            1 the same as the source buffer of the exporter

    Configs
        update_interval : int, optional (default=1)
            Interval in seconds to update the histograms.
        plot_type : str, optional (default='bar')
            How to draw the histograms: 'bar', 'step', 'stepfilled' or 'line'. ``histtype`` is
            accepted as another name for this key.
        bins : dict
            Dictionary where keys are channel names and values are tuples of (min, max,
            number_of_bins). Channels must be present in the source buffer data (or be
            ``counter``, ``timestamp`` or ``deadtime``). Values outside (min, max) are counted
            as underflow or overflow and shown in the title.
        filename : str, optional (default='buffer_name')
            Name of the CSV file written by the csv exporter, in the run_dir (without
            ``.csv``).
        units : dict, optional (default=None)
            Unit of each field, shown with its name on the x-axis, e.g.
            ``{peak_heights: mV}``.
        screenshot : str, optional (default=None)
            If set, a PNG of the window is saved to this path when the worker ends (relative
            paths are taken in the run directory).

    Examples:
        In the setup file::

            Workers:
              save_parameters:
                function: exporters.csv
                sources: [pulse_parameters]
              show_parameters:
                function: visualizers.csv
                observes: [pulse_parameters]
                config:
                  bins: {peak_heights: [0, 4096, 128]}
                  plot_type: step
    """
    is_alive = IsAlive(buffer_io)
    buffer_name = is_alive.buffer.name
    fields = list(buffer_io.data_observe_examples[0].dtype.names or ())
    edges = _bins(buffer_io, fields + [c for c in METADATA_COLUMNS if c not in fields])
    interval = _plotting.interval_config(buffer_io, "update_interval", 1.0)
    plot_type = _plot_type(buffer_io, "bar", alias="histtype")
    filename = str(buffer_io.get("filename") or buffer_name)
    if not filename.endswith(".csv"):
        filename += ".csv"
    path = Path(buffer_io.run_dir) / filename
    screenshot = _plotting.screenshot_path(buffer_io)
    function = "visualizers.csv"
    window = _open_window(buffer_io, function, f"CSV histograms: {buffer_io.name} ({path.name})")
    if window is None:
        return

    names = list(edges)
    plots = _layout(window, names, plot_type, _units(buffer_io))
    tail = _CsvTail(path, names)
    counts = {n: np.zeros(len(e) - 1, dtype=np.int64) for n, e in edges.items()}
    for name in names:
        plots[name].update(edges[name], counts[name], f"{name} (waiting for {path.name})")
    under = dict.fromkeys(names, 0)
    over = dict.fromkeys(names, 0)
    warned: set[str] = set()

    def refresh() -> None:
        result = tail.read()
        if result is None:
            return
        restarted, columns = result
        for name in names:
            if restarted:
                counts[name][:] = 0
                under[name] = over[name] = 0
            values = columns.get(name)
            if values is None:
                if tail.header is not None and name not in warned:
                    warned.add(name)
                    buffer_io.logger.warning(
                        "worker '%s': column '%s' is not in %s", buffer_io.name, name, path.name
                    )
                continue
            e = edges[name]
            values = values[np.isfinite(values)]
            if values.size:
                counts[name] += np.histogram(values, bins=e)[0]
                under[name] += int(np.count_nonzero(values < e[0]))
                over[name] += int(np.count_nonzero(values > e[-1]))
            if values.size or restarted:
                title = _entries_title(name, int(counts[name].sum()), under[name], over[name])
                plots[name].update(e, counts[name], title)

    def summary() -> str:
        return "; ".join(_entries_title(n, int(counts[n].sum()), under[n], over[n]) for n in names)

    _show(
        buffer_io,
        function,
        window,
        refresh=refresh,
        alive=is_alive,
        interval=interval,
        screenshot=screenshot,
        summary=summary,
    )
