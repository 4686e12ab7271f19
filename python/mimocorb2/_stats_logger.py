"""``stats.csv``: the statistics of a run as flat columns, at growing intervals (mode ``stats``)."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from mimocorb2._control_types import ProcessInfo, RunInfo, RunStats

# (elapsed time below which, row interval) in seconds, as the reference writes them
_INTERVALS = ((10, 1), (60, 10), (600, 60), (3600, 600), (float("inf"), 3600))


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested dicts into dotted keys (``buffers.<b>.event_count``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class StatsLogger:
    """The ``stats`` face of a run: appends flattened statistics rows to ``stats.csv``.

    Args:
        path: The file; None: ``stats.csv`` in the run directory (known at :meth:`start`).
    """

    stats_interval = 1.0
    """Seconds between two looks at the statistics (rows are written at growing intervals)."""

    def __init__(self, path: Path | None = None) -> None:
        """Opens ``path`` (else the file is opened at :meth:`start`)."""
        self.path = path
        self._file: TextIO | None = None
        self._writer: csv.DictWriter[str] | None = None
        self._t0 = time.monotonic()
        self._last = -1e9
        if path is not None:
            self._open(path)

    def _open(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "w", newline="")  # noqa: SIM115 - kept open for the run
        self._t0 = time.monotonic()

    def _row(self, stats: Mapping[str, Any]) -> None:
        if self._file is None:
            return
        row = flatten(stats)
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=list(row), extrasaction="ignore")
            self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()

    def maybe_write(self, stats: Mapping[str, Any]) -> None:
        """Writes a row when the current interval has passed."""
        now = time.monotonic()
        elapsed = now - self._t0
        interval = next(i for limit, i in _INTERVALS if elapsed < limit)
        if now - self._last >= interval - 0.05:
            self._last = now
            self._row(stats)

    # ----- the face (mimocorb2._faces.Face) -----

    def start(self, run: RunInfo) -> None:
        """Opens ``stats.csv`` in the run directory (unless a path was given)."""
        if self._file is None:
            self._open(Path(run["run_dir"]) / "stats.csv")

    def lines(self, lines: Sequence[Sequence[str]], dropped: int) -> None:
        """Worker output is not logged here (the worker logs hold it)."""

    def stats(self, stats: RunStats, _failures: Sequence[ProcessInfo]) -> None:
        """Writes a row when the current interval has passed."""
        self.maybe_write(stats)

    def finished(self, stats: RunStats, _failures: Sequence[ProcessInfo], _exit_code: int) -> None:
        """Writes the final row and closes the file."""
        self._row(stats)
        self.close(lambda: False)

    def close(self, _interrupted: Callable[[], bool]) -> str | None:
        """Closes the file if :meth:`finished` did not."""
        if self._file is not None:
            self._file.close()
            self._file = None
        return None
