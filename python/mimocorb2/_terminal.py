"""The terminal interface: worker output, a live status line and typed commands (mode ``kbd``)."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

from mimocorb2._recent import WINDOW_S

if TYPE_CHECKING:
    from mimocorb2.control import Control

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
                "ended" if b["flush_event_received"] else ("paused" if b["paused"] else "running"),
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


class Terminal:
    """Prints worker output and status; reads commands from stdin in ``kbd`` mode."""

    def __init__(self, control: Control, interactive: bool) -> None:
        """Binds the terminal to a control."""
        self.control = control
        self.interactive = interactive
        self.tty = sys.stdout.isatty()
        self._status_shown = False
        self._thread: threading.Thread | None = None
        self._ticks = 0

    def start(self) -> None:
        """Starts the command reader (kbd mode)."""
        if self.interactive:
            print("mimocorb2: type 'help' for commands", flush=True)
            self._thread = threading.Thread(target=self._read_commands, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ends the status line."""
        if self._status_shown and self.tty:
            print(flush=True)
            self._status_shown = False

    def summary(self, stats: dict[str, Any]) -> None:
        """Prints the final summary (also after runs shorter than the status interval)."""
        self._write(summary_text(stats, self.control.roots))
        sys.stdout.flush()

    def _write(self, text: str) -> None:
        if self._status_shown and self.tty:
            sys.stdout.write("\r\033[K")
            self._status_shown = False
        sys.stdout.write(text + "\n")

    def flush_lines(self, supervisor: Any) -> None:
        """Prints the captured worker output."""
        lines, _dropped = supervisor.drain_lines(5000)
        for process, _worker, stream, text in lines:
            mark = "!" if stream == "stderr" else " "
            self._write(f"[{process}]{mark} {text}")
        if lines:
            sys.stdout.flush()

    def status(self, stats: dict[str, Any]) -> None:
        """Shows the status line (rewritten in place on a terminal, every 10 s otherwise)."""
        text = status_text(stats, self.control.roots)
        self._ticks += 1
        if self.tty:
            sys.stdout.write("\r\033[K" + text)
            self._status_shown = True
            sys.stdout.flush()
        elif self._ticks % 10 == 1:
            print(f"status: {text}", flush=True)

    def _read_commands(self) -> None:
        while True:
            try:
                line = sys.stdin.readline()
            except (OSError, ValueError):
                return
            if not line:
                return  # EOF: the run goes on and ends with its workers
            self.handle(line.strip().lower())

    def handle(self, cmd: str) -> None:
        """Executes one typed command."""
        words = cmd.split()
        put = self.control.commands.put
        if not words:
            return
        if words[0] in ("pause", "resume", "shutdown") and len(words) == 2:
            if words[1] in ("roots", "all"):
                put(["buffer", words[1], words[0]])
                self._write(f"mimocorb2: {words[0]} {words[1]}")
                return
            if words[0] == "shutdown" and words[1] == "workers":
                put(["worker", "all", "shutdown"])
                self._write("mimocorb2: terminating the workers")
                return
        if words == ["stats"]:
            processes = {n: w.number_of_processes for n, w in self.control.setup.workers.items()}
            self._write(stats_table(self.control.get_stats(), self.control.roots, processes))
        elif words == ["help"]:
            self._write(HELP)
        elif words == ["exit"]:
            alive = sum(1 for p in self.control._procs if p["alive"])
            if alive:
                self._write(
                    f"mimocorb2: {alive} processes still run: 'shutdown roots' lets them "
                    "finish, 'shutdown workers' stops them"
                )
            else:
                put(None)
        else:
            self._write(f"mimocorb2: unknown command {cmd!r}; type 'help'")
        sys.stdout.flush()
