"""Figures of the run report, drawn with matplotlib from the files of a run directory.

Every figure is a :class:`matplotlib.figure.Figure` made without pyplot: nothing global is
touched, no backend is selected and no display is needed (saving picks Agg for PNG and the
PDF backend for PDF). The readers (:func:`read_stats`, :func:`read_histograms`) and the summary
tables (:func:`buffer_table`, :func:`worker_table`) are plain Python, shared by the figures and
by ``report/index.html``, so the numbers on the figures and on the page are the same.

Sources in the run directory:

- ``stats.csv`` (mode ``stats``): one row per statistics interval with ``time_active`` and
  ``buffers.<name>.<key>`` columns (see :mod:`mimocorb2._stats_logger`);
- ``run_summary.json``: the loss ledger (see :mod:`mimocorb2._ledger`);
- ``Histograms_<buffer>/``: ``info.csv`` and ``<field>.npy`` of ``exporters.histogram``.
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "BUFFER_COLUMNS",
    "WORKER_COLUMNS",
    "HistogramChannel",
    "RunStats",
    "buffer_table",
    "fill_figure",
    "histogram_figure",
    "rate_figure",
    "read_histograms",
    "read_stats",
    "summary_figure",
    "worker_table",
]

MIN_INTERVAL_S = 0.5
"""Statistics rows closer than this are merged for the rate and dead-time curves."""

BUFFER_COLUMNS = (
    "buffer",
    "committed",
    "consumed",
    "filtered",
    "lost",
    "paused discarded",
    "overwritten",
    "mean rate / Hz",
    "dead time / %",
)
"""Columns of the buffer table; the last two come from ``stats.csv`` (blank without it)."""

WORKER_COLUMNS = (
    "worker",
    "read",
    "written",
    "filtered out",
    "dropped",
    "failed processes",
    "restarts",
    "stopped by user",
)
"""Columns of the worker table, all from ``run_summary.json``."""

_WORKER_KEYS = (
    "read",
    "written",
    "filtered_out",
    "dropped",
    "failed_processes",
    "restarts",
    "stopped_by_user",
)
_PAUSE_COLOR = "0.85"


# ----- reading -----


@dataclass
class RunStats:
    """The contents of ``stats.csv``.

    Attributes:
        time: Seconds since the workers started (``time_active``), one value per row.
        buffers: Buffer name → column name (``event_count``, ``filled_slots`` ...) → values.
    """

    time: np.ndarray
    buffers: dict[str, dict[str, np.ndarray]]

    @property
    def duration(self) -> float:
        """Seconds from the start of the workers to the last row (the end of the run)."""
        return float(self.time[-1]) if self.time.size else 0.0

    def final(self, buffer: str, column: str) -> float:
        """The value of a buffer's column in the last row (NaN when absent)."""
        values = self.buffers.get(buffer, {}).get(column)
        return float(values[-1]) if values is not None and values.size else math.nan

    def mean_rate(self, buffer: str) -> float:
        """Events per second over the whole run (NaN for a run of no measurable length)."""
        events = self.final(buffer, "event_count")
        return events / self.duration if self.duration > 0 else math.nan


def _number(text: str | None) -> float:
    if text is None:
        return math.nan
    if text in ("True", "False"):
        return 1.0 if text == "True" else 0.0
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_stats(path: Path) -> RunStats:
    """Reads ``stats.csv``.

    Args:
        path: The file.

    Returns:
        Its rows as arrays, in file order.

    Raises:
        OSError: If the file cannot be read.
        ValueError: If it has no ``time_active`` column or no row.
    """
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "time_active" not in rows[0]:
        raise ValueError(f"{path.name} has no rows with a time_active column")
    time = np.array([_number(r.get("time_active")) for r in rows])
    buffers: dict[str, dict[str, np.ndarray]] = {}
    suffix = ".event_count"
    names = [
        k[len("buffers.") : -len(suffix)]
        for k in rows[0]
        if k.startswith("buffers.") and k.endswith(suffix)
    ]
    for name in names:
        prefix = f"buffers.{name}."
        columns = [k[len(prefix) :] for k in rows[0] if k.startswith(prefix)]
        buffers[name] = {c: np.array([_number(r.get(prefix + c)) for r in rows]) for c in columns}
    return RunStats(time=time, buffers=buffers)


@dataclass
class HistogramChannel:
    """One field of a ``Histograms_<buffer>`` directory.

    Attributes:
        name: The field.
        low: Lower edge of the first bin.
        high: Upper edge of the last bin.
        counts: Counts per bin.
        underflow: Values below ``low``.
        overflow: Values above ``high``.
    """

    name: str
    low: float
    high: float
    counts: np.ndarray
    underflow: int
    overflow: int

    @property
    def edges(self) -> np.ndarray:
        """The bin edges, as ``exporters.histogram`` uses them."""
        return np.linspace(self.low, self.high, self.counts.size + 1)


def read_histograms(directory: Path) -> list[HistogramChannel]:
    """Reads ``info.csv`` and the ``<field>.npy`` files written by ``exporters.histogram``.

    Args:
        directory: A ``Histograms_<buffer>`` directory.

    Returns:
        One channel per row of ``info.csv``.

    Raises:
        OSError: If a file is missing or unreadable.
        ValueError: If a file does not match ``info.csv``.
    """
    with open(directory / "info.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    channels = []
    for row in rows:
        name = row["Channel"]
        counts = np.load(directory / f"{name}.npy", allow_pickle=False)
        nbins = int(row["NBins"])
        if counts.ndim != 1 or counts.size != nbins:
            raise ValueError(f"{name}.npy holds {counts.shape} counts, info.csv says {nbins}")
        channels.append(
            HistogramChannel(
                name=name,
                low=float(row["Min"]),
                high=float(row["Max"]),
                counts=counts.astype(np.int64),
                underflow=int(float(row.get("Underflow") or 0)),
                overflow=int(float(row.get("Overflow") or 0)),
            )
        )
    return channels


# ----- rates, dead time and fill levels -----


def _kept_rows(time: np.ndarray) -> np.ndarray:
    """Indices of the rows bounding the rate intervals: at least MIN_INTERVAL_S apart."""
    kept = [0]
    for i in range(1, time.size):
        if time[i] - time[kept[-1]] >= MIN_INTERVAL_S:
            kept.append(i)
    if kept[-1] != time.size - 1:  # the last row closes the run: merge the short rest
        if len(kept) > 1:
            kept[-1] = time.size - 1
        else:
            kept.append(time.size - 1)
    return np.array(kept)


def _intervals(stats: RunStats) -> dict[str, Any]:
    """Per buffer the event rate and the mean dead time of each interval between kept rows."""
    idx = _kept_rows(stats.time)
    edges = stats.time[idx]
    span = np.diff(edges)
    out: dict[str, Any] = {"edges": edges, "rate": {}, "dead": {}, "paused": None}
    paused = np.zeros(span.size, dtype=bool)
    for name, cols in stats.buffers.items():
        events = cols.get("event_count", np.zeros(stats.time.size))[idx]
        new = np.diff(events)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["rate"][name] = np.where(span > 0, new / span, np.nan)
            dead = cols.get("mean_event_deadtime")
            if dead is not None:
                summed = dead[idx] * events
                out["dead"][name] = np.where(new > 0, 100.0 * np.diff(summed) / new, np.nan)
        flag = cols.get("paused")
        if flag is not None:
            paused |= (flag[idx][:-1] > 0) | (flag[idx][1:] > 0)
        count = cols.get("paused_count")
        if count is not None:
            paused |= np.diff(count[idx]) > 0
    out["paused"] = paused
    return out


def _mark_pauses(axes: Sequence[Any], edges: np.ndarray, paused: np.ndarray) -> bool:
    """Shades the paused intervals (joined where adjacent) on every axis.

    Returns:
        Whether there was a pause.
    """
    flags = np.concatenate([[False], paused, [False]]).astype(int)
    starts = np.flatnonzero(np.diff(flags) == 1)
    ends = np.flatnonzero(np.diff(flags) == -1)
    for a, b in zip(starts, ends, strict=True):
        for ax in axes:
            ax.axvspan(edges[a], edges[b], color=_PAUSE_COLOR, zorder=0, lw=0, gid="pause")
    return bool(starts.size)


def _legend(ax: Any, handles: int) -> None:
    if handles:
        ax.legend(fontsize="small", ncols=min(3, handles), loc="best", framealpha=0.8)


def rate_figure(stats: RunStats, run_name: str) -> Figure:
    """Event rate and dead time of every buffer over the run, with the pauses shaded.

    The rate of an interval is its new events over its length; its dead time is the mean
    dead time of the events committed in it (as the status line's, over the interval).

    Args:
        stats: The run's ``stats.csv``.
        run_name: Shown in the title.

    Returns:
        The figure: rates above, dead time below, sharing the time axis.
    """
    fig = Figure(figsize=(9, 6.5), layout="constrained")
    ax_rate, ax_dead = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    data = _intervals(stats)
    edges = data["edges"]
    n_rate = n_dead = 0
    for i, name in enumerate(stats.buffers):
        color = f"C{i % 10}"
        rate = data["rate"][name]
        if edges.size > 1 and np.isfinite(rate).any():
            ax_rate.stairs(np.nan_to_num(rate), edges, color=color, lw=1.5, label=name)
            n_rate += 1
        dead = data["dead"].get(name)
        if dead is not None and edges.size > 1 and np.nanmax(dead, initial=0.0) > 0:
            ax_dead.stairs(np.nan_to_num(dead), edges, color=color, lw=1.5, label=name)
            n_dead += 1
    if _mark_pauses((ax_rate, ax_dead), edges, data["paused"]):
        ax_rate.axvspan(0, 0, color=_PAUSE_COLOR, label="paused")
        n_rate += 1
    if not n_rate:
        ax_rate.text(0.5, 0.5, "no events", ha="center", va="center", transform=ax_rate.transAxes)
    if not n_dead:
        ax_dead.text(
            0.5,
            0.5,
            "no dead time recorded",
            ha="center",
            va="center",
            transform=ax_dead.transAxes,
        )
    ax_rate.set_ylabel("event rate / Hz")
    ax_rate.set_ylim(bottom=0)
    ax_dead.set_ylabel("dead time / %")
    ax_dead.set_ylim(bottom=0)
    ax_dead.set_xlabel("time since the start of the workers / s")
    ax_rate.set_xlim(0, max(stats.duration, 1e-3))
    for ax in (ax_rate, ax_dead):
        ax.grid(alpha=0.3)
    _legend(ax_rate, n_rate)
    _legend(ax_dead, n_dead)
    fig.suptitle(f"Event rate and dead time: {run_name}")
    return fig


def fill_figure(stats: RunStats, run_name: str) -> Figure:
    """Fill level (filled slots in % of ``slot_count``) of every buffer over the run.

    Args:
        stats: The run's ``stats.csv``.
        run_name: Shown in the title.

    Returns:
        The figure, one line per buffer, with the pauses shaded.
    """
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    n = 0
    for i, (name, cols) in enumerate(stats.buffers.items()):
        fill = cols.get("filled_slots")
        if fill is None:
            continue
        ax.plot(stats.time, 100.0 * fill, color=f"C{i % 10}", lw=1.5, marker=".", label=name)
        n += 1
    data = _intervals(stats)
    if _mark_pauses((ax,), data["edges"], data["paused"]):
        ax.axvspan(0, 0, color=_PAUSE_COLOR, label="paused")
        n += 1
    ax.set_ylim(-2, 102)
    ax.set_xlim(0, max(stats.duration, 1e-3))
    ax.set_ylabel("filled slots / %")
    ax.set_xlabel("time since the start of the workers / s")
    ax.grid(alpha=0.3)
    _legend(ax, n)
    fig.suptitle(f"Buffer fill levels: {run_name}")
    return fig


# ----- histograms -----


def _grid(n: int) -> tuple[int, int]:
    cols = max(1, math.ceil(math.sqrt(n)))
    return max(1, math.ceil(n / cols)), cols


def histogram_figure(
    buffer: str,
    channels: Sequence[HistogramChannel],
    units: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    workers: Sequence[str] = (),
) -> Figure:
    """The histograms of one buffer: one panel per field, under- and overflow printed.

    Args:
        buffer: The buffer (``Histograms_<buffer>``).
        channels: Its fields, from :func:`read_histograms`.
        units: Unit per field for the x-axis label (``{peak_heights: mV}``).
        labels: Axis label per field instead of the field name.
        workers: The histogram exporter worker(s), named in the title.

    Returns:
        The figure.
    """
    units = units or {}
    labels = labels or {}
    rows, cols = _grid(len(channels))
    fig = Figure(figsize=(min(4.5 * cols, 14), min(3.4 * rows, 11)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, ch in zip(axes, channels, strict=False):
        ax.stairs(ch.counts, ch.edges, fill=True, color="C0", alpha=0.3)
        ax.stairs(ch.counts, ch.edges, color="C0", lw=1.2)
        unit = units.get(ch.name)
        label = labels.get(ch.name, ch.name)
        ax.set_xlabel(f"{label} / {unit}" if unit else label)
        width = (ch.high - ch.low) / max(ch.counts.size, 1)
        ax.set_ylabel(f"entries per {width:.3g}" + (f" {unit}" if unit else ""))
        ax.set_xlim(ch.low, ch.high)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.text(
            0.98,
            0.97,
            f"entries {int(ch.counts.sum())}\nunderflow {ch.underflow}\noverflow {ch.overflow}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize="small",
            family="monospace",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "lw": 0.5},
        )
    for ax in axes[len(channels) :]:
        ax.set_axis_off()
    by = f" (worker {', '.join(workers)})" if workers else ""
    fig.suptitle(f"Histograms of buffer {buffer}{by}")
    return fig


# ----- the summary -----


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def buffer_table(
    summary: Mapping[str, Any],
    readers: Mapping[str, Sequence[str]],
    stats: RunStats | None,
) -> list[list[str]]:
    """Rows of the buffer table (:data:`BUFFER_COLUMNS`).

    Args:
        summary: ``run_summary.json``.
        readers: Buffer → the workers that read it (their ``filtered_out`` is its filtered).
        stats: ``stats.csv`` for the mean rate and the whole run's dead time, or None.

    Returns:
        One row of texts per buffer of the ledger.
    """
    workers = summary.get("workers", {})
    rows = []
    for name, b in summary.get("buffers", {}).items():
        filtered = sum(
            int(workers.get(w, {}).get("filtered_out", 0)) for w in readers.get(name, ())
        )
        rate = dead = math.nan
        if stats is not None and name in stats.buffers:
            rate = stats.mean_rate(name)
            dead = 100.0 * stats.final(name, "mean_event_deadtime")
        rows.append(
            [
                name,
                _fmt(int(b.get("committed", 0))),
                _fmt(int(b.get("consumed", 0))),
                _fmt(filtered),
                _fmt(int(b.get("lost", 0))),
                _fmt(int(b.get("paused_discarded", 0))),
                _fmt(int(b.get("overwritten", 0))),
                _fmt(rate),
                _fmt(dead),
            ]
        )
    return rows


def worker_table(summary: Mapping[str, Any]) -> list[list[str]]:
    """Rows of the worker table (:data:`WORKER_COLUMNS`), from ``run_summary.json``."""
    return [
        [name, *(_fmt(int(w.get(k, 0))) for k in _WORKER_KEYS)]
        for name, w in summary.get("workers", {}).items()
    ]


def outcome(summary: Mapping[str, Any], partial: bool) -> str:
    """One line on how the run ended, from ``run_summary.json``."""
    failed = sum(int(w.get("failed_processes", 0)) for w in summary.get("workers", {}).values())
    lost = int(summary.get("events_lost", 0))
    if failed:
        text = f"FAILED: {failed} process(es) failed"
    elif partial:
        text = "stopped by the user: partial results"
    elif lost:
        text = "complete, with events lost"
    else:
        text = "complete, no event lost"
    return f"exit status {summary.get('exit_status', '?')} ({text}), events lost: {lost}"


_CHAR_IN = 0.068
"""Width of one character of the 8 pt table text in inches (digits, roughly)."""
_ROW_IN = 0.22
"""Height of one table row in inches."""


def _header(column: str) -> str:
    """A column title on two lines: ``mean rate / Hz`` becomes ``mean rate`` over ``/ Hz``."""
    if " / " in column:
        return column.replace(" / ", "\n/ ")
    return column.replace(" ", "\n", 1)


def _table_size(columns: Sequence[str], rows: list[list[str]]) -> tuple[list[int], float]:
    """Characters per column and the table's height in inches."""
    chars = [
        max([*(len(x) for x in _header(c).split("\n")), *(len(r[i]) for r in rows)]) + 2
        for i, c in enumerate(columns)
    ]
    chars[0] = round(chars[0] * 1.2)  # names: letters are wider than digits
    return chars, _ROW_IN * (len(rows) + 2)


def _table(
    fig: Figure, columns: Sequence[str], rows: list[list[str]], top: float, left: float
) -> float:
    """Draws a table with its top-left corner at (``left``, ``top``) inches; returns its height."""
    chars, height = _table_size(columns, rows)
    width_in, height_in = fig.get_size_inches()
    width = sum(chars) * _CHAR_IN
    ax = fig.add_axes(
        (
            left / width_in,
            (height_in - top - height) / height_in,
            width / width_in,
            height / height_in,
        )
    )
    ax.set_axis_off()
    table = ax.table(
        cellText=rows or [["none", *([""] * (len(columns) - 1))]],
        colLabels=[_header(c) for c in columns],
        colWidths=[c / sum(chars) for c in chars],
        cellLoc="right",
        colLoc="center",
        bbox=(0, 0, 1, 1),
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (r, c), cell in table.get_celld().items():
        if r == 0:
            cell.set_height(cell.get_height() * 2)
            cell.set_facecolor("0.92")
        if c == 0:
            cell.set_text_props(ha="left")
    return height


def summary_figure(
    run_name: str,
    summary: Mapping[str, Any],
    readers: Mapping[str, Sequence[str]],
    stats: RunStats | None,
    run_time: float | None,
    notes: Sequence[str] = (),
    partial: bool = False,
) -> Figure:
    """The run summary: outcome, run time, the buffer and worker tables, losses and notes.

    Args:
        run_name: The run directory's name.
        summary: ``run_summary.json``.
        readers: Buffer → workers reading it (for the filtered column).
        stats: ``stats.csv``, or None.
        run_time: Seconds the run took, or None when unknown.
        notes: Lines printed under the tables (e.g. errors of the report itself).
        partial: Whether ``PARTIAL_RESULTS.txt`` marks the results as partial.

    Returns:
        The figure.
    """
    b_rows = buffer_table(summary, readers, stats)
    w_rows = worker_table(summary)
    lines = [
        f"run time: {run_time:.1f} s" if run_time is not None else "run time: unknown",
        outcome(summary, partial),
    ]
    extra = [f"• {r}" for r in summary.get("reasons", [])] + [f"• {n}" for n in notes]
    wrapped = [w for line in extra for w in textwrap.wrap(str(line), 120) or [""]]
    tables = (
        ("Buffers (events)", BUFFER_COLUMNS, b_rows),
        ("Workers (events, processes)", WORKER_COLUMNS, w_rows),
    )
    sizes = [_table_size(c, r) for _, c, r in tables]
    width = max(9.0, *(sum(ch) * _CHAR_IN + 0.6 for ch, _ in sizes))
    title_in, line_in, gap_in = 0.3, 0.22, 0.25
    height = (
        0.2
        + 0.45
        + line_in * len(lines)
        + sum(gap_in + title_in + h for _, h in sizes)
        + (gap_in + title_in + 0.17 * len(wrapped) if wrapped else 0.0)
        + 0.2
    )
    # Positions are set in inches, no layout engine: quick to draw, and the same in PNG and PDF.
    fig = Figure(figsize=(width, height))

    def text(top: float, value: str, **kwargs: Any) -> None:
        fig.text(0.3 / width, 1 - top / height, value, va="top", **kwargs)

    fig.suptitle(f"Run summary: {run_name}", y=1 - 0.2 / height, va="top")
    top = 0.65
    text(top, "\n".join(lines), fontsize="medium", linespacing=1.5)
    top += line_in * len(lines)
    for (title, columns, rows), (_, h) in zip(tables, sizes, strict=True):
        top += gap_in
        text(top, title, fontsize="medium", fontweight="bold")
        top += title_in
        _table(fig, columns, rows, top, 0.3)
        top += h
    if wrapped:
        top += gap_in
        text(top, "Losses and notes", fontsize="medium", fontweight="bold")
        top += title_in
        text(top, "\n".join(wrapped), fontsize="small")
    return fig
