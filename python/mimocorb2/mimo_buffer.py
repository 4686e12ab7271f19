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
from typing import Any, cast

import numpy as np

from mimocorb2 import _core
from mimocorb2._control_types import BufferStats
from mimocorb2._dtypes import METADATA_DTYPE, dtype_from_json, dtype_to_json, make_dtype
from mimocorb2._limits import MAX_NAME_BYTES, MAX_SLOT_DATA_BYTES, MAX_SLOTS, check_timeout
from mimocorb2._limits import preview as _preview
from mimocorb2.exceptions import LayoutMismatchError

__all__ = ["BufferObserver", "BufferReader", "BufferWriter", "Interface", "mimoBuffer"]

_TRASH = _core.TRASH
_META = _core.METADATA_SIZE
if METADATA_DTYPE.itemsize != _META:  # pragma: no cover - a build of another layout
    raise ImportError(
        f"mimocorb2._core stores {_META} bytes of metadata per slot, the package "
        f"{METADATA_DTYPE.itemsize}: reinstall mimocorb2"
    )
os.register_at_fork(after_in_child=_core.after_fork)


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
        delivery: ``"compete"`` (default): each event goes to exactly one reader.
            ``"every_worker"``: every reader group (see :class:`BufferReader`) receives every
            event exactly once, zero-copy; the slowest group holds writers back (or, with
            ``overwrite``, loses its oldest unread events, counted per group). At most 16
            groups; a group receives the events committed after it was created.

    Raises:
        ValueError: For an invalid name, geometry or dtype, naming the buffer and the key:
            ``slot_count`` from 1 to 2**20, ``data_length`` from 1 with at most 1 TiB of data
            per slot, a name of 1 to 240 bytes without NUL.
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
        delivery: str = "compete",
    ) -> None:
        """Creates the buffer's shared memory."""
        if delivery not in ("compete", "every_worker"):
            raise ValueError(
                f"buffer {name!r}: delivery must be 'compete' (each event goes to one reader) "
                f"or 'every_worker' (every reader group gets every event), got {delivery!r}"
            )
        if (
            not isinstance(name, str)
            or not name
            or "\0" in name
            or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
        ):
            raise ValueError(
                f"buffer name {_preview(name)} must be a text of 1 to {MAX_NAME_BYTES} bytes "
                "without NUL characters"
            )
        dtype = make_dtype(data_dtype, where=f"buffer {name!r}: data_dtype")
        for key, value, limit in (
            ("slot_count", slot_count, MAX_SLOTS),
            ("data_length", data_length, MAX_SLOT_DATA_BYTES // dtype.itemsize),
        ):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(
                    f"buffer {name!r}: {key} must be a positive integer, got {_preview(value)}"
                )
            if value > limit:
                what = "slots" if key == "slot_count" else "elements (1 TiB of data per slot)"
                raise ValueError(
                    f"buffer {name!r}: {key} {_preview(value)} is more than the limit of "
                    f"{limit} {what}"
                )
        data_size = int(data_length) * dtype.itemsize
        header = dtype_to_json(dtype)
        core = _core.Buffer.create(
            str(name), int(slot_count), data_size, header, bool(overwrite), delivery
        )
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
        self._views = _SlotViews(self, writable=True)

    @property
    def core(self) -> _core.Buffer:
        """The native buffer of the Rust core (for the endpoints and the run control)."""
        return self._core

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
            delivery=str(setup.get("delivery", "compete")),
        )

    # ----- pickling: re-attach in the receiving process -----

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickles as a handle that re-attaches to the same shared memory."""
        pid, fd, instance = self._core.handle()
        return (_attach, (pid, fd, tuple(instance), self.data_length))

    def __setstate__(self, state: tuple[_core.Buffer, int, np.dtype]) -> None:
        """Binds a handle made by unpickling (see :func:`_attach`) to its native buffer."""
        self._init_from_core(*state)

    # ----- views -----

    @property
    def data_example(self) -> np.ndarray:
        """A zero-filled array shaped like one event's data."""
        return np.zeros(self.data_length, dtype=self.data_dtype)

    def views(self, slot: int) -> list[np.ndarray]:
        """The writable ``[metadata, data]`` views of one slot, zero-copy, built once per slot.

        For templates that hold a slot through :meth:`BufferWriter.acquire` and fill it before
        :meth:`BufferWriter.commit`; a ``with`` block yields the same views by itself.

        Args:
            slot: A slot index as returned by ``acquire``; ``TRASH`` (the slot of a paused
                buffer) gives the views of a private discard slot.

        Raises:
            IndexError: For a slot index outside the buffer.
        """
        return self._views[slot]

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

    def get_stats(self) -> BufferStats:
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
        core = self._core.stats()
        n = core["slot_count"]
        s = cast("BufferStats", dict(core))
        s["filled_slots"] = core["filled_slots"] / n
        s["empty_slots"] = core["empty_slots"] / n
        # The manual's name for the mean event dead time.
        s["average_deadtime"] = core["mean_event_deadtime"]
        if self._core.delivery == "every_worker":
            s["groups"] = {
                g["name"]: {
                    "backlog": g["backlog"],
                    "consumed": g["consumed"],
                    "lost": g["lost"],
                    "overwritten": g["overwritten"],
                }
                for g in self._core.groups()
            }
        return s

    @property
    def delivery(self) -> str:
        """``"compete"`` or ``"every_worker"``."""
        return self._core.delivery

    def __repr__(self) -> str:
        """Short description."""
        return (
            f"mimoBuffer({self.name!r}, slot_count={self.slot_count}, "
            f"data_length={self.data_length}, data_dtype={self.data_dtype})"
        )


def _attach(pid: int, fd: int, instance: tuple[int, int], data_length: int) -> mimoBuffer:
    """Re-creates a :class:`mimoBuffer` handle in another process (unpickling)."""
    core = _core.Buffer.attach(pid, fd, list(instance))
    dtype = dtype_from_json(core.dtype)
    if (
        isinstance(data_length, bool)
        or not isinstance(data_length, int | np.integer)
        or data_length < 1
        or data_length * dtype.itemsize != core.data_size
    ):
        have = core.data_size // dtype.itemsize
        raise LayoutMismatchError(
            f"buffer {core.name!r}: attaching with data_length {_preview(data_length)}, but "
            f"the buffer holds {have} elements of {dtype.itemsize} bytes per slot"
        )
    buf = mimoBuffer.__new__(mimoBuffer)
    buf.__setstate__((core, int(data_length), dtype))
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
        self.is_shutdown = _ShutdownFlag(buffer.core)
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

    The ``[metadata, data]`` views are writable only inside the ``with`` block: a write
    through them after the block (into an event already handed on) raises ``ValueError``.

    Raises:
        ValueError: For a timeout that is not None or a number of seconds from 0 to 1e9.
        BufferEndedError: On entering the block after the buffer has ended.
        BufferTimeoutError: If no slot became free within ``timeout``.
    """

    def __new__(
        cls, buffer: mimoBuffer, timeout: float | None = None, stamp: bool = False
    ) -> BufferWriter:
        """Checks the arguments, then registers the writer (in the core)."""
        if not isinstance(buffer, mimoBuffer):
            raise TypeError(f"expected a mimoBuffer, got {type(buffer).__name__}")
        timeout = check_timeout(timeout, f"BufferWriter of buffer {buffer.name!r}")
        views = _SlotViews(buffer, writable=False)
        return super().__new__(cls, buffer.core, views, timeout, bool(stamp))

    def __init__(self, buffer: mimoBuffer, timeout: float | None = None, stamp: bool = False):
        """Registers a writer with the buffer."""
        Interface.__init__(self, buffer)

    # ``with writer as (metadata, data)`` runs in Rust (``_core.Writer.__enter__`` /
    # ``__exit__``): the views are writable inside the block and read-only after it.

    def acquire(self, timeout: float | None = None) -> int:
        """Takes a free slot and returns its index (``TRASH`` while paused).

        Args:
            timeout: Seconds to wait (None: as long as it takes).

        Raises:
            ValueError: For a timeout that is not None or a number from 0 to 1e9.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, f"BufferWriter of buffer {self.name!r}")
        return _core.Writer.acquire(self, timeout)

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
            The number of events written (or discarded while paused), always ``k``.

        Raises:
            ValueError: For data or metadata of another shape or dtype (a structured array
                with the same field names converts), or a bad timeout.
        """
        buf = self.buffer
        where = f"write_batch to buffer {buf.name!r}"
        data = _batch_array(data, buf.data_dtype, "data", where)
        if data.ndim == 1 and buf.data_length == 1:
            data = data.reshape(-1, 1)
        if data.ndim != 2 or data.shape[1] != buf.data_length:
            raise ValueError(
                f"{where}: data must have the shape (k, {buf.data_length})"
                + (" or (k,)" if buf.data_length == 1 else "")
                + f", got {data.shape}"
            )
        data = np.ascontiguousarray(data)
        k = len(data)
        if metadata is None:
            rows = data.view(np.uint8).reshape(k, buf.data_byte_size)  # also for k == 0
            with_meta = False
        else:
            metadata = _batch_array(metadata, METADATA_DTYPE, "metadata", where)
            if metadata.shape != (k,):
                raise ValueError(
                    f"{where}: metadata must have the shape ({k},) for {k} events, got "
                    f"{metadata.shape}"
                )
            rec = np.empty(k, dtype=_record_dtype(buf))
            rec["metadata"] = metadata
            rec["data"] = data
            rows = rec.view(np.uint8).reshape(k, rec.dtype.itemsize)
            with_meta = True
        timeout = self.timeout if timeout is None else check_timeout(timeout, where)
        done = 0
        while done < k:
            done += self.write_rows(rows[done:], k - done, with_meta, not with_meta, timeout)
        return k

    def send_flush_event(self) -> None:
        """This writer is done. The buffer ends once all of its writers are done."""
        self.finish()


def _batch_array(value: Any, dtype: np.dtype, what: str, where: str) -> np.ndarray:
    """``value`` as an array of ``dtype``: the same dtype, or same field names that convert."""
    if not isinstance(value, np.ndarray):
        try:
            return np.asarray(value, dtype=dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{where}: {what} cannot be converted to {dtype} ({_preview(str(e), 100)})"
            ) from None
    if value.dtype == dtype:
        return value
    if value.dtype.names == dtype.names and np.can_cast(value.dtype, dtype, "same_kind"):
        return value.astype(dtype)
    raise ValueError(f"{where}: {what} must have the dtype {dtype}, got {value.dtype}")


class _SlotViews:
    """The ``[metadata, data]`` views of every slot of one buffer, each built on first use.

    Indexed by slot; ``TRASH`` gives the views of a private discard slot (a paused buffer's
    writes land there). Each endpoint gets its own instance at construction and the Rust core
    only indexes it, once per slot. A writer's views are read-only when built: it switches them
    writable on entering a ``with`` block and back on leaving it, without affecting the views
    of readers of the same buffer in this process.

    Args:
        buffer: The buffer whose slots to view.
        writable: Whether the views are writable when built.
    """

    __slots__ = (
        "_cache",
        "_count",
        "_dtype",
        "_memory",
        "_offset",
        "_size",
        "_stride",
        "_writable",
    )

    def __init__(self, buffer: mimoBuffer, writable: bool) -> None:
        """Prepares the views of ``buffer`` (builds none yet)."""
        core = buffer.core
        self._memory = np.frombuffer(core.memory(), dtype=np.uint8)
        self._offset: int = core.slots_offset
        self._stride: int = core.slot_stride
        self._count = buffer.slot_count
        self._size = buffer.slot_byte_size
        self._dtype = buffer.data_dtype
        self._writable = writable
        self._cache: dict[int, list[np.ndarray]] = {}

    def __len__(self) -> int:
        """One entry per slot."""
        return self._count

    def __getitem__(self, slot: int) -> list[np.ndarray]:
        """The views of ``slot`` (``TRASH``: of the private discard slot)."""
        views = self._cache.get(slot)
        if views is not None:
            return views
        if slot == _TRASH:
            raw = np.zeros(self._size + 8, dtype=np.uint8)
        elif isinstance(slot, int | np.integer) and 0 <= slot < self._count:
            slot = int(slot)
            start = self._offset + slot * self._stride
            raw = self._memory[start : start + self._size]
        else:
            raise IndexError(f"no slot {_preview(slot)} in a buffer of {self._count} slots")
        views = [raw[:_META].view(METADATA_DTYPE), raw[_META : self._size].view(self._dtype)]
        if not self._writable:
            for view in views:
                view.setflags(write=False)
        self._cache[slot] = views
        return views


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
        group: Reader group on a buffer with ``delivery="every_worker"``: every group receives
            every event, the readers of one group compete. Readers without a group name form
            one default group. Ignored on a competing buffer (all readers compete).

    Raises:
        ValueError: For a timeout that is not None or a number of seconds from 0 to 1e9.
        BufferTimeoutError: If no event arrived within ``timeout``.
    """

    def __new__(
        cls, buffer: mimoBuffer, timeout: float | None = None, group: str | None = None
    ) -> BufferReader:
        """Checks the arguments, then creates the reader (in the core)."""
        if not isinstance(buffer, mimoBuffer):
            raise TypeError(f"expected a mimoBuffer, got {type(buffer).__name__}")
        timeout = check_timeout(timeout, f"BufferReader of buffer {buffer.name!r}")
        if group is not None and not isinstance(group, str):
            raise TypeError(f"group must be a name (str) or None, got {type(group).__name__}")
        views = _SlotViews(buffer, writable=True)
        return super().__new__(cls, buffer.core, views, timeout, group)

    def __init__(
        self, buffer: mimoBuffer, timeout: float | None = None, group: str | None = None
    ) -> None:
        """Creates a reader of ``buffer`` (in reader group ``group``)."""
        Interface.__init__(self, buffer)

    def acquire(self, timeout: float | None = None) -> int | None:
        """Takes the next event's slot; returns its index, or None at the end of the stream.

        Args:
            timeout: Seconds to wait (None: as long as it takes).

        Raises:
            ValueError: For a timeout that is not None or a number from 0 to 1e9.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, f"BufferReader of buffer {self.name!r}")
        return _core.Reader.acquire(self, timeout)

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

        Raises:
            ValueError: For ``max_events`` that is not a whole number >= 1, or a bad timeout.
        """
        where = f"read_batch of buffer {self.name!r}"
        if (
            isinstance(max_events, bool)
            or not isinstance(max_events, int | np.integer)
            or max_events < 1
        ):
            raise ValueError(
                f"{where}: max_events must be a whole number >= 1, got {_preview(max_events)}"
            )
        buf = self.buffer
        n = min(int(max_events), buf.slot_count)  # one hand-off never holds more
        out = np.empty(n, dtype=_record_dtype(buf))
        timeout = self.timeout if timeout is None else check_timeout(timeout, where)
        k = self.read_rows(out.view(np.uint8), n, timeout)
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
        ValueError: For a timeout that is not None or a number of seconds from 0 to 1e9.
        BufferTimeoutError: If no new event arrived within ``timeout``.
    """

    def __init__(self, buffer: mimoBuffer, timeout: float | None = None) -> None:
        """Creates an observer with its private copy of one event."""
        super().__init__(buffer)
        self._timeout = check_timeout(timeout, f"BufferObserver of buffer {buffer.name!r}")
        self._core = buffer.core
        self._o = _core.Observer(self._core)
        self._copy = np.zeros(buffer.slot_byte_size, dtype=np.uint8)
        self._views = [
            self._copy[:_META].view(METADATA_DTYPE),
            self._copy[_META:].view(buffer.data_dtype),
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
