"""Shared-memory ring buffers of numpy structured-array events.

A :class:`mimoBuffer` is a ring of ``slot_count`` slots in shared memory. Each slot holds one
event: a metadata record (``counter``, ``timestamp``, ``deadtime``) and ``data_length``
elements of the buffer's structured ``data_dtype``. Processes exchange slots through token
queues in the shared region (implemented in Rust), so handing an event from one process to the
next costs about a microsecond and copies nothing.

Access goes through three context managers, each yielding ``[metadata, data]`` as zero-copy
numpy views of the slot:

>>> buf = mimoBuffer("demo", slot_count=8, data_length=4, data_dtype={"x": "f4"})
>>> writer = BufferWriter(buf)
>>> with writer as (metadata, data):
...     data["x"] = [1, 2, 3, 4]
>>> writer.send_flush_event()
>>> reader = BufferReader(buf)
>>> with reader as (metadata, data):
...     print(data["x"])
[1. 2. 3. 4.]
>>> with reader as (metadata, data):
...     print(data)
None

- Readers of one buffer compete: every event goes to exactly one reader. After the buffer
  ended (every writer flushed, or a forced shutdown) and every event was delivered, readers
  get ``[None, None]``.
- Observers see the most recent event as a private copy, without taking it from readers.
- A ``with`` block of a writer that raises returns the slot unpublished.

Buffer objects can be passed to ``multiprocessing`` processes under every start method.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import numpy as np

from mimocorb2 import _core
from mimocorb2._dtypes import METADATA_DTYPE, dtype_from_json, dtype_to_json, make_dtype

__all__ = ["BufferObserver", "BufferReader", "BufferWriter", "Interface", "mimoBuffer"]

_TRASH = _core.TRASH
os.register_at_fork(after_in_child=_core._after_fork)


class mimoBuffer:  # noqa: N801 - name fixed by the spec
    """A ring buffer of events in shared memory.

    Args:
        name: Name of the buffer (used in messages and statistics).
        slot_count: Number of slots (events the buffer can hold at once).
        data_length: Number of ``data_dtype`` elements per event.
        data_dtype: Structured dtype of the data: a ``{field: type}`` mapping, a list of
            ``(field, type)`` pairs or a numpy dtype.
        overwrite: When true and no slot is free, a writer reuses the slot of the oldest
            unread event instead of waiting; overwritten events are counted.

    Raises:
        ValueError: For an invalid geometry or dtype.
        SharedMemoryError: When the memory cannot be reserved.
    """

    metadata_dtype = METADATA_DTYPE
    metadata_length = 1
    metadata_byte_size = METADATA_DTYPE.itemsize
    metadata_example = np.zeros(1, dtype=METADATA_DTYPE)

    def __init__(
        self,
        name: str,
        slot_count: int,
        data_length: int,
        data_dtype: Any,
        overwrite: bool = False,
    ) -> None:
        """Creates the buffer's shared memory."""
        dtype = make_dtype(data_dtype, where=f"buffer '{name}': data_dtype")
        for key, value in (("slot_count", slot_count), ("data_length", data_length)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(
                    f"buffer '{name}': {key} must be a positive integer, got {value!r}"
                )
        data_size = int(data_length) * dtype.itemsize
        header = dtype_to_json(dtype)
        core = _core.Buffer.create(str(name), int(slot_count), data_size, header, bool(overwrite))
        self._init_from_core(core, int(data_length), dtype)

    def _init_from_core(self, core: _core.Buffer, data_length: int, dtype: np.dtype) -> None:
        self._core = core
        self.name: str = core.name
        self.slot_count: int = core.slot_count
        self.data_length = data_length
        self.data_dtype = dtype
        self.overwrite: bool = core.overwrite
        self.data_byte_size = data_length * dtype.itemsize
        self.slot_byte_size = self.data_byte_size + self.metadata_byte_size
        self._pid = os.getpid()
        self._memory = np.frombuffer(core.memory(), dtype=np.uint8)
        self._views: list[list[np.ndarray] | None] = [None] * self.slot_count
        self._trash: list[np.ndarray] | None = None

    @classmethod
    def from_setup(cls, name: str, setup: Mapping[str, Any]) -> mimoBuffer:
        """Creates a buffer from its setup entry.

        Args:
            name: Buffer name.
            setup: The mapping under ``Buffers.<name>`` of a setup file, with ``slot_count``,
                ``data_length``, ``data_dtype`` and optionally ``overwrite``.

        Returns:
            The new buffer.
        """
        missing = [k for k in ("slot_count", "data_length", "data_dtype") if k not in setup]
        if missing:
            raise ValueError(f"buffer '{name}': missing key(s) {', '.join(missing)}")
        return cls(
            name,
            setup["slot_count"],
            setup["data_length"],
            setup["data_dtype"],
            overwrite=bool(setup.get("overwrite", False)),
        )

    # ----- pickling: re-attach in the receiving process -----

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickles as a handle that re-attaches to the same shared memory."""
        pid, fd, instance = self._core.handle()
        return (_attach, (pid, fd, tuple(instance), self.data_length))

    # ----- views -----

    @property
    def data_example(self) -> np.ndarray:
        """A zero-filled array shaped like one event's data."""
        return np.zeros(self.data_length, dtype=self.data_dtype)

    def _slot_views(self, slot: int) -> list[np.ndarray]:
        """The ``[metadata, data]`` views of a slot (built once per slot)."""
        if slot == _TRASH:
            return self._trash_views()
        views = self._views[slot]
        if views is None:
            start = self._core.slots_offset + slot * self._core.slot_stride
            meta = self._memory[start : start + 24].view(METADATA_DTYPE)
            data = self._memory[start + 24 : start + self.slot_byte_size].view(self.data_dtype)
            views = self._views[slot] = [meta, data]
        return views

    def _trash_views(self) -> list[np.ndarray]:
        if self._trash is None:
            raw = np.zeros(self.slot_byte_size + 8, dtype=np.uint8)
            self._trash = [
                raw[:24].view(METADATA_DTYPE),
                raw[24 : self.slot_byte_size].view(self.data_dtype),
            ]
        return self._trash

    # ----- control -----

    def send_flush_event(self) -> None:
        """Shuts the buffer down at once (a forced flush).

        Writing is refused from now on; readers still receive every event committed before,
        then ``[None, None]``. Workers end their own writing with
        :meth:`BufferWriter.send_flush_event`, which waits for the buffer's other writers.
        """
        self._core.force_end()

    def pause(self) -> None:
        """Pauses: writes go to a discard slot and are counted in ``paused_count``."""
        self._core.pause()

    def resume(self) -> None:
        """Resumes after :meth:`pause`."""
        self._core.resume()

    def set_expected_writers(self, n: int) -> None:
        """Declares how many writers must flush before the buffer ends in order."""
        self._core.set_expected_writers(int(n))

    def reclaim(self, pid: int) -> tuple[int, int, int]:
        """Frees the slots and writer registrations of a dead process.

        Returns:
            ``(slots it was writing, events lost with it, writer registrations closed)``.
        """
        return self._core.reclaim(int(pid))

    @property
    def flush_event_received(self) -> bool:
        """True once the buffer has ended."""
        return self._core.is_ended

    def get_stats(self) -> dict[str, Any]:
        """Statistics of the buffer, the same for every process that asks.

        Returns:
            A dict with ``event_count``, ``filled_slots`` and ``empty_slots`` (fractions of
            ``slot_count``), ``flush_event_received``, ``rate`` (events/s over the last
            ≥ 0.5 s), ``average_deadtime`` (the mean of the ``deadtime`` metadata of the
            committed events, as the writers left it: stamped by an Importer, or set by
            the writer itself, e.g. a board's own dead time), ``paused_count``, ``paused``,
            plus ``overwritten``, ``lost``, ``forced_shutdown``, ``active_writers``,
            ``crashed_writers``, ``mean_event_deadtime`` (the same as
            ``average_deadtime``) and ``wait_deadtime`` (the writers' summed waiting time
            for free slots over the summed time between their events, 0..1).
        """
        s = self._core.stats()
        n = s["slot_count"]
        s["filled_slots"] = s["filled_slots"] / n
        s["empty_slots"] = s["empty_slots"] / n
        s["wait_deadtime"] = s["average_deadtime"]
        s["average_deadtime"] = s["mean_event_deadtime"]
        return s

    def __repr__(self) -> str:
        """Short description."""
        return (
            f"mimoBuffer({self.name!r}, slot_count={self.slot_count}, "
            f"data_length={self.data_length}, data_dtype={self.data_dtype})"
        )


def _attach(pid: int, fd: int, instance: tuple[int, int], data_length: int) -> mimoBuffer:
    """Re-creates a :class:`mimoBuffer` handle in another process (unpickling)."""
    core = _core.Buffer.attach(pid, fd, list(instance))
    buf = mimoBuffer.__new__(mimoBuffer)
    buf._init_from_core(core, data_length, dtype_from_json(core.dtype))
    return buf


class _ShutdownFlag:
    """``is_shutdown.value`` of the reference API: true once the buffer has ended."""

    __slots__ = ("_core",)

    def __init__(self, core: _core.Buffer) -> None:
        self._core = core

    @property
    def value(self) -> bool:
        return self._core.is_ended

    def __bool__(self) -> bool:
        return self._core.is_ended

    def __repr__(self) -> str:
        return f"is_shutdown(value={self.value})"


class Interface:
    """Common attributes of the buffer access objects.

    Args:
        buffer: The buffer to access.
    """

    def __init__(self, buffer: mimoBuffer) -> None:
        """Binds the interface to ``buffer``."""
        if not isinstance(buffer, mimoBuffer):
            raise TypeError(f"expected a mimoBuffer, got {type(buffer).__name__}")
        self.buffer = buffer
        self.name = buffer.name
        self.slot_count = buffer.slot_count
        self.data_example = buffer.data_example
        self.metadata_example = buffer.metadata_example.copy()
        self.is_shutdown = _ShutdownFlag(buffer._core)
        self.get_stats = buffer.get_stats
        self.shutdown_buffer = buffer.send_flush_event


class BufferWriter(_core.Writer, Interface):
    """Writes events: ``with writer as (metadata, data): ...`` fills one slot.

    The slot is published when the block ends normally and returned unpublished when it
    raises. Metadata is left as the block wrote it (filters forward their source's metadata),
    unless ``stamp=True``: then ``counter``, ``timestamp`` and ``deadtime`` are set by the
    buffer on commit (the Importer path). The context manager itself runs in Rust.

    Args:
        buffer: The buffer to write to.
        timeout: Seconds to wait for a free slot (None: as long as it takes).
        stamp: Stamp the metadata on commit.

    Raises:
        BufferEndedError: On entering the block after the buffer has ended.
        BufferTimeoutError: If no slot became free within ``timeout``.
    """

    def __init__(self, buffer: mimoBuffer, timeout: float | None = None, stamp: bool = False):
        """Registers a writer with the buffer."""
        Interface.__init__(self, buffer)

    def write_batch(
        self, data: np.ndarray, metadata: np.ndarray | None = None, timeout: float | None = None
    ) -> int:
        """Writes many events in one hand-off (one memcpy per event).

        Args:
            data: ``k * data_length`` elements of the buffer's dtype (shape ``(k, data_length)``
                or, for ``data_length == 1``, ``(k,)``).
            metadata: ``k`` metadata records to store as given; without them the buffer stamps
                counter, timestamp and dead time.
            timeout: Seconds to wait for free slots (default: the writer's timeout).

        Returns:
            The number of events written (or discarded while paused): always ``k``.
        """
        buf = self.buffer
        data = np.ascontiguousarray(data, dtype=buf.data_dtype).reshape(-1, buf.data_length)
        k = len(data)
        if metadata is None:
            rows = data.view(np.uint8).reshape(k, -1)
            with_meta = False
        else:
            rec = np.empty(k, dtype=_record_dtype(buf))
            rec["metadata"] = np.asarray(metadata, dtype=METADATA_DTYPE).reshape(k)
            rec["data"] = data
            rows = rec.view(np.uint8).reshape(k, -1)
            with_meta = True
        if timeout is None:
            timeout = self.timeout
        done = 0
        while done < k:
            done += _core.Writer.write_batch(
                self, rows[done:], k - done, with_meta, not with_meta, timeout
            )
        return k

    def send_flush_event(self) -> None:
        """This writer is done. The buffer ends once all of its writers are done."""
        self.finish()


def _record_dtype(buf: mimoBuffer) -> np.dtype:
    """Packed dtype of one slot as a record: metadata followed by the data."""
    return np.dtype([("metadata", METADATA_DTYPE), ("data", buf.data_dtype, (buf.data_length,))])


class BufferReader(_core.Reader, Interface):
    """Reads events: ``with reader as (metadata, data): ...`` holds one slot.

    Yields ``[None, None]`` once the buffer has ended and every event was delivered. The
    context manager itself runs in Rust.

    Args:
        buffer: The buffer to read from.
        timeout: Seconds to wait for an event (None: as long as it takes).

    Raises:
        BufferTimeoutError: If no event arrived within ``timeout``.
    """

    def __init__(self, buffer: mimoBuffer, timeout: float | None = None) -> None:
        """Creates a reader of ``buffer``."""
        Interface.__init__(self, buffer)

    def read_batch(
        self, max_events: int, timeout: float | None = None
    ) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        """Reads up to ``max_events`` events in one hand-off, as copies.

        Args:
            max_events: Most events to return.
            timeout: Seconds to wait for the first event (default: the reader's timeout).

        Returns:
            ``(metadata, data)`` with shapes ``(k,)`` and ``(k, data_length)``, ``k ≥ 1``;
            ``(None, None)`` at the end of the stream.
        """
        if int(max_events) < 1:
            raise ValueError(f"read_batch: max_events must be >= 1, got {max_events}")
        buf = self.buffer
        out = np.empty(int(max_events), dtype=_record_dtype(buf))
        if timeout is None:
            timeout = self.timeout
        k = _core.Reader.read_batch(self, out.view(np.uint8), int(max_events), timeout)
        if k == 0:
            return None, None
        return out["metadata"][:k], out["data"][:k]


class BufferObserver(Interface):
    """Observes events: ``with observer as (metadata, data): ...`` sees a copy of the newest one.

    The observer never takes events from readers and never holds a slot. Each ``with`` waits
    for an event newer than the last one it saw; it yields ``[None, None]`` after the buffer
    ended.

    Args:
        buffer: The buffer to observe.
        timeout: Seconds to wait for a new event (None: as long as it takes).

    Raises:
        BufferTimeoutError: If no new event arrived within ``timeout``.
    """

    def __init__(self, buffer: mimoBuffer, timeout: float | None = None) -> None:
        """Creates an observer with its private copy of one event."""
        super().__init__(buffer)
        self._o = _core.Observer(buffer)
        self._core = buffer._core
        self._timeout = timeout
        self._copy = np.zeros(buffer.slot_byte_size, dtype=np.uint8)
        self._views = [
            self._copy[:24].view(METADATA_DTYPE),
            self._copy[24:].view(buffer.data_dtype),
        ]

    def __enter__(self) -> list[Any]:
        """Copies the newest event and returns ``[metadata, data]`` views of the copy.

        Returns ``[None, None]`` once the buffer has ended, also to an observer that has not
        seen the last event yet.
        """
        if self._core.is_ended or not self._o.observe(self._copy, self._timeout):
            return [None, None]
        return self._views

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Nothing to give back: the observer holds no slot."""
