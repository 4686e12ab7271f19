"""The plot tabs of the window: rates, CPU, processes alive per worker and buffer fill.

Each tab is a :class:`pyqtgraph.PlotWidget` that builds its curves or bars from the setup and
redraws them from the statistics the window receives (the window keeps the history).
"""

from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np

from mimocorb2._gui.colors import (
    ALIVE_COLOR,
    CONFIGURED_COLOR,
    EMPTY_COLOR,
    FAILED_COLOR,
    FILLED_COLOR,
    IN_USE_COLOR,
    PALETTE,
)
from mimocorb2._plotting import legend_below
from mimocorb2._qt import QtCore, QtGui, pg

HISTORY_S = 60.0
"""Seconds of history shown by the rate and CPU plots."""
MIN_RATE = 0.1
"""Rates below this are drawn at this value (the rate plot has a log axis)."""

History = dict[str, collections.deque[float]]


def _brush(color: str) -> QtGui.QBrush:
    return QtGui.QBrush(QtGui.QColor(color))


def _legend(plot: pg.PlotWidget, entries: int) -> None:
    """A legend under the x-axis, so it never hides a curve (up to six entries per row)."""
    legend_below(
        plot.getPlotItem(), entries, columns=6, pen=pg.mkPen("#bbbbbb"), labelTextColor="k"
    )


class RatePlot(pg.PlotWidget):
    """The "Rates" tab: the event rate of each buffer (log axis), roots drawn thicker.

    Args:
        buffer_names: The buffers, in the order of the setup.
        roots: The root buffers.
    """

    def __init__(self, buffer_names: list[str], roots: list[str]) -> None:
        """Creates one curve per buffer."""
        super().__init__(title="Event rate per buffer (last 60 s)")
        self.setLogMode(x=False, y=True)
        self.setLabel("left", "rate (Hz)")
        self.setLabel("bottom", "time active (s)")
        self.showGrid(x=True, y=True, alpha=0.25)
        _legend(self, len(buffer_names))
        self.curves = {}
        for i, b in enumerate(buffer_names):
            width = 3 if b in roots else 2
            pen = pg.mkPen(PALETTE[i % len(PALETTE)], width=width)
            label = f"{b} (root)" if b in roots else b
            self.curves[b] = self.plot([], [], pen=pen, name=label)
        self.setYRange(math.log10(MIN_RATE), 4, padding=0)
        self.setXRange(0, HISTORY_S, padding=0)

    def show_history(self, t: np.ndarray, x_max: float, rates: History) -> None:
        """Draws the rates (at least :data:`MIN_RATE`) of the last ``HISTORY_S`` to ``x_max``."""
        peak = MIN_RATE
        for b, curve in self.curves.items():
            values = np.fromiter(rates[b], float)
            curve.setData(t, values)
            if len(values):
                peak = max(peak, float(values[t >= x_max - HISTORY_S].max(initial=MIN_RATE)))
        self.setXRange(x_max - HISTORY_S, x_max, padding=0)
        top = max(4.0, math.ceil(math.log10(peak * 2)))
        self.setYRange(math.log10(MIN_RATE), top, padding=0)


class CpuPlot(pg.PlotWidget):
    """The "CPU" tab: the mean CPU of each worker's processes, of the control and the GUI.

    Args:
        names: The workers, then ``"control"`` and ``"gui"`` (drawn dashed).
    """

    def __init__(self, names: list[str]) -> None:
        """Creates one curve per name."""
        super().__init__(title="CPU per worker process (mean) and of the control")
        self.setLabel("left", "CPU (%)")
        self.setLabel("bottom", "time active (s)")
        self.showGrid(x=True, y=True, alpha=0.25)
        _legend(self, len(names))
        self.curves = {}
        for i, w in enumerate(names):
            if w in ("control", "gui"):
                style = QtCore.Qt.PenStyle.DashLine
            else:  # the colours repeat after ten workers: dotted then
                style = (
                    QtCore.Qt.PenStyle.SolidLine if i < len(PALETTE) else QtCore.Qt.PenStyle.DotLine
                )
            pen = pg.mkPen(PALETTE[i % len(PALETTE)], width=2, style=style)
            self.curves[w] = self.plot([], [], pen=pen, name=w)
        self.setYRange(0, 100, padding=0.02)
        self.setXRange(0, HISTORY_S, padding=0)

    def show_history(self, t: np.ndarray, x_max: float, cpu: History) -> None:
        """Draws the CPU history of the last ``HISTORY_S`` to ``x_max``."""
        cpu_peak = 10.0
        for w, curve in self.curves.items():
            values = np.fromiter(cpu[w], float)
            curve.setData(t, values)
            if len(values):
                cpu_peak = max(cpu_peak, float(values.max()) * 1.2)
        self.setXRange(x_max - HISTORY_S, x_max, padding=0)
        self.setYRange(0, math.ceil(cpu_peak / 10) * 10, padding=0.02)


class ProcessPlot(pg.PlotWidget):
    """The "Processes" tab: processes alive (green) and failed (red) of each worker.

    Args:
        worker_names: The workers, in the order of the setup.
        workers: The setup's workers (``number_of_processes`` of each, drawn grey).
    """

    def __init__(self, worker_names: list[str], workers: dict[str, Any]) -> None:
        """Creates the bars and labels of every worker."""
        super().__init__(title="Processes alive per worker (grey: configured)")
        self.worker_names = worker_names
        self.workers = workers
        n = len(worker_names)
        x = np.arange(n, dtype=float)
        configured = [workers[w]["number_of_processes"] for w in worker_names]
        self.setLabel("left", "processes")
        self.setMouseEnabled(x=False, y=False)
        self.configured_bars = pg.BarGraphItem(
            x=x, height=configured, width=0.65, brush=_brush(CONFIGURED_COLOR), pen=pg.mkPen("#999")
        )
        self.alive_bars = pg.BarGraphItem(
            x=x, height=np.zeros(n), width=0.5, brush=_brush(ALIVE_COLOR), pen=None
        )
        self.failed_bars = pg.BarGraphItem(
            x=x, y0=np.zeros(n), height=np.zeros(n), width=0.5, brush=_brush(FAILED_COLOR), pen=None
        )
        for item in (self.configured_bars, self.alive_bars, self.failed_bars):
            self.addItem(item)
        self.texts = []
        for i, c in enumerate(configured):
            text = pg.TextItem(f"0/{c}", anchor=(0.5, 1.0), color="k")
            text.setPos(i, c)
            self.addItem(text)
            self.texts.append(text)
        self.getAxis("bottom").setTicks([list(enumerate(worker_names))])
        self.setXRange(-0.6, max(n - 0.4, 0.6), padding=0)
        top = max(configured, default=1)
        self.setYRange(0, top * 1.25 + 0.2, padding=0)
        self.getAxis("left").setTickSpacing(max(1, math.ceil(top / 8)), 1)

    def update_stats(self, stats: dict[str, Any], failed: dict[str, int]) -> None:
        """Draws the processes alive and the failed ones (``failed``: count per worker)."""
        alive = np.array(
            [stats["workers"].get(w, {}).get("processes", 0) for w in self.worker_names], float
        )
        n_failed = np.array([failed.get(w, 0) for w in self.worker_names], float)
        self.alive_bars.setOpts(height=alive)
        self.failed_bars.setOpts(y0=alive, height=n_failed)
        for i, w in enumerate(self.worker_names):
            n = self.workers[w]["number_of_processes"]
            stopped = int(stats["workers"].get(w, {}).get("stopped", 0))
            text = (
                f"{int(alive[i])}/{n}"
                + (f"  ({int(n_failed[i])} failed)" if n_failed[i] else "")
                + (f"  ({stopped} stopped by user)" if stopped else "")
            )
            self.texts[i].setText(text, color=FAILED_COLOR if n_failed[i] else "k")
            self.texts[i].setPos(i, max(n, alive[i] + n_failed[i]))


class FillPlot(pg.PlotWidget):
    """The "Buffers" tab: filled, in-use and empty slots of each buffer; shut down shaded.

    Args:
        buffer_names: The buffers, in the order of the setup.
        buffers: The setup's buffers (``slot_count`` of each, shown in the labels).
    """

    def __init__(self, buffer_names: list[str], buffers: dict[str, Any]) -> None:
        """Creates the bars and labels of every buffer."""
        super().__init__(
            title="Buffer fill: filled (blue) / in use (orange) / empty (grey); shaded: shut down"
        )
        self.buffer_names = buffer_names
        m = len(buffer_names)
        y = np.arange(m, dtype=float)
        self.setLabel("bottom", "slots (%)")
        self.setMouseEnabled(x=False, y=False)
        self.invertY(True)
        self.bars = {
            key: pg.BarGraphItem(
                x0=np.zeros(m), y=y, width=np.zeros(m), height=0.6, brush=_brush(color), pen=None
            )
            for key, color in (
                ("filled", FILLED_COLOR),
                ("in_use", IN_USE_COLOR),
                ("empty", EMPTY_COLOR),
            )
        }
        for bar in self.bars.values():
            self.addItem(bar)
        self.ended_bars = pg.BarGraphItem(
            x0=np.zeros(m),
            y=y,
            width=np.zeros(m),
            height=0.6,
            brush=QtGui.QBrush(QtGui.QColor(40, 40, 40, 90)),
            pen=pg.mkPen("#222222", width=2, style=QtCore.Qt.PenStyle.DashLine),
        )
        self.addItem(self.ended_bars)
        self.texts = []
        for i in range(m):
            text = pg.TextItem("", anchor=(0.0, 0.5), color="k")
            text.setPos(101, i)
            self.addItem(text)
            self.texts.append(text)
        ticks = [(i, f"{b} ({buffers[b]['slot_count']})") for i, b in enumerate(buffer_names)]
        self.getAxis("left").setTicks([ticks])
        self.getAxis("bottom").setTicks([[(v, str(v)) for v in range(0, 101, 20)]])
        self.setXRange(0, 135, padding=0)
        self.setYRange(-0.6, max(m - 0.4, 0.6), padding=0)

    def update_stats(self, stats: dict[str, Any]) -> None:
        """Draws the fill of every buffer and labels it with its state."""
        filled, in_use, empty, ended = [], [], [], []
        for i, b in enumerate(self.buffer_names):
            s = stats["buffers"].get(b, {})
            f = 100.0 * float(s.get("filled_slots", 0.0))
            e = 100.0 * float(s.get("empty_slots", 0.0))
            u = max(0.0, 100.0 - f - e)
            filled.append(f)
            in_use.append(u)
            empty.append(e)
            ended.append(100.0 if s.get("flush_event_received") else 0.0)
            state = (
                "shut down"
                if s.get("flush_event_received")
                else ("paused" if s.get("paused") else f"{float(s.get('rate', 0.0)):.0f} Hz")
            )
            self.texts[i].setText(f"{state}, {f:.0f}% filled{group_backlog(s)}")
        filled_a, in_use_a = np.array(filled), np.array(in_use)
        self.bars["filled"].setOpts(x0=np.zeros(len(filled)), width=filled_a)
        self.bars["in_use"].setOpts(x0=filled_a, width=in_use_a)
        self.bars["empty"].setOpts(x0=filled_a + in_use_a, width=np.array(empty))
        self.ended_bars.setOpts(width=np.array(ended))


def group_backlog(buffer_stats: dict[str, Any]) -> str:
    """``"; backlog hist 3, csv 0"`` for a buffer with reader groups, else ``""``."""
    groups = buffer_stats.get("groups") or {}
    if not groups:
        return ""
    return "; backlog " + ", ".join(f"{n} {int(g['backlog'])}" for n, g in groups.items())
