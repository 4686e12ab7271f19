"""Running an experiment: buffers, worker processes, interfaces and statistics.

:class:`Control` validates a setup, creates its buffers in shared memory, starts every worker
process through the supervisor (written in Rust), shows their output and the buffer statistics,
takes commands (terminal, GUI) and returns once every worker has finished.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import yaml

from mimocorb2 import _core
from mimocorb2._control_report import PARTIAL_MARKER as PARTIAL_MARKER
from mimocorb2._control_report import exit_code, report_face_failure, report_run
from mimocorb2._control_types import (
    BufferCommand,
    Command,
    CommandQueue,
    ExitCommand,
    ProcessInfo,
    RunStats,
    WorkerCommand,
    WorkerStats,
    parse_command,
)
from mimocorb2._dataflow import write_data_flow
from mimocorb2._faces import Face, RemoteFace, build_faces, plot_workers, run_info
from mimocorb2._launch_spec import BufferHandle, LaunchSpec, write_launch_spec
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
from mimocorb2.mimo_buffer import mimoBuffer

__all__ = ["Control"]

# The package this control runs; every worker process must import the same one.
_PACKAGE_DIR = Path(__file__).resolve().parent
_log = logging.getLogger("mimocorb2.control")
NO_DISPLAY_NOTED_ENV = "MIMOCORB2_NO_DISPLAY_NOTED"
#: Seconds between two polls of the control's loop while workers print, commands arrive or
#: processes start or end, and while nothing happens.
BUSY_POLL_S = 0.05
IDLE_POLL_S = 0.25
#: Seconds between two statistics for faces that want them more often (the GUI), while no
#: event was committed between the last two.
IDLE_STATS_S = 1.0
"""Set for the workers when the control has said that plots are skipped without a display."""


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
            (``stats.csv`` in the run directory). Used when no ``faces`` are given.
        faces: The faces of the run (:class:`mimocorb2._faces.Face`; the CLI builds them
            with :func:`mimocorb2._faces.build_faces`); default: those of ``mode``.
        commands: The command queue those faces put their commands into; default: a new
            one (the faces built from ``mode`` use it).

    Raises:
        SetupValidationError: Listing every problem of the setup; nothing is created then.
        ValueError: For an unknown mode.
    """

    def __init__(
        self,
        setup_dict: Mapping[str, Any] | Setup,
        setup_dir: str | Path = ".",
        mode: str = "kbd+stats",
        *,
        faces: Sequence[Face] | None = None,
        commands: CommandQueue | None = None,
    ) -> None:
        """Validates the setup, then creates the run directory and the buffers."""
        self.commands = commands if commands is not None else CommandQueue()
        self.faces: list[Face] = (
            list(faces) if faces is not None else build_faces(mode, self.commands)
        )
        if isinstance(setup_dict, Setup):
            self.setup = setup_dict
        else:
            self.setup = parse_setup(setup_dict, setup_dir, source=f"setup in {setup_dir}")
        self.setup_dir = self.setup.setup_dir
        self.exit_code = 0
        self._interrupts = 0
        self._started = 0.0
        self._cpu_prev: dict[str, tuple[float, float]] = {}
        self._procs: list[ProcessInfo] = []
        self.gui_failure: str | None = None  # why a face (the GUI) failed (the run exits 1)
        self._stopped_by_user: set[str] = set()  # processes ended by a worker shutdown command
        self._recent_deadtime = RecentDeadtime()
        self._tags = worker_tags(list(self.setup.workers))
        self._ended_pids: set[int] = set()
        self._ended_groups: set[str] = set()
        self._prepare()

    @classmethod
    def from_setup_file(
        cls,
        setup_file: str | Path,
        mode: str = "kbd+stats",
        *,
        faces: Sequence[Face] | None = None,
        commands: CommandQueue | None = None,
    ) -> Control:
        """Creates a Control from a YAML setup file (validated first)."""
        setup = load_setup_file(setup_file)
        return cls(setup, setup.setup_dir, mode, faces=faces, commands=commands)

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
        handles: dict[str, BufferHandle] = {}
        for name, buf in self.buffers.items():
            pid, fd, instance = buf.core.handle()
            handles[name] = BufferHandle(
                pid=pid, fd=fd, instance=list(instance), data_length=buf.data_length
            )
        paths = {}
        for name, w in self.setup.workers.items():
            used = set(w.sources) | set(w.sinks) | set(w.observes)
            spec = LaunchSpec(
                worker=w,
                buffers={b: handles[b] for b in sorted(used)},
                setup_dir=Path(self.setup_dir),
                run_dir=self.run_dir,
                control_pid=os.getpid(),
                package_dir=_PACKAGE_DIR,
            )
            paths[name] = self._runtime / f"{name}.yaml"
            write_launch_spec(paths[name], spec)
        return paths

    def _display_problem(self) -> str | None:
        """Says once per run that the plot workers are skipped without a display.

        Returns:
            The missing display, when it was said (the plot workers then do not repeat it).
        """
        plots = plot_workers(self.setup)
        if not plots:
            return None
        from mimocorb2._plotting import _environment_problem

        problem = _environment_problem()
        if problem is None:
            return None
        note = f"no display: the plot workers {', '.join(plots)} are skipped; {problem}"
        _log.info(note)
        print(f"mimocorb2: {note}", file=sys.stderr)
        return problem

    def start_workers(self, display_noted: bool = False) -> None:
        """Starts every worker process (fresh interpreters).

        Args:
            display_noted: The user has been told that the plot workers are skipped.
        """
        specs = self._write_worker_specs()
        env = [("PYTHONUNBUFFERED", "1")]
        if display_noted:
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

        info = setup_info(run_info(self.setup, self.run_dir, os.getpid(), None))
        server = RemoteServer(address, keys, info, self.commands.put)
        self.faces.append(RemoteFace(server))
        _log.info("serving the run on %s", server.address)
        return str(server.address)

    # ----- commands -----

    def _buffer_names(self, which: str | tuple[str, ...]) -> list[str]:
        if which == "all":
            return list(self.buffers)
        if which == "roots":
            return list(self.roots)
        return [b for b in which if b in self.buffers]

    def execute(self, command: Command | object) -> bool:
        """Executes one command; returns False for the exit command.

        Args:
            command: A :data:`~mimocorb2._control_types.Command`, or its wire form
                (:func:`~mimocorb2._control_types.parse_command`): ``None`` (exit),
                ``['buffer', 'all'|'roots'|[names], 'shutdown'|'pause'|'resume']`` or
                ``['worker', 'all'|[names], 'shutdown'|'kill']``.

        Raises:
            ValueError: If ``command`` is no command.
        """
        command = parse_command(command)
        if isinstance(command, ExitCommand):
            return False
        if isinstance(command, BufferCommand):
            for name in self._buffer_names(command.which):
                buf = self.buffers[name]
                {"shutdown": buf.send_flush_event, "pause": buf.pause, "resume": buf.resume}[
                    command.action
                ]()
            _log.info("buffers %s: %s", command.which, command.action)
        elif isinstance(command, WorkerCommand):
            names = None if command.which == "all" else list(command.which)
            self._stopped_by_user.update(
                p["name"]
                for p in self._procs
                if p["alive"] and (names is None or p["worker"] in names)
            )
            grace = 0.0 if command.action == "kill" else 2.0
            threading.Thread(
                target=self.supervisor.terminate, args=(names, grace), daemon=True
            ).start()
            _log.info("workers %s: %s", command.which, command.action)
        return True

    # ----- statistics -----

    def get_stats(self) -> RunStats:
        """Statistics of buffers, workers and the control."""
        procs = self._procs
        now = time.time()
        workers: dict[str, WorkerStats] = {}
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

    def _was_stopped(self, p: ProcessInfo) -> bool:
        """Whether a process was ended by the user (a worker shutdown command), not crashed."""
        if p.get("stopped"):  # ended by the control (Kill Workers, Ctrl-C twice, shutdown)
            return True
        return p["name"] in self._stopped_by_user and p["exit_code"] in (None, 0, 130, 143)

    @property
    def processes_alive(self) -> int:
        """Number of worker processes running now."""
        return sum(1 for p in self._procs if p["alive"])

    def failures(self) -> list[ProcessInfo]:
        """Processes that ended with an error (exit code or signal), with their last lines.

        Processes ended by a worker shutdown command (Kill Workers, ``shutdown workers``,
        Ctrl-C twice) are not failures: see :meth:`stopped_by_user`.
        """
        return [
            p
            for p in self._procs
            if not p["alive"] and p["exit_code"] != 0 and not self._was_stopped(p)
        ]

    def stopped_by_user(self) -> list[ProcessInfo]:
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
            self.commands.put(BufferCommand("roots", "shutdown"))
            # Drain and end: no buffer waits any more for writers that never registered.
            for buf in self.buffers.values():
                buf.set_expected_writers(0)
        else:
            print("\nmimocorb2: terminating the workers", file=sys.stderr)
            self.commands.put(WorkerCommand("all", "shutdown"))

    def __call__(self) -> None:
        """Starts the workers and the faces; returns when every worker has finished."""
        old_handler = None
        if threading.current_thread() is threading.main_thread():
            old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            problem = self._display_problem()
            run = run_info(self.setup, self.run_dir, os.getpid(), problem)
            for face in self.faces:
                face.start(run)
            self.start_workers(display_noted=problem is not None)
            self._loop()
        finally:
            self._finish(old_handler)

    def _finish(self, old_handler: Any) -> None:
        """Ends the workers, closes the books, tells the faces, reports and releases."""
        try:
            self.supervisor.terminate(None, 2.0)
            self._procs = self.supervisor.poll()
            self._account_ended()
            self._pump_lines()
            summary = self._close_ledger()
            final_stats = self.get_stats()
            failed = self.failures()
            self.exit_code = exit_code(failed, summary)
            for face in self.faces:
                face.finished(final_stats, failed, self.exit_code)
            report_run(
                self.run_dir, list(self.setup.workers), failed, self.stopped_by_user(), summary
            )
            from mimocorb2._report import report_after_run  # report/: never raises

            report_after_run(self.run_dir, self.setup)
        finally:
            interrupts = self._interrupts
            for face in self.faces:
                problem = face.close(lambda: self._interrupts != interrupts)
                self.gui_failure = self.gui_failure or problem
            if self.gui_failure is not None:
                self.exit_code = self.exit_code or 1
                report_face_failure(self.gui_failure, self.exit_code)
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
            logging.getLogger("mimocorb2").removeHandler(self._log_handler)
            self._log_handler.close()

    def _loop(self) -> None:
        """Polls the processes, hands output and statistics to the faces, runs the commands.

        Every ``BUSY_POLL_S`` while something happens (output, commands, processes starting or
        ending), else every ``IDLE_POLL_S`` (statistics still go out on time, at most every
        ``IDLE_STATS_S`` while no event flows): an idle run costs little. A command ends the
        pause at once.
        """
        last_stats = {id(face): 0.0 for face in self.faces}
        pending: Command | None = None
        alive_before = -1
        counts: tuple[int, ...] = ()
        quiet = False  # no event committed between the last two statistics

        def interval(face: Face) -> float:
            return max(face.stats_interval, IDLE_STATS_S) if quiet else face.stats_interval

        while True:
            self._procs = self.supervisor.poll()
            self._account_ended()
            busy = self._pump_lines()
            while (command := pending or self.commands.get_nowait()) is not None:
                pending, busy = None, True
                if not self.execute(command):
                    return
            now = time.monotonic()
            due = [f for f in self.faces if now - last_stats.get(id(f), 0.0) >= interval(f)]
            if due:
                stats = self.get_stats()
                failures = self.failures()
                before, counts = counts, tuple(b["event_count"] for b in stats["buffers"].values())
                quiet = counts == before
                for face in due:
                    last_stats[id(face)] = now
                    face.stats(stats, failures)
            self._end_orphaned_buffers()
            alive = sum(1 for p in self._procs if p["alive"])
            if not alive:
                return
            busy, alive_before = busy or alive != alive_before, alive
            pause = BUSY_POLL_S
            if not busy:
                next_stats = min(
                    (last_stats[id(f)] + interval(f) for f in self.faces),
                    default=now + IDLE_POLL_S,
                )
                pause = min(IDLE_POLL_S, max(BUSY_POLL_S, next_stats - time.monotonic()))
            pending = self.commands.get(pause)

    def _pump_lines(self) -> bool:
        """Hands the captured worker output to every face; True if there was any."""
        lines, dropped = self.supervisor.drain_lines(5000)
        for face in self.faces:
            face.lines(lines, dropped)
        return bool(lines) or dropped > 0

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
