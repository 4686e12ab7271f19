"""Dead time over a recent window, for the live displays (status line, GUI).

A buffer reports its dead time since creation (``average_deadtime``), the right figure for a
run's summary but a poor live one: a stall at the start (workers still importing) keeps it
high for minutes. :class:`RecentDeadtime` keeps a short history of each buffer's event count
and summed event dead time (``mean_event_deadtime`` times ``event_count``) and returns the
mean dead time of the events committed in the last :data:`WINDOW_S` seconds.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

__all__ = ["WINDOW_S", "RecentDeadtime"]

WINDOW_S = 10.0
"""Seconds of the recent window."""


class RecentDeadtime:
    """Mean dead time of the events of the last ``window`` seconds, per buffer.

    Args:
        window: Length of the window in seconds.
    """

    def __init__(self, window: float = WINDOW_S) -> None:
        """Starts with no history."""
        self.window = window
        self._history: dict[str, collections.deque[tuple[float, int, float]]] = {}

    def update(self, name: str, now: float, stats: Mapping[str, Any]) -> float:
        """Adds a snapshot of buffer ``name`` taken at ``now``; returns the recent dead time.

        Args:
            name: The buffer.
            now: The time of the snapshot in seconds (any monotonic clock).
            stats: The buffer's statistics (``event_count``, ``mean_event_deadtime``).

        Returns:
            The mean dead time (fraction 0..1) of the events committed within the window
            before ``now``; 0 when none was committed.
        """
        events = int(stats.get("event_count", 0))
        summed = float(stats.get("mean_event_deadtime", 0.0)) * events
        history = self._history.setdefault(name, collections.deque())
        if history and (now < history[-1][0] or events < history[-1][1]):
            history.clear()  # a clock or counter reset: start over
        history.append((now, events, summed))
        # keep the newest snapshot at or before the window's start as the baseline
        while len(history) > 2 and history[1][0] <= now - self.window:
            history.popleft()
        _t0, events0, summed0 = history[0]
        if len(history) == 1:
            events0, summed0 = 0, 0.0  # the first snapshot: everything so far
        if events <= events0 or summed - summed0 <= 1e-9 * (events - events0):
            return 0.0
        return min(1.0, max(0.0, (summed - summed0) / (events - events0)))
