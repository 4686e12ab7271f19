"""Running an experiment: buffers, worker processes, interfaces and statistics.

:class:`Control` validates a setup, creates its buffers in shared memory, starts every worker
process through the supervisor (written in Rust), shows their output and the buffer statistics,
takes commands (terminal, GUI) and returns once every worker has finished.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import yaml

from mimocorb2 import _core
from mimocorb2._dataflow import write_data_flow
from mimocorb2._ledger import (
    WORKER_TAG_ENV,
    apply_worker_notes,
    buffer_ledger,
    run_summary,
    worker_ledger,
    worker_tags,
    write_run_summary,
)
from mimocorb2._recent import RecentDeadtime
from mimocorb2._setup import Setup, load_setup_file, parse_setup
from mimocorb2._stats_logger import StatsLogger
from mimocorb2._terminal import Terminal
from mimocorb2.mimo_buffer import mimoBuffer

__all__ = ["Control"]

MODES = ("kbd", "gui", "stats")
# The package this control runs; every worker process must import the same one.
_PACKAGE_DIR = Path(__file__).resolve().parent
_log = logging.getLogger("mimocorb2.control")
NO_DISPLAY_NOTED_ENV = "MIMOCORB2_NO_DISPLAY_NOTED"
"""Set for the workers when the control has said that plots are skipped without a display."""
PARTIAL_MARKER = "PARTIAL_RESULTS.txt"
"""Written into the run directory when a worker failed or workers were stopped by the user."""


def _parse_mode(mode: str) -> set[str]:
    parts = {m.strip().lower() for m in str(mode).split("+") if m.strip()}
    unknown = parts - set(MODES)
    if unknown or not parts:
        raise ValueError(
            f"mode {mode!r}: use 'kbd', 'gui' or 'stats', or several joined by '+', "
            "e.g. 'kbd+stats'"
        )
    return parts


class _Drained:
    """Lines already taken from the supervisor, handed to ``Terminal.flush_lines``."""

    def __init__(self, lines: list[Any], dropped: int) -> None:
        self._result = (lines, dropped)

    def drain_lines(self, _max: int) -> tuple[list[Any], int]:
        result, self._result = self._result, ([], 0)
        return result


def _how_ended(p: dict[str, Any]) -> str:
    """``ended with exit code 1`` or ``was killed by signal 9 (SIGKILL)``."""
    if p.get("exit_code") is not None:
        return f"ended with exit code {p['exit_code']}"
    try:
        name = f" ({signal.Signals(int(p['signal'])).name})"
    except (TypeError, ValueError):
        name = ""
    return f"was killed by signal {p.get('signal')}{name}"


def _unique_run_dir(target: Path) -> Path:
    """``target/run_<timestamp>``, with a suffix when that name is taken (same second)."""
    target.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for i in range(1000):
        path = target / (f"run_{stamp}" if i == 0 else f"run_{stamp}_{i + 1}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a unique run directory in {target}")


class Control:
    """Central controller of one run.

    Args:
        setup_dict: The setup (see the manual): ``Buffers``, ``Workers``, ``base_config``,
            ``target_directory``.
        setup_dir: Directory relative paths of the setup are resolved against.
        mode: Interfaces joined by ``+``: ``kbd`` (terminal commands and status line),
            ``gui`` (window; falls back to the terminal without a display), ``stats``
            (``stats.csv`` in the run directory).

    Raises:
        SetupValidationError: Listing every problem of the setup; nothing is created then.
    """

    def __init__(
        self,
        setup_dict: Mapping[str, Any] | Setup,
        setup_dir: str | Path = ".",
        mode: str = "kbd+stats",
    ) -> None:
        """Validates the setup, then creates the run directory and the buffers."""
        self.modes = _parse_mode(mode)
        if isinstance(setup_dict, Setup):
            self.setup = setup_dict
        else:
            self.setup = parse_setup(setup_dict, setup_dir, source=f"setup in {setup_dir}")
        self.setup_dir = self.setup.setup_dir
        self.commands: queue.Queue[Any] = queue.Queue()
        self.exit_code = 0
        self._interrupts = 0
        self._started = 0.0
        self._cpu_prev: dict[str, tuple[float, float]] = {}
        self._procs: list[dict[str, Any]] = []
        self._gui: Any = None  # mimocorb2._gui.GuiLink while a GUI window is connected
        self._remote: Any = None  # mimocorb2._remote.RemoteServer while served (serve())
        self.gui_failure: str | None = None  # why the GUI process failed (the run exits 1)
        self._stopped_by_user: set[str] = set()  # processes ended by a worker shutdown command
        self._recent_deadtime = RecentDeadtime()
        self._tags = worker_tags(list(self.setup.workers))
        self._ended_pids: set[int] = set()
        self._ended_groups: set[str] = set()
        self._prepare()

    @classmethod
    def from_setup_file(cls, setup_file: str | Path, mode: str = "kbd+stats") -> Control:
        """Creates a Control from a YAML setup file (validated first)."""
        setup = load_setup_file(setup_file)
        return cls(setup, setup.setup_dir, mode)

    # ----- preparation -----

    def _prepare(self) -> None:
        self.run_dir = _unique_run_dir(self.setup.target_directory)
        (self.run_dir / "logs").mkdir()
        self._runtime = self.run_dir / ".runtime"
        self._runtime.mkdir()
        handler = logging.FileHandler(self.run_dir / "mimocorb2.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("mimocorb2").addHandler(handler)
        logging.getLogger("mimocorb2").setLevel(logging.INFO)
        self._log_handler = handler
        with open(self.run_dir / "setup.yaml", "w") as f:
            yaml.safe_dump(self.setup.effective_dict(), f, sort_keys=False)
        self.buffers: dict[str, mimoBuffer] = {}
        for name, spec in self.setup.buffers.items():
            buf = mimoBuffer(
                name,
                spec.slot_count,
                spec.data_length,
                spec.data_dtype,
                overwrite=spec.overwrite,
                delivery=spec.delivery,
            )
            buf.set_expected_writers(self.setup.writers_of(name))
            if spec.delivery == "every_worker":
                # One reader group per reading worker, before any event is written, so that
                # every group receives every event.
                for worker, wspec in self.setup.workers.items():
                    if name in wspec.sources:
                        buf.core.group_index(worker)
            self.buffers[name] = buf
        self.roots = self.setup.roots()
        self.supervisor = _core.Supervisor()
        for buf in self.buffers.values():
            self.supervisor.watch(buf.core)
        note = write_data_flow(self.setup, self.run_dir / "data_flow.svg")
        if note and "not found" in note:
            _log.info(note)  # graphviz is optional (README): no warning on every run
        elif note:
            _log.warning(note)
            print(f"mimocorb2: {note}", file=sys.stderr)
        _log.info("run directory %s", self.run_dir)

    def _write_worker_specs(self) -> dict[str, Path]:
        handles = {}
        for name, buf in self.buffers.items():
            pid, fd, instance = buf.core.handle()
            handles[name] = {
                "pid": pid,
                "fd": fd,
                "instance": list(instance),
                "data_length": buf.data_length,
            }
        paths = {}
        for name, w in self.setup.workers.items():
            used = set(w.sources) | set(w.sinks) | set(w.observes)
            spec = {
                "worker": name,
                "function": w.function,
                "file": str(w.file) if w.file else None,
                "config": w.config,
                "number_of_processes": w.number_of_processes,
                "sources": list(w.sources),
                "sinks": list(w.sinks),
                "observes": list(w.observes),
                "restart": w.restart,
                "max_restarts": w.max_restarts,
                "setup_dir": str(self.setup_dir),
                "run_dir": str(self.run_dir),
                "control_pid": os.getpid(),
                "package_dir": str(_PACKAGE_DIR),
                "buffers": {b: handles[b] for b in sorted(used)},
            }
            path = self._runtime / f"{name}.yaml"
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
            paths[name] = path
        return paths

    def _note_no_display(self) -> bool:
        """Says once per run that the plot workers are skipped without a display.

        Returns:
            Whether the note was printed (the plot workers then do not repeat it).
        """
        plots = [
            name
            for name, w in self.setup.workers.items()
            if w.file is None and w.function.split(".")[0] in ("observers", "visualizers")
        ]
        if not plots:
            return False
        from mimocorb2._plotting import _environment_problem

        problem = _environment_problem()
        if problem is None:
            return False
        if "gui" in self.modes and self._gui is None:  # the GUI has said why already
            note = f"the plot workers {', '.join(plots)} are skipped as well"
        else:
            note = f"no display: the plot workers {', '.join(plots)} are skipped; {problem}"
        _log.info(note)
        print(f"mimocorb2: {note}", file=sys.stderr)
        return True

    def start_workers(self) -> None:
        """Starts every worker process (fresh interpreters)."""
        specs = self._write_worker_specs()
        env = [("PYTHONUNBUFFERED", "1")]
        if self._note_no_display():
            env.append((NO_DISPLAY_NOTED_ENV, "1"))
        for name, w in self.setup.workers.items():
            restarts = w.max_restarts if w.restart == "on-failure" else 0
            worker_env = [*env, (WORKER_TAG_ENV, str(self._tags[name]))]
            for i in range(w.number_of_processes):
                self.supervisor.spawn(
                    f"{name}_{i}",
                    name,
                    sys.executable,
                    # -P (safe path): not the current directory first on sys.path, so that a
                    # mimocorb2/ folder there (e.g. a mimoCoRB2 checkout) is not imported.
                    ["-P", "-m", "mimocorb2._worker_main", str(specs[name]), str(i)],
                    str(self.run_dir / "logs" / f"{name}.log"),
                    worker_env,
                    restarts,
                )
        self._started = time.time()
        n = sum(w.number_of_processes for w in self.setup.workers.values())
        _log.info("started %d processes", n)

    def serve(self, address: str, keys: str | Path | None = None) -> str:
        """Publishes the run and takes remote commands (``mimocorb2 SETUP --serve``).

        Args:
            address: ``tcp://HOST:PORT``; ``PORT`` alone binds to loopback.
            keys: Directory of ``mimocorb2 keygen`` (required for a non-loopback address).

        Returns:
            The address bound.

        Raises:
            RemoteError: Bad address, missing keys, or the address cannot be bound.
        """
        from mimocorb2._gui import setup_info
        from mimocorb2._remote import RemoteServer

        self._remote = RemoteServer(address, keys, setup_info(self), self.commands.put)
        _log.info("serving the run on %s", self._remote.address)
        return str(self._remote.address)

    # ----- commands -----

    def _buffer_names(self, which: Any) -> list[str]:
        if which == "all":
            return list(self.buffers)
        if which == "roots":
            return list(self.roots)
        return [b for b in which if b in self.buffers]

    def execute(self, command: Any) -> bool:
        """Executes one command; returns False for the exit command (None).

        Commands: ``['buffer', 'all'|'roots'|[names], 'shutdown'|'pause'|'resume']`` and
        ``['worker', 'all'|[names], 'shutdown'|'kill']``.
        """
        if command is None:
            return False
        kind, which, action = command
        if kind == "buffer":
            for name in self._buffer_names(which):
                buf = self.buffers[name]
                {"shutdown": buf.send_flush_event, "pause": buf.pause, "resume": buf.resume}[
                    action
                ]()
            _log.info("buffers %s: %s", which, action)
        elif kind == "worker":
            names = None if which == "all" else list(which)
            self._stopped_by_user.update(
                p["name"]
                for p in self._procs
                if p["alive"] and (names is None or p["worker"] in names)
            )
            grace = 0.0 if action == "kill" else 2.0
            threading.Thread(
                target=self.supervisor.terminate, args=(names, grace), daemon=True
            ).start()
            _log.info("workers %s: %s", which, action)
        else:
            raise ValueError(f"unknown command {command!r}")
        return True

    # ----- statistics -----

    def get_stats(self) -> dict[str, Any]:
        """Statistics of buffers, workers and the control."""
        procs = self._procs
        now = time.time()
        workers: dict[str, dict[str, Any]] = {}
        for p in procs:
            w = workers.setdefault(
                p["worker"],
                {"processes": 0, "cpu_percent": 0.0, "failed": 0, "stopped": 0, "restarts": 0},
            )
            prev_t, prev_cpu = self._cpu_prev.get(p["name"], (now, p["cpu_seconds"]))
            cpu = 100.0 * (p["cpu_seconds"] - prev_cpu) / (now - prev_t) if now > prev_t else 0.0
            self._cpu_prev[p["name"]] = (now, p["cpu_seconds"])
            if p["alive"]:
                w["processes"] += 1
                w["cpu_percent"] += cpu
            elif self._was_stopped(p):
                w["stopped"] += 1
            elif p["exit_code"] != 0:
                w["failed"] += 1
            w["restarts"] += p["restarts"]
        for w in workers.values():
            if w["processes"]:
                w["cpu_percent"] /= w["processes"]
        buffers = {name: buf.get_stats() for name, buf in self.buffers.items()}
        for name, b in buffers.items():
            b["recent_deadtime"] = self._recent_deadtime.update(name, now, b)
        return {
            "buffers": buffers,
            "workers": workers,
            "time_active": now - self._started if self._started else 0.0,
            "total_processes_alive": sum(1 for p in procs if p["alive"]),
            "control": {"cpu_percent": self._own_cpu()},
        }

    def _own_cpu(self) -> float:
        me = getattr(self, "_me", None)
        if me is None:
            me = self._me = psutil.Process()
            me.cpu_percent(None)
        return float(me.cpu_percent(None))

    def _was_stopped(self, p: dict[str, Any]) -> bool:
        """Whether a process was ended by the user (a worker shutdown command), not crashed."""
        if p.get("stopped"):  # ended by the control (Kill Workers, Ctrl-C twice, shutdown)
            return True
        return p["name"] in self._stopped_by_user and p["exit_code"] in (None, 0, 130, 143)

    @property
    def processes_alive(self) -> int:
        """Number of worker processes running now."""
        return sum(1 for p in self._procs if p["alive"])

    def failures(self) -> list[dict[str, Any]]:
        """Processes that ended with an error (exit code or signal), with their last lines.

        Processes ended by a worker shutdown command (Kill Workers, ``shutdown workers``,
        Ctrl-C twice) are not failures: see :meth:`stopped_by_user`.
        """
        return [
            p
            for p in self._procs
            if not p["alive"] and p["exit_code"] != 0 and not self._was_stopped(p)
        ]

    def stopped_by_user(self) -> list[dict[str, Any]]:
        """Processes ended by a worker shutdown command (by a signal, not by their own error)."""
        return [p for p in self._procs if not p["alive"] and self._was_stopped(p)]

    # ----- running -----

    def _on_sigint(self, _signum: int, _frame: Any) -> None:
        self._interrupts += 1
        if self._interrupts == 1:
            print(
                "\nmimocorb2: Ctrl-C: shutting the root buffers down, the pipeline drains; "
                "press Ctrl-C again to terminate the workers",
                file=sys.stderr,
            )
            self.commands.put(["buffer", "roots", "shutdown"])
            # Drain and end: no buffer waits any more for writers that never registered.
            for buf in self.buffers.values():
                buf.set_expected_writers(0)
        else:
            print("\nmimocorb2: terminating the workers", file=sys.stderr)
            self.commands.put(["worker", "all", "shutdown"])

    def __call__(self) -> None:
        """Starts the workers and the interfaces; returns when every worker has finished."""
        modes = set(self.modes)
        if "gui" in modes:
            from mimocorb2 import _gui

            modes.discard("gui")
            self._gui = _gui.start(self)  # None (and a message) when it cannot run
            if self._gui is None:
                modes.add("kbd")
        old_handler = None
        if threading.current_thread() is threading.main_thread():
            old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        terminal = Terminal(self, interactive="kbd" in modes)
        stats_logger = StatsLogger(self.run_dir / "stats.csv") if "stats" in modes else None
        try:
            self.start_workers()
            terminal.start()
            self._loop(terminal, stats_logger)
        finally:
            self.supervisor.terminate(None, 2.0)
            self._procs = self.supervisor.poll()
            self._account_ended()
            self._pump_lines(terminal)
            summary = self._close_ledger()
            final_stats = self.get_stats()
            if stats_logger is not None:
                stats_logger.close(final_stats)
            terminal.stop()
            terminal.summary(final_stats)
            try:
                self._report(summary)
                self._remote_finish(final_stats)
                from mimocorb2._report import report_after_run  # report/: never raises

                report_after_run(self.run_dir, self.setup)
                self._gui_finish(final_stats)
                self._report_gui_failure()
            finally:
                if self._remote is not None:
                    self._remote.close()
                    self._remote = None
                if self._gui is not None:
                    self._gui.close()
                    self._gui = None
                if old_handler is not None:
                    signal.signal(signal.SIGINT, old_handler)
                logging.getLogger("mimocorb2").removeHandler(self._log_handler)
                self._log_handler.close()

    def _loop(self, terminal: Terminal, stats_logger: StatsLogger | None) -> None:
        last_stats = 0.0
        last_gui = 0.0
        while True:
            self._procs = self.supervisor.poll()
            self._account_ended()
            self._pump_lines(terminal)
            try:
                while True:
                    if not self.execute(self.commands.get_nowait()):
                        return
            except queue.Empty:
                pass
            now = time.monotonic()
            faces = [f for f in (self._gui, self._remote) if f is not None]
            gui_due = bool(faces) and now - last_gui >= self._gui_interval()
            if now - last_stats >= 1.0 or gui_due:
                stats = self.get_stats()
                if gui_due:
                    last_gui = now
                    failures = self.failures()
                    for face in faces:
                        face.send_stats(stats, failures)
                if now - last_stats >= 1.0:
                    last_stats = now
                    terminal.status(stats)
                    if stats_logger is not None:
                        stats_logger.maybe_write(stats)
            self._gui_check(terminal)
            self._end_orphaned_buffers()
            if not any(p["alive"] for p in self._procs):
                return
            time.sleep(0.05)

    # ----- GUI (mode gui): a window in its own process, fed from this loop -----

    @staticmethod
    def _gui_interval() -> float:
        from mimocorb2._gui import STATS_INTERVAL_S

        return STATS_INTERVAL_S

    def _pump_lines(self, terminal: Terminal) -> None:
        """Shows the captured worker output in the terminal, the GUI and to remote clients."""
        if self._gui is None and self._remote is None:
            terminal.flush_lines(self.supervisor)
            return
        lines, dropped = self.supervisor.drain_lines(5000)
        terminal.flush_lines(_Drained(lines, dropped))
        for face in (self._gui, self._remote):
            if face is not None:
                face.send_lines(lines, dropped)

    def _remote_finish(self, final_stats: dict[str, Any]) -> None:
        """Tells the remote clients the final state and the run's exit code."""
        if self._remote is not None:
            self._remote.send_stats(final_stats, self.failures())
            self._remote.send_finished(self.exit_code)

    def _gui_check(self, terminal: Terminal) -> None:
        """Falls back to the terminal when the GUI could not start or ended unexpectedly."""
        if self._gui is None:
            return
        from mimocorb2 import _gui

        problem = self._gui.failure(_gui.READY_TIMEOUT_S)
        if problem is None:
            return
        detail = _gui.gui_log_tail(self)
        self.gui_failure = problem + (f": {detail}" if detail else "")
        print(
            f"mimocorb2: {problem}"
            + (f": {detail}" if detail else "")
            + "; the run continues in the terminal",
            file=sys.stderr,
        )
        _log.warning("%s; the run continues in the terminal", problem)
        self._gui.close(grace=1.0)
        self._gui = None
        if not terminal.interactive:
            terminal.interactive = True
            terminal.start()

    def _gui_finish(self, final_stats: dict[str, Any]) -> None:
        """Shows the final state in the GUI and waits until the window closes.

        The window closes itself after its linger time unless the user keeps it open; a
        Ctrl-C in the terminal stops the wait.
        """
        from mimocorb2 import _gui

        gui = self._gui
        if gui is None or gui.gone.is_set():
            return
        gui.send_stats(final_stats, self.failures())
        gui.send_finished(self.exit_code)
        interrupts = self._interrupts
        linger = _gui.linger_seconds()

        def interrupted() -> bool:
            return self._interrupts != interrupts

        gui.wait_closed(linger + 10.0, interrupted, until_keep_open=True)
        if gui.keep_open and not gui.gone.is_set() and not interrupted():
            print(
                "mimocorb2: every worker has finished; close the GUI window to end",
                file=sys.stderr,
            )
            gui.wait_closed(None, interrupted)
        code = gui.process.poll() if gui.process is not None else None
        if code not in (None, 0) and not gui.exit_requested:
            self.gui_failure = f"the GUI ended with exit code {code} ({_gui.gui_log_tail(self)})"

    def _report_gui_failure(self) -> None:
        """A GUI process that failed makes the run exit 1 (its data are complete)."""
        if self.gui_failure is None:
            return
        self.exit_code = self.exit_code or 1
        _log.error("the GUI failed: %s", self.gui_failure)
        print(
            f"mimocorb2: the GUI failed ({self.gui_failure}); the run's data are complete, "
            f"but the exit code is {self.exit_code}",
            file=sys.stderr,
        )

    def _end_orphaned_buffers(self) -> None:
        """Shuts down a buffer whose readers have all ended, so its writers never block on it.

        Its unread events are reported (they cannot be delivered any more).
        """
        alive = {p["worker"] for p in self._procs if p["alive"]}
        for name, buf in self.buffers.items():
            readers = [w for w, spec in self.setup.workers.items() if name in spec.sources]
            if not readers or buf.flush_event_received or any(w in alive for w in readers):
                continue
            if not any(p["worker"] in readers for p in self._procs):
                continue  # not started yet
            buf.send_flush_event()
            unread = buf.core.discard_unread()
            msg = (
                f"buffer '{name}' has no running reader left (workers {', '.join(readers)} "
                f"ended); shutting it down so its writers stop ({unread} events unread, "
                "counted as lost)"
            )
            _log.warning(msg)
            print(f"mimocorb2: {msg}", file=sys.stderr)

    # ----- the ledger -----

    def _account_ended(self) -> None:
        """Counts processes that ended for good without a writer registration as failed writers.

        A process killed during start-up or stopped by an import error never registered with
        its sinks; counting it as a failed writer there means no buffer waits for it.
        """
        for p in self._procs:
            if p["alive"] or p["pid"] in self._ended_pids:
                continue
            self._ended_pids.add(p["pid"])
            spec = self.setup.workers.get(p["worker"])
            if spec is None:
                continue
            for sink in spec.sinks:
                if sink in self.buffers:
                    self.buffers[sink].core.writer_failed(p["pid"], self._tags[p["worker"]])
        # A worker whose processes have all ended stops holding its reader groups back.
        alive = {p["worker"] for p in self._procs if p["alive"]}
        for worker, spec in self.setup.workers.items():
            if worker in alive or worker in self._ended_groups:
                continue
            if not any(p["worker"] == worker for p in self._procs):
                continue  # not started yet
            self._ended_groups.add(worker)
            for source in spec.sources:
                buf = self.buffers.get(source)
                if buf is not None and buf.delivery == "every_worker":
                    lost = buf.core.end_group(worker)
                    if lost:
                        _log.warning(
                            "worker '%s' ended with %d event(s) of buffer '%s' unread (lost)",
                            worker,
                            lost,
                            source,
                        )

    def _close_ledger(self) -> dict[str, Any]:
        """Counts what nobody will read any more as lost, writes ``run_summary.json``."""
        read = {b for w in self.setup.workers.values() for b in w.sources}
        for name, buf in self.buffers.items():
            buf.send_flush_event()
            if name in read:  # a buffer nobody reads (observed only) keeps its last events
                buf.core.discard_unread()
        buffers = {
            n: buffer_ledger(
                b.core.stats(), b.core.groups() if b.delivery == "every_worker" else None
            )
            for n, b in self.buffers.items()
        }
        regs = {n: b.core.registrations() for n, b in self.buffers.items()}
        workers = worker_ledger(regs, self._tags, self._procs)
        apply_worker_notes(workers, self.run_dir)
        summary = run_summary(buffers, workers)
        write_run_summary(self.run_dir / "run_summary.json", summary)
        return summary

    def _report_ledger(self, summary: dict[str, Any]) -> None:
        """Names every loss with its reason; a run with losses or failures exits 1."""
        for why in summary["reasons"]:
            _log.warning(why)
        if summary["events_lost"]:
            print(
                f"mimocorb2: {summary['events_lost']} event(s) lost: "
                + "; ".join(r for r in summary["reasons"] if "lost" in r or "dropped" in r)
                + " (see run_summary.json)",
                file=sys.stderr,
            )

    def _report(self, summary: dict[str, Any]) -> None:
        """The final summary: failed workers (once, no traceback), stopped ones, the outcome."""
        failed = self.failures()
        stopped = self.stopped_by_user()
        self.exit_code = 1 if failed or summary["exit_status"] else 0
        for p in failed:
            tail = [line for line in p["tail"] if line.strip()]
            _log.error(
                "process %s failed (%s); last output:\n    %s",
                p["name"],
                _how_ended(p),
                "\n    ".join(p["tail"][-10:]),
            )
            where = f"logs/{p['worker']}.log"
            if any(line.startswith("Traceback") for line in tail):
                where = f"the traceback is above and in {where}"
            last = f": {tail[-1].strip()}" if tail else ""
            print(
                f"mimocorb2: worker '{p['worker']}' failed: process {p['name']} "
                f"{_how_ended(p)}{last} ({where})",
                file=sys.stderr,
            )
        if stopped:
            by_worker = {w: sum(p["worker"] == w for p in stopped) for w in self.setup.workers}
            names = ", ".join(f"{w} ({n})" for w, n in by_worker.items() if n)
            print(f"mimocorb2: processes stopped by the user: {names}", file=sys.stderr)
        self._report_ledger(summary)
        if failed or stopped:
            workers = sorted({p["worker"] for p in failed})
            why = (
                f"worker{'s' if len(workers) > 1 else ''} {', '.join(workers)} failed"
                if failed
                else "workers were stopped by the user"
            )
            (self.run_dir / PARTIAL_MARKER).write_text(
                f"The results in this directory are partial: {why}.\n"
                "See mimocorb2.log and logs/ for what happened.\n"
            )
            outcome = f"FAILED ({why})" if failed else "stopped by the user"
            print(
                f"mimocorb2: run finished: {outcome}; the results in {self.run_dir} are "
                f"PARTIAL (see {PARTIAL_MARKER} there)",
                file=sys.stderr,
            )
        elif summary["events_lost"]:
            print(
                f"mimocorb2: run finished: {summary['events_lost']} event(s) LOST (see "
                f"run_summary.json); results in {self.run_dir}",
                file=sys.stderr,
            )
        else:
            print(f"mimocorb2: run finished; results in {self.run_dir}", file=sys.stderr)
