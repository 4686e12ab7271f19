"""``stats.csv``: the statistics of a run as flat columns, at growing intervals (mode ``stats``)."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

# (elapsed time below which, row interval) in seconds, as the reference writes them
_INTERVALS = ((10, 1), (60, 10), (600, 60), (3600, 600), (float("inf"), 3600))


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested dicts into dotted keys (``buffers.<b>.event_count``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class StatsLogger:
    """Appends flattened statistics rows to a CSV file."""

    def __init__(self, path: Path) -> None:
        """Opens ``path``; the header is written with the first row."""
        self.path = path
        self._file = open(path, "w", newline="")  # noqa: SIM115 - kept open for the run
        self._writer: csv.DictWriter[str] | None = None
        self._t0 = time.monotonic()
        self._last = -1e9

    def _row(self, stats: dict[str, Any]) -> None:
        row = flatten(stats)
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=list(row), extrasaction="ignore")
            self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()

    def maybe_write(self, stats: dict[str, Any]) -> None:
        """Writes a row when the current interval has passed."""
        now = time.monotonic()
        elapsed = now - self._t0
        interval = next(i for limit, i in _INTERVALS if elapsed < limit)
        if now - self._last >= interval - 0.05:
            self._last = now
            self._row(stats)

    def close(self, stats: dict[str, Any]) -> None:
        """Writes a final row and closes the file."""
        self._row(stats)
        self._file.close()
