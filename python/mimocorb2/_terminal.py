"""The terminal interface: worker output, a live status line and typed commands (mode ``kbd``)."""

from __future__ import annotations

import json
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mimocorb2.control import Control

HELP = """commands:
  pause roots|all       pause the root (or all) buffers: events are counted and discarded
  resume roots|all      resume them
  shutdown roots|all    shut the root (or all) buffers down: the pipeline drains and ends
  shutdown workers      terminate every worker process (SIGTERM, then SIGKILL)
  stats                 print the statistics
  help                  this text
  exit                  leave once no process runs any more"""


def status_text(stats: dict[str, Any], roots: list[str]) -> str:
    """One line: time, processes, and per root buffer rate, fill and dead time."""
    parts = [f"{stats['time_active']:6.0f} s", f"{stats['total_processes_alive']} proc"]
    for name, b in stats["buffers"].items():
        if name in roots:
            parts.append(
                f"{name}: {b['event_count']} ev {b['rate']:.0f} Hz "
                f"fill {100 * b['filled_slots']:.0f}% dead {100 * b['average_deadtime']:.1f}%"
                + (" PAUSED" if b["paused"] else "")
                + (" ended" if b["flush_event_received"] else "")
            )
    return " | ".join(parts)


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
            self._write(json.dumps(self.control.get_stats(), indent=2, default=str))
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
