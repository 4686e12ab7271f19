"""The histogram files of ``exporters.histogram`` as ``visualizers.histogram`` reads them.

:class:`_HistogramFiles` reads the bins and counts an exporter writes (under its lock), and
:class:`_UntilFinalWrite` decides when the window may draw its last view after the buffer
ended. Used by :mod:`mimocorb2.functions.visualizers`, which re-exports the names.
"""

from __future__ import annotations

import contextlib
import csv as _csv
import io as _io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2.functions.exporters import _Locked
from mimocorb2.worker_templates import IsAlive

__all__ = ["_HistogramFiles", "_UntilFinalWrite"]

_SETTLE_QUIET = 0.3
"""Seconds the histogram files must stay unchanged before the last view after the end."""

_SETTLE_LIMIT = 2.0
"""Longest wait (seconds) for the exporter's final write after the observed buffer ended."""

_END_SLACK = 0.25
"""Seconds (besides one poll) by which the end may have been noticed late."""


class _HistogramFiles:
    """Reads ``Histograms_<buffer>/info.csv`` and the ``<channel>.npy`` counts tolerantly.

    Missing, partial or unreadable files count as "not there yet". A ``.npy`` file is only
    loaded again when it changed (size, modification time or inode).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.info_file = directory / "info.csv"
        self._stamps: dict[str, tuple[int, int, int]] = {}

    def info(self) -> list[dict[str, Any]] | None:
        """The rows of info.csv (Channel, Min, Max, NBins, Underflow, Overflow), or None."""
        try:
            text = self.info_file.read_text()
        except OSError:
            return None
        rows = []
        try:
            for row in _csv.DictReader(_io.StringIO(text)):
                channel = (row.get("Channel") or "").strip()
                if not channel:
                    continue
                rows.append(
                    {
                        "channel": channel,
                        "min": float(row["Min"]),
                        "max": float(row["Max"]),
                        "nbins": int(float(row["NBins"])),
                        "underflow": _int_or_none(row.get("Underflow")),
                        "overflow": _int_or_none(row.get("Overflow")),
                    }
                )
        except (KeyError, TypeError, ValueError, _csv.Error):
            return None
        return rows or None

    def counts(self, channel: str, force: bool = False) -> np.ndarray | None:
        """The counts of ``channel`` if its file changed since the last call (or ``force``)."""
        path = self.directory / f"{channel}.npy"
        stamp = _stamp(path)
        if stamp is None:
            return None
        if not force and self._stamps.get(channel) == stamp:
            return None
        try:
            counts = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if counts.ndim != 1 or counts.size == 0 or counts.dtype.kind not in "biuf":
            return None
        self._stamps[channel] = stamp
        return counts

    def read(
        self, shown: list[str] | None
    ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]] | None:
        """:meth:`info` and the counts that changed, as one state of the files; None: no info.

        Every channel's counts are loaded when the channels differ from ``shown`` (the plots
        are built again). The files are read under a shared lock of the directory, the lock
        ``exporters.histogram`` holds while it updates them, so no update happens in between;
        without such a lock the files are read again when info.csv changed meanwhile.
        """
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError:  # pragma: no cover - platform dependent (no directory descriptors)
            fd = -1
        try:
            with _Locked(fd, shared=True) if fd >= 0 else contextlib.nullcontext():
                return self._read(shown)
        finally:
            if fd >= 0:
                os.close(fd)

    def _read(
        self, shown: list[str] | None
    ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]] | None:
        counts: dict[str, np.ndarray] = {}
        for _ in range(3):
            before = _stamp(self.info_file)
            info = self.info()
            if info is None:
                return None
            channels = [row["channel"] for row in info]
            force = channels != shown
            for channel in channels:
                loaded = self.counts(channel, force=force)
                if loaded is not None:
                    counts[channel] = loaded
            if _stamp(self.info_file) == before:
                break
        return info, {c: counts[c] for c in channels if c in counts}

    def stamps(self) -> tuple[tuple[str, int, int, int], ...]:
        """``(name, size, mtime_ns, inode)`` of info.csv and the ``.npy`` files."""
        out = []
        with contextlib.suppress(OSError), os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if name == "info.csv" or (name.endswith(".npy") and not name.startswith(".")):
                    stamp = _stamp(Path(entry.path))
                    if stamp is not None:
                        out.append((name, *stamp))
        return tuple(sorted(out))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """``(size, mtime_ns, inode)`` of a file (a replaced file has a new one), or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class _UntilFinalWrite:
    """The ``alive`` check of the histogram window: open until the exporter's last write.

    ``exporters.histogram`` writes its last counts after the observed buffer ended (when it
    has read the last events), often after the window noticed the end. So after the end the
    window stays open (and refreshing) until the files are final: no event left unread in the
    buffer, a file written since about the end, and no change for ``_SETTLE_QUIET`` seconds;
    in any case ``_SETTLE_LIMIT`` seconds after the end (an exporter with nothing left to
    write writes nothing). Then :func:`_plotting.run_window` draws the last view.

    Args:
        is_alive: The observed buffer's check.
        files: The histogram files.
        poll: Seconds between two calls (the end is noticed up to one poll late).
    """

    def __init__(self, is_alive: IsAlive, files: _HistogramFiles, poll: float) -> None:
        """Starts while the buffer runs."""
        self.is_alive = is_alive
        self.files = files
        self.poll = poll
        self._ended: float | None = None
        self._end_ns = 0
        self._stamps: tuple[tuple[str, int, int, int], ...] = ()
        self._changed = 0.0

    def __call__(self) -> bool:
        """Whether the window stays open."""
        now = time.monotonic()
        if self._ended is None:
            if self.is_alive():
                return True
            self._ended = self._changed = now
            self._end_ns = time.time_ns() - int((self.poll + _END_SLACK) * 1e9)
            self._stamps = self.files.stamps()
            return True
        if now - self._ended >= _SETTLE_LIMIT:
            return False
        stamps = self.files.stamps()
        if stamps != self._stamps or self.is_alive.buffer.get_stats()["filled_slots"] > 0:
            self._stamps, self._changed = stamps, now
            return True
        written = any(mtime >= self._end_ns for _, _, mtime, _ in stamps)
        return not written or now - self._changed < _SETTLE_QUIET


def _int_or_none(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None
