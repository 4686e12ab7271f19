"""The GUI as a face of the run: the window's process, fed through its link, watched for failure.

:class:`GuiFace` starts the window (:func:`mimocorb2._gui.start`), passes the worker output and
the statistics on through the :class:`~mimocorb2._gui.link.GuiLink`, and notices when the
window could not start or has gone: it says so, and ``on_failure`` lets the run go on in the
terminal. At the end it shows the final state and waits until the window closes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mimocorb2._control_types import ProcessInfo, RunInfo, RunStats
from mimocorb2._gui import (
    READY_TIMEOUT_S,
    STATS_INTERVAL_S,
    gui_log_tail,
    linger_seconds,
    start,
)
from mimocorb2._gui.link import GuiLink

__all__ = ["GuiFace"]

_log = logging.getLogger("mimocorb2.control")


class GuiFace:
    """The control window of a run (mode ``gui``).

    Args:
        on_command: Takes the commands of the window's buttons (the control's queue).
        on_failure: Called once when the window could not start or has gone (the terminal
            takes over the commands).
    """

    stats_interval = STATS_INTERVAL_S

    def __init__(self, on_command: Callable[[Any], None], on_failure: Callable[[], None]) -> None:
        """A face without a window until :meth:`start`."""
        self._on_command = on_command
        self._on_failure = on_failure
        self.link: GuiLink | None = None
        self.failure: str | None = None  # why the window failed (the run then exits 1)
        self._run_dir = Path(".")

    def start(self, run: RunInfo) -> None:
        """Starts the window's process; without one the terminal takes over at once."""
        self._run_dir = Path(run["run_dir"])
        self.link = start(run, self._on_command)
        if self.link is None:
            self._on_failure()

    def lines(self, lines: Sequence[Sequence[str]], dropped: int) -> None:
        """Passes the worker output on; checks that the window is still there."""
        if self.link is not None:
            self.link.send_lines(lines, dropped)
            self._check()

    def stats(self, stats: RunStats, failures: Sequence[ProcessInfo]) -> None:
        """Passes the statistics on (the newest replace those not sent yet)."""
        if self.link is not None:
            self.link.send_stats(dict(stats), [dict(p) for p in failures])

    def finished(self, stats: RunStats, failures: Sequence[ProcessInfo], exit_code: int) -> None:
        """Shows the final state and the run's end in the window."""
        link = self.link
        if link is None or link.gone.is_set():
            return
        link.send_stats(dict(stats), [dict(p) for p in failures])
        link.send_finished(exit_code)

    def close(self, interrupted: Callable[[], bool]) -> str | None:
        """Waits until the window closes, then ends its process.

        The window closes itself after its linger time unless the user keeps it open;
        ``interrupted()`` (a Ctrl-C) stops the wait.

        Returns:
            Why the window failed (the run then exits 1), or None.
        """
        link = self.link
        if link is None:
            return self.failure
        try:
            if not link.gone.is_set():
                self._wait(link, interrupted)
                code = link.process.poll() if link.process is not None else None
                if code not in (None, 0) and not link.exit_requested:
                    detail = gui_log_tail(self._run_dir)
                    self.failure = f"the GUI ended with exit code {code} ({detail})"
        finally:
            link.close()
            self.link = None
        return self.failure

    @staticmethod
    def _wait(link: GuiLink, interrupted: Callable[[], bool]) -> None:
        link.wait_closed(linger_seconds() + 10.0, interrupted, until_keep_open=True)
        if link.keep_open and not link.gone.is_set() and not interrupted():
            print(
                "mimocorb2: every worker has finished; close the GUI window to end",
                file=sys.stderr,
            )
            link.wait_closed(None, interrupted)

    def _check(self) -> None:
        """Lets the terminal take over when the window could not start or has gone."""
        link = self.link
        if link is None:
            return
        problem = link.failure(READY_TIMEOUT_S)
        if problem is None:
            return
        detail = gui_log_tail(self._run_dir)
        self.failure = problem + (f": {detail}" if detail else "")
        print(f"mimocorb2: {self.failure}; the run continues in the terminal", file=sys.stderr)
        _log.warning("%s; the run continues in the terminal", problem)
        link.close(grace=1.0)
        self.link = None
        self._on_failure()
