"""The terminal interface: worker output, a live status line and typed commands (mode ``kbd``)."""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from mimocorb2._control_types import (
    BufferCommand,
    Command,
    ExitCommand,
    ProcessInfo,
    RunInfo,
    RunStats,
    WorkerCommand,
)
from mimocorb2._recent import WINDOW_S


def _typed_text() -> str:
    """What the user has typed on the input line so far (readline), or ""."""
    readline = sys.modules.get("readline")
    try:
        return str(readline.get_line_buffer()) if readline is not None else ""
    except Exception:  # never break the output for it
        return ""


HELP = """commands:
  pause roots|all       pause the root (or all) buffers: events are counted and discarded
  resume roots|all      resume them
  shutdown roots|all    shut the root (or all) buffers down: the pipeline drains and ends
  shutdown workers      terminate every worker process (SIGTERM, then SIGKILL)
  stats                 print the statistics (buffers and workers)
  help                  this text
  exit                  leave once no process runs any more"""


def _recent_dead(b: dict[str, Any]) -> float:
    return float(b.get("recent_deadtime", b.get("average_deadtime", 0.0)))


def status_text(stats: dict[str, Any], roots: list[str]) -> str:
    """One line: time, processes, and per root buffer rate, fill and recent dead time.

    The dead time is that of the last :data:`~mimocorb2._recent.WINDOW_S` seconds; the
    whole run's figure is in the summary (:func:`summary_text`).
    """
    parts = [f"{stats['time_active']:6.0f} s", f"{stats['total_processes_alive']} proc"]
    for name, b in stats["buffers"].items():
        if name in roots:
            parts.append(
                f"{name}: {b['event_count']} ev {b['rate']:.0f} Hz "
                f"fill {100 * b['filled_slots']:.0f}% "
                f"dead {100 * _recent_dead(b):.1f}% (last {WINDOW_S:.0f} s)"
                + (" PAUSED" if b["paused"] else "")
                + (f" {b['paused_count']} discarded in pause" if b.get("paused_count") else "")
                + (" ended" if b["flush_event_received"] else "")
            )
    return " | ".join(parts)


def summary_text(stats: dict[str, Any], roots: list[str]) -> str:
    """The final summary: duration, and per root buffer events, mean rate, whole-run dead time."""
    t = float(stats.get("time_active", 0.0))
    parts = [f"summary: {t:.1f} s"]
    for name, b in stats["buffers"].items():
        if name not in roots:
            continue
        n = int(b["event_count"])
        text = (
            f"{name}: {n} events, {n / t if t > 0 else 0.0:.0f} Hz mean, "
            f"dead time {100 * float(b['average_deadtime']):.1f}% (whole run)"
        )
        extra = [
            f"{b[key]} {label}"
            for key, label in (
                ("paused_count", "discarded while paused"),
                ("overwritten", "overwritten"),
                ("lost", "lost"),
            )
            if b.get(key)
        ]
        parts.append(text + "".join(f", {e}" for e in extra))
    return " | ".join(parts)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    return out


def stats_table(stats: dict[str, Any], roots: list[str], processes: dict[str, int]) -> str:
    """The ``stats`` command's output: a table of the buffers and one of the workers.

    Args:
        stats: The control's statistics.
        roots: The root buffers (marked with ``*``).
        processes: Configured processes per worker.
    """
    buffer_rows = []
    for name, b in stats["buffers"].items():
        buffer_rows.append(
            [
                f"{name}{' *' if name in roots else ''}",
                str(int(b["event_count"])),
                f"{float(b['rate']):.1f}",
                f"{100 * float(b['filled_slots']):.0f}",
                f"{100 * _recent_dead(b):.1f}",
                f"{100 * float(b['average_deadtime']):.1f}",
                str(int(b.get("lost", 0))),
                str(int(b.get("paused_count", 0))),
                ("ended" if b["flush_event_received"] else ("paused" if b["paused"] else "running"))
                + _group_backlog(b),
            ]
        )
    worker_rows = []
    for name, n in processes.items():
        w = stats["workers"].get(name, {})
        state = []
        if w.get("failed"):
            state.append(f"{w['failed']} failed")
        if w.get("stopped"):
            state.append(f"{w['stopped']} stopped by user")
        worker_rows.append(
            [
                name,
                f"{int(w.get('processes', 0))}/{n}",
                f"{float(w.get('cpu_percent', 0.0)):.1f}",
                str(int(w.get("restarts", 0))),
                ", ".join(state) or "-",
            ]
        )
    lines = [f"time active {float(stats['time_active']):.1f} s; * = root buffer", ""]
    lines += _table(
        [
            "buffer",
            "events",
            "rate/Hz",
            "fill/%",
            f"dead/% ({WINDOW_S:.0f} s)",
            "dead/% (run)",
            "lost",
            "paused",
            "state",
        ],
        buffer_rows,
    )
    lines.append("")
    lines += _table(["worker", "alive", "CPU/%", "restarts", "ended"], worker_rows)
    return "\n".join(lines)


PROMPT = "mimocorb2> "


class LiveScreen:
    """A status line directly above the input line, so it never overwrites what is typed.

    Used in ``kbd`` mode on a terminal. The screen ends with the status line, then the input
    line (the prompt and the typed text, the cursor after it). A new status rewrites only
    the line above the cursor (saving and restoring the cursor); an output line is put above
    the status line and the input line is written again with what was typed so far (from
    readline).

    Args:
        out: The terminal's text stream.
        typed: Returns the text typed so far on the input line.
        width: Returns the terminal's width (the status line is cut to it).
    """

    def __init__(
        self,
        out: TextIO,
        typed: Callable[[], str],
        width: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
    ) -> None:
        """Starts with no status line and no prompt on the screen."""
        self.out = out
        self.typed = typed
        self.width = width
        self.lock = threading.RLock()
        self.status: str | None = None
        self.reading = False

    def _fit(self, text: str) -> str:
        return text[: max(self.width() - 1, 20)]

    def _prompt(self) -> None:
        if self.reading:
            self.out.write(PROMPT + self.typed())

    def set_status(self, text: str) -> None:
        """Shows ``text`` as the status line, leaving the input line as it is."""
        text = self._fit(text)
        with self.lock:
            if self.status is None:
                self.out.write("\r\033[K" + text + "\n")
                self.status = text
                self._prompt()
            else:
                self.status = text
                # save the cursor, up one line, rewrite it, back to the typed text
                self.out.write("\0337\033[1A\r\033[K" + text + "\0338")
            self.out.flush()

    def print(self, text: str) -> None:
        """Prints ``text`` above the status line; the typed text is shown again below."""
        with self.lock:
            self.out.write("\r\033[K")
            if self.status is not None:
                self.out.write("\033[1A\r\033[K")
            self.out.write(text + "\n")
            if self.status is not None:
                self.out.write(self.status + "\n")
            self._prompt()
            self.out.flush()

    def start_reading(self) -> None:
        """The prompt is about to be shown (``input()`` is called next)."""
        with self.lock:
            self.reading = True

    def entered(self, line: str) -> None:
        """After Enter: the command moves up into the history, the status line under it."""
        with self.lock:
            self.reading = False
            if self.status is not None:
                self.out.write("\033[2A\r\033[K" + PROMPT + line + "\n\033[K" + self.status + "\n")
            self.out.flush()

    def close(self) -> None:
        """Leaves the status line on the screen and clears the input line."""
        with self.lock:
            if self.reading:
                self.out.write("\r\033[K")
            self.reading = False
            self.status = None
            self.out.flush()


class Terminal:
    """The terminal face of a run: worker output, the status line, typed commands (``kbd``).

    Args:
        put: Takes the typed commands (the control's :class:`CommandQueue`, or a remote
            client's sender).
        interactive: Read commands from stdin (``kbd``); else only print.
        exit_any_time: ``exit`` leaves at once (a remote terminal); else only once no worker
            process runs any more.
    """

    stats_interval = 1.0
    """Seconds between two status lines."""

    def __init__(
        self, put: Callable[[Command], None], interactive: bool, exit_any_time: bool = False
    ) -> None:
        """A terminal that shows nothing until :meth:`start`."""
        self._put = put
        self.interactive = interactive
        self.exit_any_time = exit_any_time
        self.tty = sys.stdout.isatty()
        self.roots: list[str] = []
        self.processes: dict[str, int] = {}
        self.newest: dict[str, Any] | None = None  # the newest statistics received
        self._started = False
        self._status_shown = False
        self._thread: threading.Thread | None = None
        self._ticks = 0
        self._screen: LiveScreen | None = None
        self._termios: Any = None

    # ----- the face (mimocorb2._faces.Face) -----

    def start(self, run: RunInfo) -> None:
        """Learns the root buffers and workers; starts the command reader (kbd mode)."""
        self.roots = list(run["roots"])
        self.processes = {n: int(w["number_of_processes"]) for n, w in run["workers"].items()}
        self._started = True
        if self.interactive:
            self._start_reading()

    def lines(self, lines: Sequence[Sequence[str]], dropped: int) -> None:
        """Prints the captured worker output."""
        for process, _worker, stream, text in lines:
            mark = "!" if stream == "stderr" else " "
            self.write(f"[{process}]{mark} {text}")
        if dropped:
            self.write(f"mimocorb2: {dropped} output lines dropped")
        if lines or dropped:
            sys.stdout.flush()

    def stats(self, stats: RunStats, _failures: Sequence[ProcessInfo]) -> None:
        """Shows the status line (rewritten in place on a terminal, every 10 s otherwise)."""
        self.newest = dict(stats)
        text = status_text(self.newest, self.roots)
        self._ticks += 1
        screen = self._screen
        if screen is not None:
            screen.set_status(text)
        elif self.tty:
            sys.stdout.write("\r\033[K" + text)
            self._status_shown = True
            sys.stdout.flush()
        elif self._ticks % 10 == 1:
            print(f"status: {text}", flush=True)

    def finished(self, stats: RunStats, _failures: Sequence[ProcessInfo], _exit_code: int) -> None:
        """Ends the status line and prints the final summary."""
        self.newest = dict(stats)
        self.stop()
        self.write(summary_text(self.newest, self.roots))
        sys.stdout.flush()

    def close(self, _interrupted: Callable[[], bool]) -> str | None:
        """Nothing to release (the reader thread is a daemon)."""
        return None

    # ----- the terminal -----

    def make_interactive(self) -> None:
        """Starts reading commands from now on (the GUI could not run or has gone)."""
        if self.interactive:
            return
        self.interactive = True
        if self._started:
            self._start_reading()

    def _start_reading(self) -> None:
        if self._status_shown and self.tty:
            print(flush=True)  # the status line of a non-interactive start stays
            self._status_shown = False
        print("mimocorb2: type 'help' for commands", flush=True)
        if self.tty and sys.stdin.isatty():
            self._screen = LiveScreen(sys.stdout, _typed_text)
            self._save_terminal()
        self._thread = threading.Thread(target=self._read_commands, daemon=True)
        self._thread.start()

    def _save_terminal(self) -> None:
        try:
            import termios

            self._termios = termios.tcgetattr(sys.stdin.fileno())
        except (ImportError, OSError, ValueError):
            self._termios = None

    def stop(self) -> None:
        """Ends the status line (and gives the terminal back as it was)."""
        if self._screen is not None:
            self._screen.close()
            self._screen = None
            if self._termios is not None:  # readline may still hold the terminal
                import termios

                with contextlib.suppress(OSError, ValueError):
                    termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._termios)
        if self._status_shown and self.tty:
            print(flush=True)
            self._status_shown = False

    def write(self, text: str) -> None:
        """Prints ``text`` above the status line (or into the full-screen view)."""
        screen = self._screen
        if screen is not None:
            screen.print(text)
            return
        if self._status_shown and self.tty:
            sys.stdout.write("\r\033[K")
            self._status_shown = False
        sys.stdout.write(text + "\n")

    def _read_commands(self) -> None:
        screen = self._screen
        if screen is not None:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401 - line editing, and the typed text for redraws
        while True:
            try:
                if screen is not None:
                    screen.start_reading()
                    try:
                        line = input(PROMPT) + "\n"
                    except EOFError:
                        line = ""
                    screen.entered(line.strip())
                else:
                    line = sys.stdin.readline()
            except (OSError, ValueError):
                return
            if not line:
                return  # EOF: the run goes on and ends with its workers
            self.handle(line.strip().lower())

    def handle(self, cmd: str) -> None:
        """Executes one typed command."""
        words = cmd.split()
        if not words:
            return
        if words[0] in ("pause", "resume", "shutdown") and len(words) == 2:
            if words[1] in ("roots", "all"):
                self._put(BufferCommand(words[1], words[0]))  # type: ignore[arg-type]
                self.write(f"mimocorb2: {words[0]} {words[1]}")
                return
            if words[0] == "shutdown" and words[1] == "workers":
                self._put(WorkerCommand("all", "shutdown"))
                self.write("mimocorb2: terminating the workers")
                return
        if words == ["stats"]:
            if self.newest is None:
                self.write("mimocorb2: no statistics yet")
            else:
                self.write(stats_table(self.newest, self.roots, self.processes))
        elif words == ["help"]:
            self.write(HELP)
        elif words == ["exit"]:
            alive = 0 if self.newest is None else int(self.newest["total_processes_alive"])
            if alive and not self.exit_any_time:
                self.write(
                    f"mimocorb2: {alive} processes still run: 'shutdown roots' lets them "
                    "finish, 'shutdown workers' stops them"
                )
            else:
                self._put(ExitCommand())
        else:
            self.write(f"mimocorb2: unknown command {cmd!r}; type 'help'")
        sys.stdout.flush()


def _group_backlog(b: dict[str, Any]) -> str:
    """Per reader group backlog of a buffer with ``delivery: every_worker`` (else empty)."""
    groups = b.get("groups") or {}
    if not groups:
        return ""
    return " (backlog " + ", ".join(f"{n} {int(g['backlog'])}" for n, g in groups.items()) + ")"
