"""The faces of a run: what shows it to people and takes their commands.

A face is the terminal (:class:`~mimocorb2._terminal.Terminal`), the GUI
(:class:`~mimocorb2._gui.face.GuiFace`), the statistics log
(:class:`~mimocorb2._stats_logger.StatsLogger`) or the remote clients (:class:`RemoteFace`).
Data flow one way: the control calls the :class:`Face` methods with what happened; a face
never reads the control. Commands flow the other way through the control's
:class:`~mimocorb2._control_types.CommandQueue`, which the faces that take commands are given
when they are built (:func:`build_faces`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from mimocorb2._control_types import CommandQueue, ProcessInfo, RunInfo, RunStats
from mimocorb2._setup_spec import Setup

__all__ = ["MODES", "Face", "RemoteFace", "build_faces", "parse_mode", "run_info"]

MODES = ("kbd", "gui", "stats")


class Face(Protocol):
    """What the control calls on each face of a run, in this order.

    ``start`` once, then ``lines`` on every turn of the control's loop (20 per second while
    something happens, 4 while the run is idle; also with no lines) and ``stats`` every
    ``stats_interval`` seconds, then ``finished``
    once with the final statistics, then ``close`` once. None of them may block, except
    ``close`` (a window may wait for the user).
    """

    stats_interval: float
    """Seconds between two :meth:`stats` calls this face wants."""

    def start(self, run: RunInfo) -> None:
        """The run has its buffers and directory; its workers start next."""

    def lines(self, lines: Sequence[Sequence[str]], dropped: int) -> None:
        """Worker output ``(process, worker, stream, text)``; ``dropped`` lines were lost."""

    def stats(self, stats: RunStats, failures: Sequence[ProcessInfo]) -> None:
        """The statistics now, and the processes that have failed so far."""

    def finished(self, stats: RunStats, failures: Sequence[ProcessInfo], exit_code: int) -> None:
        """Every worker has ended: the final statistics and the run's exit code."""

    def close(self, interrupted: Callable[[], bool]) -> str | None:
        """Releases the face; may wait for its user until ``interrupted()`` (a Ctrl-C).

        Returns:
            Why the face failed, making the run exit 1 (its data are complete), or None.
        """


def parse_mode(mode: str) -> set[str]:
    """The faces of a mode such as ``"kbd+stats"``.

    Raises:
        ValueError: For an unknown or empty mode.
    """
    parts = {m.strip().lower() for m in str(mode).split("+") if m.strip()}
    unknown = parts - set(MODES)
    if unknown or not parts:
        raise ValueError(
            f"mode {mode!r}: use 'kbd', 'gui' or 'stats', or several joined by '+', "
            "e.g. 'kbd+stats'"
        )
    return parts


def build_faces(mode: str, commands: CommandQueue) -> list[Face]:
    """The faces of ``mode``: the terminal always (it prints the worker output), the GUI, the log.

    The GUI comes first: when it cannot run, the terminal takes the commands.

    Raises:
        ValueError: For an unknown mode.
    """
    from mimocorb2._stats_logger import StatsLogger
    from mimocorb2._terminal import Terminal

    modes = parse_mode(mode)
    terminal = Terminal(commands.put, interactive="kbd" in modes)
    faces: list[Face] = []
    if "gui" in modes:
        from mimocorb2._gui.face import GuiFace

        faces.append(GuiFace(commands.put, terminal.make_interactive))
    faces.append(terminal)
    if "stats" in modes:
        faces.append(StatsLogger())
    return faces


def plot_workers(setup: Setup) -> list[str]:
    """The workers running a prebuilt plot function (they need a display)."""
    return [
        name
        for name, w in setup.workers.items()
        if w.file is None and w.function.split(".")[0] in ("observers", "visualizers")
    ]


def run_info(setup: Setup, run_dir: Path, control_pid: int, display_problem: str | None) -> RunInfo:
    """What the faces learn of a run at its start."""
    return {
        "setup_name": setup.setup_file.name if setup.setup_file is not None else "setup",
        "run_dir": str(run_dir),
        "roots": list(setup.roots()),
        "buffers": {
            n: {"slot_count": b.slot_count, "data_length": b.data_length}
            for n, b in setup.buffers.items()
        },
        "workers": {
            n: {
                "function": w.function,
                "number_of_processes": w.number_of_processes,
                "sources": list(w.sources),
                "sinks": list(w.sinks),
                "observes": list(w.observes),
            }
            for n, w in setup.workers.items()
        },
        "control_pid": control_pid,
        "display_problem": display_problem,
    }


class RemoteFace:
    """The clients of a served run (``--serve``), through its ``RemoteServer``.

    Args:
        server: The server (``send_lines``, ``send_stats``, ``send_finished``, ``close``).
    """

    def __init__(self, server: Any) -> None:
        """Feeds ``server``; it was started (and bound) before."""
        from mimocorb2._gui import STATS_INTERVAL_S

        self.server = server
        self.stats_interval = STATS_INTERVAL_S

    def start(self, run: RunInfo) -> None:
        """The server already has the setup message."""

    def lines(self, lines: Sequence[Sequence[str]], dropped: int) -> None:
        """Passes the worker output on to the clients."""
        self.server.send_lines(lines, dropped)

    def stats(self, stats: RunStats, failures: Sequence[ProcessInfo]) -> None:
        """Passes the statistics on to the clients."""
        self.server.send_stats(stats, failures)

    def finished(self, stats: RunStats, failures: Sequence[ProcessInfo], exit_code: int) -> None:
        """Tells the clients the final state and the run's exit code."""
        self.server.send_stats(stats, failures)
        self.server.send_finished(exit_code)

    def close(self, _interrupted: Callable[[], bool]) -> str | None:
        """Sends what is pending and closes the socket."""
        self.server.close()
        return None
