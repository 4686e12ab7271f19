"""The dicts of the control plane, one name per field: what the core and the control hand on.

The Rust core returns plain dicts (``_core.Buffer.stats()``, ``groups()``,
``registrations()``); :meth:`mimocorb2.mimo_buffer.mimoBuffer.get_stats` turns the counts of
filled and empty slots into fractions; :meth:`mimocorb2.control.Control.get_stats` gathers the
buffers, the workers and the control itself. These ``TypedDict`` s name their fields and types
for the type checker; at run time they are ordinary dicts.
"""

from typing import Literal, NotRequired, TypedDict

__all__ = [
    "BufferStats",
    "ControlStats",
    "CoreBufferStats",
    "GroupBacklog",
    "GroupStats",
    "Registration",
    "RunStats",
    "WorkerStats",
]


class CoreBufferStats(TypedDict):
    """``_core.Buffer.stats()``: a snapshot of one buffer's counters."""

    event_count: int
    slot_count: int
    filled_slots: int
    empty_slots: int
    rate: float
    average_deadtime: float
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


class BufferStats(TypedDict):
    """:meth:`mimocorb2.mimo_buffer.mimoBuffer.get_stats`: the core's counters, slots as fractions.

    ``filled_slots`` and ``empty_slots`` are fractions of ``slot_count``; ``average_deadtime``
    is the mean dead time of the committed events and ``wait_deadtime`` the writers' waiting
    share (the core's ``average_deadtime``).
    """

    event_count: int
    slot_count: int
    filled_slots: float
    empty_slots: float
    rate: float
    average_deadtime: float
    mean_event_deadtime: float
    wait_deadtime: float
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
