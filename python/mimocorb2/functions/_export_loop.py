"""The batch loop shared by the exporters and the file exporters.

Used by :mod:`mimocorb2.functions.exporters` and :mod:`mimocorb2.functions._file_exporters`:
batch sizes, intervals from the config, the pass-through of the source to the sinks, and the
guard that ends the sinks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2.exceptions import BufferEndedError, BufferTimeoutError
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import Exporter, SetupError

_BATCH_EVENTS = 4096
"""Most events taken from the source in one hand-off."""

_BATCH_BYTES = 1 << 22
"""Most bytes taken from the source in one hand-off (bounds the batch of large events)."""

_MAX_PENDING_ROWS = 65536
"""Pending events after which the exporters write before their interval has passed."""

_MIN_WAIT = 0.01
"""Shortest wait for events (seconds) when an update is due soon."""


def _interval(io: BufferIO, key: str, default: float) -> float:
    """A positive number of seconds from the config (``default`` if missing)."""
    value = io.get(key, default)
    if value is None:
        return float(default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not (seconds > 0 and math.isfinite(seconds)):
        raise SetupError(
            io.name,
            f"config '{key}' must be a positive number of seconds, got {value!r}; "
            f"fix it or remove it (default {default})",
        )
    return seconds


def _batch_events(io: BufferIO) -> int:
    """Events per ``read_batch`` of the source: at most _BATCH_EVENTS and _BATCH_BYTES."""
    slot = io.read[0].buffer.slot_byte_size
    return max(1, min(_BATCH_EVENTS, _BATCH_BYTES // max(1, slot)))


class _PassThrough:
    """Reads the source in batches and copies each batch to the pass-through sinks."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.reader = exporter.reader
        self.writers = list(exporter.write)
        self.ended: set[int] = set()
        buf = self.reader.buffer
        self.max_events = min(_batch_events(exporter.io), buf.slot_count)
        self._records = np.empty(
            self.max_events,
            np.dtype([("metadata", METADATA_DTYPE), ("data", buf.data_dtype, (buf.data_length,))]),
        )

    def batches(
        self, wait: Callable[[], float | None]
    ) -> Iterator[tuple[np.ndarray, np.ndarray] | tuple[None, None]]:
        """Yields ``(metadata, data)`` batches until the source ends.

        ``wait()`` gives the longest time to wait for an event (None: no limit); when it
        passes without an event, ``(None, None)`` is yielded so the caller can do its
        periodic work. ``data`` has shape ``(k, data_length)``. The arrays are views of
        one record array of ``max_events`` events (rows of metadata and data, as
        ``read_batch`` returns them), which the next batch overwrites: copy what is kept.
        """
        reader = self.reader
        raw = self._records.view(np.uint8)
        while True:
            seconds = wait()
            try:
                k = reader.read_rows(
                    raw, self.max_events, reader.timeout if seconds is None else seconds
                )
            except BufferTimeoutError:
                yield None, None
                continue
            if k == 0:
                return
            metadata, data = self._records["metadata"][:k], self._records["data"][:k]
            for i, writer in enumerate(self.writers):
                if i in self.ended:
                    continue
                try:
                    writer.write_batch(data, metadata)
                except BufferEndedError:
                    self.ended.add(i)
                    self.exporter.logger.info(
                        "worker '%s': sink '%s' was shut down; no more events go there",
                        self.exporter.name,
                        writer.name,
                    )
            yield metadata, data


def export_loop(
    exporter: Exporter,
    interval: float,
    write: Callable[[np.ndarray, np.ndarray], None],
    update: Callable[[], None],
) -> None:
    """The loop of the exporters: every batch to ``write``, ``update`` every ``interval``.

    ``write(metadata, data)`` gets each batch of the source (views that the next batch
    overwrites: copy what is kept); ``update()`` runs ``interval`` seconds after the first
    batch since the last update (waiting for events ends in time for it), so an idle source
    causes no updates. Returns when the source has ended; the caller does the last update.
    """
    next_update = 0.0
    dirty = False

    def wait() -> float:
        return max(_MIN_WAIT, next_update - time.monotonic()) if dirty else interval

    for metadata, data in _PassThrough(exporter).batches(wait):
        if metadata is not None and data is not None:
            if not dirty:
                next_update = time.monotonic() + interval
                dirty = True
            write(metadata, data)
        if dirty and time.monotonic() >= next_update:
            update()
            dirty = False


class PendingRows:
    """Compact copies of batches of single-element events, taken out together."""

    def __init__(self) -> None:
        """Nothing pending."""
        self._metadata: list[np.ndarray] = []
        self._data: list[np.ndarray] = []
        self.rows = 0

    def add(self, metadata: np.ndarray, data: np.ndarray) -> bool:
        """Copies a batch in; returns whether enough rows are pending to take them out."""
        self._metadata.append(metadata.copy())
        self._data.append(data.reshape(-1).copy())
        self.rows += len(metadata)
        return self.rows >= _MAX_PENDING_ROWS

    def take(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(metadata, data)`` of every pending row, shape ``(n,)``; None if there are none."""
        if not self._data:
            return None
        if len(self._data) == 1:
            taken = self._metadata[0], self._data[0]
        else:
            taken = np.concatenate(self._metadata), np.concatenate(self._data)
        self._metadata.clear()
        self._data.clear()
        self.rows = 0
        return taken


def _run_guarded(io: BufferIO, body: Callable[[], None]) -> None:
    """Runs ``body`` and shuts the sinks down at its end, like the templates do."""
    try:
        body()
    except Exception:
        io.end_sinks(failed=True)
        raise
    io.end_sinks(failed=False)
