"""The dicts of the control plane, one name per field: what the core and the control hand on.

The Rust core returns plain dicts (``_core.Buffer.stats()``, ``groups()``,
``registrations()``); :meth:`mimocorb2.mimo_buffer.mimoBuffer.get_stats` turns the counts of
filled and empty slots into fractions; :meth:`mimocorb2.control.Control.get_stats` gathers the
buffers, the workers and the control itself. These ``TypedDict`` s name their fields and types
for the type checker; at run time they are ordinary dicts.

The supervisor's records (:class:`ProcessInfo`, :data:`OutputLine`) and what the faces of a
run learn about it at the start (:class:`RunInfo`) are typed here too. The commands that the
terminal, the GUI and remote clients send the control are dataclasses; :func:`parse_command`
is the one place where a command is checked, whichever way it came
(:class:`CommandQueue` applies it to everything put in).
"""

import queue
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

__all__ = [
    "BufferCommand",
    "BufferInfo",
    "BufferStats",
    "Command",
    "CommandQueue",
    "ControlStats",
    "CoreBufferStats",
    "ExitCommand",
    "GroupBacklog",
    "GroupStats",
    "OutputLine",
    "ProcessInfo",
    "Registration",
    "RunInfo",
    "RunStats",
    "WorkerCommand",
    "WorkerInfo",
    "WorkerStats",
    "command_to_wire",
    "parse_command",
]


class _BufferCounters(TypedDict):
    """The fields that ``_core.Buffer.stats()`` and ``mimoBuffer.get_stats()`` share."""

    event_count: int
    slot_count: int
    rate: float
    wait_deadtime: float
    mean_event_deadtime: float
    paused_count: int
    paused: bool
    flush_event_received: bool
    forced_shutdown: bool
    overwritten: int
    lost: int
    active_writers: int
    crashed_writers: int
    consumed: int
    lost_reader_crashed: int
    lost_unread: int
    aborted_writes: int
    repairs: int
    held_slots: int


class CoreBufferStats(_BufferCounters):
    """``_core.Buffer.stats()``: a snapshot of one buffer's counters."""

    filled_slots: int
    empty_slots: int


class GroupStats(TypedDict):
    """One entry of ``_core.Buffer.groups()``: a reader group of an ``every_worker`` buffer."""

    index: int
    name: str
    active: bool
    backlog: int
    consumed: int
    lost: int
    overwritten: int


class GroupBacklog(TypedDict):
    """A reader group in :class:`BufferStats` (``groups``, by group name)."""

    backlog: int
    consumed: int
    lost: int
    overwritten: int


class Registration(TypedDict):
    """One entry of ``_core.Buffer.registrations()``: an endpoint and its ledger counters."""

    role: Literal["writer", "reader"]
    pid: int
    state: str
    tag: int
    events: int
    filtered: int
    dropped: int
    failed: int


class BufferStats(_BufferCounters):
    """:meth:`mimocorb2.mimo_buffer.mimoBuffer.get_stats`: the core's counters, slots as fractions.

    ``filled_slots`` and ``empty_slots`` are fractions of ``slot_count``; ``wait_deadtime``
    (the writers' waiting share) and ``mean_event_deadtime`` (the mean dead time of the
    committed events) come from the core under these names, and ``average_deadtime`` is the
    manual's name for ``mean_event_deadtime``.
    """

    filled_slots: float
    empty_slots: float
    average_deadtime: float
    groups: NotRequired[dict[str, GroupBacklog]]
    recent_deadtime: NotRequired[float]


class WorkerStats(TypedDict):
    """One worker in :class:`RunStats`: its processes now and how the others ended."""

    processes: int
    cpu_percent: float
    failed: int
    stopped: int
    restarts: int


class ControlStats(TypedDict):
    """The control process itself in :class:`RunStats`."""

    cpu_percent: float


class RunStats(TypedDict):
    """:meth:`mimocorb2.control.Control.get_stats`: what the terminal, GUI and log show."""

    buffers: dict[str, BufferStats]
    workers: dict[str, WorkerStats]
    time_active: float
    total_processes_alive: int
    control: ControlStats


class ProcessInfo(TypedDict):
    """One entry of ``_core.Supervisor.poll()``: a worker process and how it ended."""

    name: str
    worker: str
    pid: int
    alive: bool
    exit_code: int | None
    signal: int | None
    cpu_seconds: float
    runtime: float
    restarts: int
    stopped: bool
    earlier_pids: list[int]
    reclaimed: tuple[int, int, int]
    tail: list[str]


OutputLine = tuple[str, str, str, str]
"""A captured output line: ``(process, worker, stream, text)``, stream ``stdout``/``stderr``."""


class BufferInfo(TypedDict):
    """A buffer in :class:`RunInfo`."""

    slot_count: int
    data_length: int


class WorkerInfo(TypedDict):
    """A worker in :class:`RunInfo`."""

    function: str
    number_of_processes: int
    sources: list[str]
    sinks: list[str]
    observes: list[str]


class RunInfo(TypedDict):
    """What the faces of a run know of it from the start (JSON-safe: sent to the GUI too).

    ``display_problem`` is the missing display the control has already told the user about
    (its plot workers are skipped), or None.
    """

    setup_name: str
    run_dir: str
    roots: list[str]
    buffers: dict[str, BufferInfo]
    workers: dict[str, WorkerInfo]
    control_pid: int
    display_problem: str | None


# ----- commands -----

BufferAction = Literal["shutdown", "pause", "resume"]
WorkerAction = Literal["shutdown", "kill"]
_BUFFER_ACTIONS: tuple[BufferAction, ...] = ("shutdown", "pause", "resume")
_WORKER_ACTIONS: tuple[WorkerAction, ...] = ("shutdown", "kill")


@dataclass(frozen=True)
class BufferCommand:
    """Shut down, pause or resume buffers.

    Attributes:
        which: ``"all"``, ``"roots"`` or the buffer names.
        action: ``"shutdown"``, ``"pause"`` or ``"resume"``.
    """

    which: Literal["all", "roots"] | tuple[str, ...]
    action: BufferAction


@dataclass(frozen=True)
class WorkerCommand:
    """End worker processes: ``shutdown`` (SIGTERM, then SIGKILL after 2 s) or ``kill``.

    Attributes:
        which: ``"all"`` or the worker names.
        action: ``"shutdown"`` or ``"kill"``.
    """

    which: Literal["all"] | tuple[str, ...]
    action: WorkerAction


@dataclass(frozen=True)
class ExitCommand:
    """Leave the control loop (``None`` on the wire)."""


Command = BufferCommand | WorkerCommand | ExitCommand
"""A command for the control."""


def _names(which: object, allowed: tuple[str, ...]) -> str | tuple[str, ...]:
    if isinstance(which, str) and which in allowed:
        return which
    if isinstance(which, list | tuple) and all(isinstance(n, str) for n in which):
        return tuple(which)
    raise ValueError(f"names {which!r}: use {' or '.join(map(repr, allowed))} or a list of names")


def parse_command(raw: object) -> Command:
    """The command ``raw`` stands for: a :data:`Command`, or its wire form.

    The wire form (terminal, GUI link, remote clients) is ``None`` for the exit command,
    ``["buffer", "all"|"roots"|[names], "shutdown"|"pause"|"resume"]`` or
    ``["worker", "all"|[names], "shutdown"|"kill"]``.

    Raises:
        ValueError: If ``raw`` is no command.
    """
    if isinstance(raw, BufferCommand | WorkerCommand | ExitCommand):
        return raw
    if raw is None:
        return ExitCommand()
    if not isinstance(raw, list | tuple) or len(raw) != 3:
        raise ValueError(f"unknown command {raw!r}")
    kind, which, action = raw
    if kind == "buffer" and action in _BUFFER_ACTIONS:
        return BufferCommand(_names(which, ("all", "roots")), action)  # type: ignore[arg-type]
    if kind == "worker" and action in _WORKER_ACTIONS:
        return WorkerCommand(_names(which, ("all",)), action)  # type: ignore[arg-type]
    raise ValueError(f"unknown command {raw!r}")


def command_to_wire(command: Command) -> list[object] | None:
    """The wire form of ``command`` (see :func:`parse_command`)."""
    if isinstance(command, ExitCommand):
        return None
    which = command.which if isinstance(command.which, str) else list(command.which)
    kind = "buffer" if isinstance(command, BufferCommand) else "worker"
    return [kind, which, command.action]


class CommandQueue:
    """The control's command queue: every command put in is checked (:func:`parse_command`).

    The terminal, the GUI link and the remote server put commands in (from their own
    threads); the control's loop takes them out.
    """

    def __init__(self) -> None:
        """An empty queue."""
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()

    def put(self, command: object) -> None:
        """Queues a :data:`Command` or its wire form.

        Raises:
            ValueError: If ``command`` is no command.
        """
        self._queue.put(parse_command(command))

    def get_nowait(self) -> Command | None:
        """The oldest command, or None when there is none."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def get(self, timeout: float) -> Command | None:
        """The oldest command, waiting up to ``timeout`` seconds for one; None if none came."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
