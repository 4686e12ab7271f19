"""Templates for the common kinds of workers.

Each template wraps the :class:`~mimocorb2.mimo_worker.BufferIO` of a worker, checks in its
constructor that the worker has the buffers it needs (raising :class:`SetupError`
otherwise) and runs the event loop around a user function (the *ufunc*):

- :class:`Importer`: a generator feeds events into the one sink; metadata is stamped.
- :class:`Exporter`: ``for data, metadata in exporter:`` hands out the source's events,
  optionally passing each on to sinks of the same layout.
- :class:`Filter`: ``ufunc(data)`` decides which sinks (if any) receive a copy of the event.
- :class:`Processor`: ``ufunc(data)`` returns one result per sink, written with the input's
  metadata.
- :class:`Observer`: a generator of copies of the newest events of an observed buffer.
- :class:`IsAlive`: tells whether an observed buffer is still running.

Every template shuts its sinks down when its loop ends, normally or through an error, so
downstream workers always see the end of their streams. Errors of the user function are
raised as :class:`UfuncError` (chained to the original exception); neither error type has
side effects when it is created.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from typing import Any

import numpy as np

from mimocorb2._template_errors import SetupError, UfuncError
from mimocorb2._template_helpers import (
    _ByteViews,
    _copy_into,
    _describe,
    _filter_targets,
    _given,
    _plural,
    _processor_result_problem,
    _ResultProblem,
    _SinkGuard,
)
from mimocorb2.exceptions import BufferEndedError, BufferTimeoutError
from mimocorb2.mimo_buffer import BufferObserver, BufferReader, BufferWriter
from mimocorb2.mimo_worker import BufferIO

__all__ = [
    "Base",
    "Exporter",
    "Filter",
    "Importer",
    "IsAlive",
    "Observer",
    "Processor",
    "SetupError",
    "UfuncError",
]


# ----- templates -----


class Base:
    """Common part of the templates: the worker's endpoints, configuration and directories.

    Args:
        io: The worker's BufferIO.

    Attributes:
        io (BufferIO): The BufferIO.
        name (str): Name of the worker.
        read, write, observe: The endpoint lists of the BufferIO.
        config, logger, run_dir, setup_dir: As in the BufferIO.
    """

    def __init__(self, io: BufferIO) -> None:
        """Takes over the BufferIO's attributes."""
        self.io = io
        self.name = io.name
        self.read: list[BufferReader] = io.read
        self.write: list[BufferWriter] = io.write
        self.observe: list[BufferObserver] = io.observe
        self.config = io.config
        self.logger = io.logger
        self.run_dir = io.run_dir
        self.setup_dir = io.setup_dir
        self.shutdown_sinks = io.shutdown_sinks
        self._bytes = _ByteViews()
        self._ended_sinks: set[int] = set()
        # Ledger of the event in hand: sinks it should go to, sinks it reached, and whether
        # the source slot already records that it is being forwarded.
        self._targets = 0
        self._delivered = 0
        self._fwd_marked = False

    def _check_counts(
        self,
        sources: int | None,
        sinks: int | None,
        observes: int | None,
        at_least: frozenset[str] = frozenset(),
    ) -> None:
        """Raises SetupError unless the buffer counts match (None: any; ``at_least``: ≥)."""
        wanted = {"source": sources, "sink": sinks, "observe": observes}
        have = {"source": self.read, "sink": self.write, "observe": self.observe}
        bad = []
        for key, n in wanted.items():
            if n is None:
                continue
            got = len(have[key])
            if (got < n) if key in at_least else (got != n):
                bad.append(key)
        if bad:
            want = ", ".join(
                ("any number of " + k + "s")
                if n is None
                else (f"at least {n} {k}(s)" if k in at_least else _plural(n, k))
                for k, n in wanted.items()
            )
            got = ", ".join(f"{_plural(len(v), k)} {[e.name for e in v]}" for k, v in have.items())
            raise self._setup_error(
                f"the {type(self).__name__} template needs {want}; the setup gives {got}"
            )

    def _check_same_layout(self, what: str) -> None:
        """Raises SetupError unless every sink has the source's data_length and dtype."""
        src = self.read[0].buffer
        for w in self.write:
            b = w.buffer
            if b.data_length != src.data_length or b.data_dtype != src.data_dtype:
                raise self._setup_error(
                    f"{what} sink '{b.name}' must have the layout of source '{src.name}' "
                    f"({_describe(src.data_example)}), but has {_describe(b.data_example)}",
                )

    def _setup_error(self, message: str) -> SetupError:
        """Ends the sinks after a failure (``BufferIO.end_sinks``); returns the SetupError.

        Downstream workers then see the end of their streams, also when the worker function
        is called directly with a hand-made BufferIO (a Control would do it after the error).
        """
        self.io.end_sinks(failed=True)
        return SetupError(self, message)

    def drain_sources(self) -> None:
        """Reads and discards events until every source has ended (blocks until then)."""
        for reader in self.read:
            while True:
                with reader as (_, data):
                    if data is None:
                        break
                    reader.set_disposition("dropped")

    def _copy_event(self, i: int, metadata: np.ndarray, data: np.ndarray) -> None:
        """Copies an event (slot to slot, bytewise) to sink ``i``; skips an ended sink."""
        self._targets += 1
        if i in self._ended_sinks:
            return
        try:
            with self.write[i] as (m, d):
                self._bytes(m)[:] = self._bytes(metadata)
                self._bytes(d)[:] = self._bytes(data)
                self._mark_forward(self.write[i])
            self._delivered += 1
        except BufferEndedError:
            self._sink_ended(i)

    def _new_event(self) -> None:
        self._targets = self._delivered = 0
        self._fwd_marked = False

    def _mark_forward(self, writer: BufferWriter) -> None:
        """Records in the source slot that its event is about to be committed to ``writer``.

        If this process dies after that commit but before it releases the source slot, the
        event then counts as delivered, not lost (see ``mimocorb2._ledger``).
        """
        if not self._fwd_marked:
            self._fwd_marked = True
            self.reader.mark_forward(writer)

    def _settle_event(self, reader: BufferReader) -> None:
        """Tells the ledger what became of the event in hand (released by the caller)."""
        if self._delivered:
            return
        reader.set_disposition("dropped" if self._targets else "filtered")

    def _sink_ended(self, i: int) -> None:
        self._ended_sinks.add(i)
        self.logger.info(
            "worker '%s': sink '%s' was shut down; no more events go there",
            self.name,
            self.write[i].name,
        )

    def _all_sinks_ended(self) -> bool:
        return bool(self.write) and len(self._ended_sinks) == len(self.write)

    def _discard_rest(self) -> None:
        """All sinks were shut down: keep draining the source so upstream never blocks."""
        self.logger.info(
            "worker '%s': every sink was shut down; discarding the rest of the input", self.name
        )
        self.drain_sources()

    def _sink_guard(self) -> _SinkGuard:
        """Context manager that ends the sinks when the template's loop ends."""
        return _SinkGuard(self.io)

    def _results(
        self, ufunc: Callable[[np.ndarray], Any], kind: str
    ) -> Iterator[tuple[np.ndarray, np.ndarray, Any]]:
        """Reads the source to its end, yielding ``(metadata, data, ufunc(data))``.

        The slot stays held while the caller handles the result. Stops early (discarding the
        rest of the source) once every sink has ended.
        """
        reader = self.reader
        while True:
            with reader as (metadata, data):
                if data is None:
                    return
                self._new_event()
                try:
                    result = ufunc(data)
                except Exception as e:
                    reader.set_disposition("failed")
                    raise self._fail(
                        f"the {kind} function raised an exception", e, ufunc_input=data.copy()
                    ) from e
                yield metadata, data, result
                self._settle_event(reader)
            if self._all_sinks_ended():
                self._discard_rest()
                return

    def _fail(self, message: str, exception: BaseException | None = None, **kw: Any) -> UfuncError:
        """Ends the sinks after a failure (``BufferIO.end_sinks``); returns the UfuncError."""
        self.io.end_sinks(failed=True)
        return UfuncError(self, message, exception, **kw)

    def _bad_result(self, problem: _ResultProblem, data: np.ndarray, result: Any) -> UfuncError:
        """The UfuncError (sinks ended) for a user function's result that does not fit."""
        return self._fail(
            problem.message, problem.exception, ufunc_input=data.copy(), ufunc_output=result
        )


class Importer(Base):
    """Worker class for importing data from an external generator.

    The sink writer stamps each event's metadata: ``counter`` (per buffer, from 0),
    ``timestamp`` (epoch seconds at commit) and ``deadtime`` (fraction 0..1 of the time
    since the previous event spent waiting for a free slot).

    Args:
        io: BufferIO with 0 sources, 1 sink and 0 observes.

    Attributes:
        data_example (np.ndarray): A zero event of the sink.
        metadata_example (np.ndarray): A zero metadata record.
        counter (int): Events written by this importer so far.

    Examples:
        >>> def worker(buffer_io: BufferIO):
        ...     importer = Importer(buffer_io)
        ...     shape = importer.data_example.shape
        ...     def ufunc():
        ...         for i in range(buffer_io["n_events"]):
        ...             data = importer.data_example.copy()
        ...             data["x"] = np.random.normal(size=shape)
        ...             yield data
        ...         yield None
        ...     importer(ufunc)

    Raises:
        SetupError: For other buffer counts.
    """

    def __init__(self, io: BufferIO) -> None:
        """Checks the setup."""
        super().__init__(io)
        self._check_counts(0, 1, 0)
        self.writer = self.write[0]
        self.data_example = io.data_out_examples[0]
        self.metadata_example = io.metadata_out_examples[0]
        self.counter = 0

    def __call__(self, ufunc: Callable[[], Iterator[Any]]) -> None:
        """Starts the generator and writes its events to the sink.

        The generator yields one event per item, as an array like ``data_example`` (or
        anything numpy can assign to it). It ends by yielding ``None`` or by returning. The
        importer also stops (quietly) when the sink was shut down from outside. The sink is
        shut down at the end.

        Args:
            ufunc: Generator function called without arguments.

        Raises:
            UfuncError: If ``ufunc`` is not a generator function, the generator raises or
                yields data that does not fit the sink.
        """
        if not callable(ufunc):
            raise self._fail(f"the Importer needs a generator function, got {_given(ufunc)}")
        try:
            gen = ufunc()
        except Exception as e:
            raise self._fail("calling the generator function failed", e) from e
        if not isinstance(gen, Iterator):
            raise self._fail(
                f"the Importer's function must return a generator (use yield), got {_given(gen)}"
            )
        writer = self.writer
        buffer = writer.buffer
        timeout = writer.timeout
        try:
            with self._sink_guard():
                while True:
                    try:
                        data = next(gen)
                    except StopIteration:
                        break
                    except Exception as e:
                        raise self._fail("the generator raised an exception", e) from e
                    if data is None:
                        break
                    # The writer's context manager, spelled out to commit with stamped metadata
                    # (counter, timestamp, dead time) whatever the writer's own stamp mode is.
                    try:
                        slot = writer.acquire(timeout)
                        try:
                            _copy_into(buffer.views(slot)[1], data)
                        except BaseException:
                            writer.abort()
                            raise
                        writer.commit(True)
                    except BufferEndedError:
                        self.logger.info(
                            "worker '%s': sink '%s' was shut down; stopping the import",
                            self.name,
                            writer.name,
                        )
                        break
                    except (ValueError, TypeError, IndexError) as e:
                        raise self._fail(
                            f"the generator yielded {_given(data)} which does not fit sink "
                            f"'{writer.name}' ({_describe(self.data_example)})",
                            e,
                            ufunc_output=data,
                        ) from e
                    self.counter += 1
        finally:
            try:
                gen.close()  # type: ignore[attr-defined]
            except AttributeError:
                pass
            except Exception:
                self.logger.exception("worker '%s': closing the generator failed", self.name)


class Exporter(Base):
    """Worker class for exporting data and metadata.

    ``for data, metadata in exporter:`` yields each event of the source. The arrays are
    views of the held slot: they are valid in the loop body and released when the next event
    is requested (copy them to keep them). With sinks (same layout as the source), every event
    is copied to each sink before it is yielded, so it can be analysed further; the sinks are
    shut down when the source ends.

    Args:
        io: BufferIO with 1 source, any number of sinks and 0 observes.

    Attributes:
        data_example (np.ndarray): A zero event of the source.
        metadata_example (np.ndarray): A zero metadata record.

    Examples:
        >>> def worker(buffer_io: BufferIO):
        ...     exporter = Exporter(buffer_io)
        ...     for data, metadata in exporter:
        ...         print(metadata["counter"][0], data["x"].max())

    Raises:
        SetupError: For other buffer counts or sinks of another layout.
    """

    def __init__(self, io: BufferIO) -> None:
        """Checks the setup."""
        super().__init__(io)
        self._check_counts(1, None, 0)
        self._check_same_layout("pass-through")
        self.reader = self.read[0]
        self.data_example = io.data_in_examples[0]
        self.metadata_example = io.metadata_in_examples[0]

    def __iter__(self) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
        """Yields ``(data, metadata)`` of every event until the source has ended.

        Yields:
            data (np.ndarray): The event's data (a view of the slot).
            metadata (np.ndarray): The event's metadata (a view of the slot).
        """
        reader = self.reader
        n_sinks = len(self.write)
        with self._sink_guard():
            while True:
                with reader as (metadata, data):
                    if data is None:
                        break
                    self._new_event()
                    for i in range(n_sinks):
                        self._copy_event(i, metadata, data)
                    yield data, metadata


class Filter(Base):
    """Worker class for filtering data from one buffer to other buffer(s).

    ``ufunc(data)`` decides for each event of the source where it goes. Events are copied
    unchanged (data and metadata) to the chosen sinks.

    Args:
        io: BufferIO with 1 source, at least 1 sink of the source's layout and 0 observes.

    Attributes:
        data_example (np.ndarray): A zero event of the source.

    Examples:
        >>> def worker(buffer_io: BufferIO):
        ...     filter = Filter(buffer_io)
        ...     min_height = buffer_io["min_height"]
        ...     def ufunc(data):
        ...         return np.max(data["x"]) > min_height
        ...     filter(ufunc)

    Raises:
        SetupError: For other buffer counts or sinks of another layout.
    """

    def __init__(self, io: BufferIO) -> None:
        """Checks the setup."""
        super().__init__(io)
        self._check_counts(1, 1, 0, at_least=frozenset({"sink"}))
        self._check_same_layout("filter")
        self.reader = self.read[0]
        self.data_example = io.data_in_examples[0]

    def __call__(self, ufunc: Callable[[np.ndarray], Any]) -> None:
        """Runs ``ufunc(data)`` on every event and copies or drops the event.

        ``ufunc`` returns:

        - a bool (Python or numpy): True copies the event to every sink, False drops it;
        - a list, tuple or array of bools with one entry per sink: the event is copied to
          the sinks whose entry is true;
        - None: the event is dropped.

        The sinks are shut down when the source ends (or on an error).

        Args:
            ufunc: Function called with the data of each event.

        Raises:
            UfuncError: If ``ufunc`` raises or returns something else.
        """
        if not callable(ufunc):
            raise self._fail(f"the Filter needs a function, got {_given(ufunc)}")
        with self._sink_guard(), closing(self._results(ufunc, "filter")) as events:
            for metadata, data, result in events:
                targets = _filter_targets(len(self.write), result)
                if isinstance(targets, _ResultProblem):
                    raise self._bad_result(targets, data, result) from targets.exception
                for i in targets:
                    self._copy_event(i, metadata, data)


class Processor(Base):
    """Worker class for processing data from one buffer to other buffer(s).

    ``ufunc(data)`` computes new events from each event of the source: one result per sink,
    written with the input event's metadata.

    Args:
        io: BufferIO with 1 source, at least 1 sink and 0 observes.

    Attributes:
        data_example (np.ndarray): A zero event of the source.

    Examples:
        >>> def worker(buffer_io: BufferIO):
        ...     processor = Processor(buffer_io)
        ...     out = buffer_io.data_out_examples[0].copy()
        ...     def ufunc(data):
        ...         out["peak"] = data["x"].max()
        ...         return [out]
        ...     processor(ufunc)

    Raises:
        SetupError: For other buffer counts.
    """

    def __init__(self, io: BufferIO) -> None:
        """Checks the setup."""
        super().__init__(io)
        self._check_counts(1, 1, 0, at_least=frozenset({"sink"}))
        self.reader = self.read[0]
        self.data_example = io.data_in_examples[0]

    def _write_result(
        self, i: int, metadata: np.ndarray, value: Any, data: np.ndarray, result: Any
    ) -> None:
        self._targets += 1
        if i in self._ended_sinks:
            return
        writer = self.write[i]
        try:
            with writer as (m, d):
                self._bytes(m)[:] = self._bytes(metadata)
                _copy_into(d, value)
                self._mark_forward(writer)
            self._delivered += 1
        except BufferEndedError:
            self._sink_ended(i)
        except (ValueError, TypeError, IndexError) as e:
            raise self._fail(
                f"result {i} ({_given(value)}) does not fit sink '{writer.name}' "
                f"({_describe(writer.data_example)})",
                e,
                ufunc_input=data.copy(),
                ufunc_output=result,
            ) from e

    def __call__(self, ufunc: Callable[[np.ndarray], Any]) -> None:
        """Runs ``ufunc(data)`` on every event and writes the results to the sinks.

        ``ufunc`` returns None to drop the event, or a list (or tuple) with one entry per
        sink; every entry that is not None is written to its sink (anything numpy can assign
        to an event of the sink), with the metadata of the input event. The sinks are shut
        down when the source ends (or on an error).

        Args:
            ufunc: Function called with the data of each event.

        Raises:
            UfuncError: If ``ufunc`` is not callable, raises, or returns something else.
        """
        if not callable(ufunc):
            raise self._fail(f"the Processor needs a function, got {_given(ufunc)}")
        n = len(self.write)
        with self._sink_guard(), closing(self._results(ufunc, "processor")) as events:
            for metadata, data, result in events:
                if result is None:
                    continue
                problem = _processor_result_problem(result, n)
                if problem is not None:
                    raise self._bad_result(problem, data, result) from problem.exception
                for i, value in enumerate(result):
                    if value is not None:
                        self._write_result(i, metadata, value, data, result)


class Observer(Base):
    """Worker class for observing data from a buffer.

    ``observer()`` is a generator of copies of the newest events of the observed buffer. It
    never holds a slot or takes events from readers; events arriving faster than the consumer
    asks for them are skipped.

    Args:
        io: BufferIO with 0 sources, 0 sinks and 1 observe.

    Attributes:
        data_example (np.ndarray): A zero event of the observed buffer.
        metadata_example (np.ndarray): A zero metadata record.
        poll_interval (float): Seconds between checks for the end of the buffer while
            waiting for a new event.

    Examples:
        >>> def worker(buffer_io: BufferIO):
        ...     observer = Observer(buffer_io)
        ...     for data, metadata in observer():
        ...         if data is None:
        ...             break
        ...         print(metadata["counter"][0])
        ...         time.sleep(1)

    Raises:
        SetupError: For other buffer counts.
    """

    poll_interval = 0.5

    def __init__(self, io: BufferIO) -> None:
        """Checks the setup."""
        super().__init__(io)
        self._check_counts(0, 0, 1)
        self.buffer = self.observe[0].buffer
        self.data_example = io.data_observe_examples[0]
        self.metadata_example = io.metadata_observe_examples[0]
        self._observer = BufferObserver(self.buffer, timeout=self.poll_interval)

    def __call__(self) -> Generator[tuple[np.ndarray, np.ndarray] | tuple[None, None], None, None]:
        """Yields ``(data, metadata)`` copies of new events until the buffer has ended.

        Each item is an event newer than the previous one (the newest at the time of the
        request). After the end of the buffer, ``(None, None)`` is yielded once.

        Yields:
            data (np.ndarray, None): Copy of the event's data; None at the end.
            metadata (np.ndarray, None): Copy of the event's metadata; None at the end.
        """
        observer = self._observer
        while True:
            try:
                with observer as (metadata, data):
                    if data is None:
                        break
                    item = (data.copy(), metadata.copy())
            except BufferTimeoutError:
                if self.buffer.flush_event_received:
                    break
                continue
            yield item
        yield None, None


class IsAlive(Base):
    """Worker class for checking if a buffer is alive.

    This worker does not read or write data; it only checks whether the buffer given as its
    observe is still running (not ended).

    Args:
        io: BufferIO with 0 sources, 0 sinks and 1 observe.

    Examples:
        >>> def worker(buffer_io: BufferIO):
        ...     is_alive = IsAlive(buffer_io)
        ...     while is_alive():
        ...         print("Buffer is alive")
        ...         time.sleep(1)
        ...     print("Buffer is dead")

    Raises:
        SetupError: For other buffer counts.
    """

    def __init__(self, io: BufferIO) -> None:
        """Checks the setup."""
        super().__init__(io)
        self._check_counts(0, 0, 1)
        self.buffer = self.observe[0].buffer

    def __call__(self) -> bool:
        """Checks if the buffer is alive.

        Returns:
            True while the observed buffer has not ended, False afterwards.
        """
        return not self.buffer.flush_event_received
