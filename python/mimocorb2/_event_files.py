"""What the HDF5, Parquet and ROOT writers share: the write loop and the staging of batches.

:class:`EventFileWriter` checks each batch of events, collects small ones in a
:class:`Stage` (two contiguous blocks, metadata and data, filled with one copy per batch)
and hands the format's writer a group of events at a time (:meth:`EventFileWriter._write_group`)
whenever enough are collected, at every flush and at the end. A batch large enough on its own
goes to the format's writer without a copy; it may then be a view of a record array (rows of
``data`` not adjacent), as ``read_batch`` and :class:`mimocorb2.mimo_file.MimoReader` hand
them out.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from mimocorb2._core import __version__
from mimocorb2._dtypes import METADATA_DTYPE, make_dtype
from mimocorb2._format_registry import dtype_problems


def claim(path: Path, directory: bool = False) -> None:
    """Creates ``path`` (an empty file, or a directory) only if it does not exist yet.

    Raises:
        FileExistsError: If ``path`` exists (another writer has it).
    """
    if directory:
        os.mkdir(path)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    os.close(fd)


def now_iso() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def event_arrays(
    metadata: Any, data: Any, data_dtype: np.dtype, data_length: int, where: Path
) -> tuple[np.ndarray, np.ndarray]:
    """``(metadata, data)`` as arrays of shapes ``(k,)`` and ``(k, data_length)`` (views)."""
    data = np.asarray(data)
    if data.dtype != data_dtype:
        raise ValueError(f"{where}: data of dtype {data.dtype}, expected {data_dtype}")
    k = data.shape[0] if data.ndim else 1
    if data.size != k * data_length:
        raise ValueError(
            f"{where}: data of shape {data.shape} is not k events of {data_length} elements"
        )
    data = data.reshape(k, data_length)
    metadata = np.asarray(metadata).reshape(-1)
    if len(metadata) != k:
        raise ValueError(f"{where}: {len(metadata)} metadata records for {k} events")
    if metadata.dtype != METADATA_DTYPE:
        converted = np.zeros(k, METADATA_DTYPE)
        for name in METADATA_DTYPE.names or ():
            converted[name] = metadata[name]
        metadata = converted
    return metadata, data


def copy_rows(dst: np.ndarray, src: np.ndarray) -> None:
    """Copies ``src`` into ``dst`` (same dtype and shape), row by row as bytes if it can.

    The events of a ``read_batch`` are rows of a record array: each row is contiguous, the
    rows are not. numpy copies such structured arrays element by element; as bytes the copy
    is several times faster for large events.
    """
    k = len(src)
    try:
        raw = src.reshape(k, -1).view(np.uint8)
        np.copyto(dst.reshape(k, -1).view(np.uint8), raw)
    except ValueError:  # a layout numpy cannot view as bytes
        dst[...] = src


class Stage:
    """Contiguous blocks of metadata and data that collect batches until they are written.

    Args:
        data_dtype: The data dtype.
        data_length: Elements per event.
    """

    def __init__(self, data_dtype: np.dtype, data_length: int) -> None:
        """Creates an empty stage (it grows with the first batches)."""
        self._meta = np.empty(0, METADATA_DTYPE)
        self._data = np.empty((0, data_length), data_dtype)
        self._n = 0
        self.nbytes = 0

    def __len__(self) -> int:
        """The number of events staged."""
        return self._n

    def append(self, metadata: np.ndarray, data: np.ndarray) -> None:
        """Copies ``k`` events in (doubling the blocks when they are full)."""
        n, k = self._n, len(data)
        if n + k > len(self._data):
            size = max(n + k, 2 * len(self._data))
            meta = np.empty(size, METADATA_DTYPE)
            block = np.empty((size, data.shape[1]), data.dtype)
            copy_rows(meta[:n], self._meta[:n])
            copy_rows(block[:n], self._data[:n])
            self._meta, self._data = meta, block
        copy_rows(self._meta[n : n + k], metadata)
        copy_rows(self._data[n : n + k], data)
        self._n = n + k
        self.nbytes += metadata.nbytes + data.nbytes

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """The staged events (views, valid until the next :meth:`append`); empties the stage."""
        n, self._n, self.nbytes = self._n, 0, 0
        return self._meta[:n], self._data[:n]


class EventFileWriter:
    """Base of the file writers: checks, event count, staging, flush and close.

    Subclasses set ``fmt`` and the class attributes below and implement
    :meth:`_write_group`, :meth:`_sync` and :meth:`_finish`.

    Attributes:
        path (Path): The file.
        data_dtype (np.dtype): Structured dtype of the data.
        data_length (int): Elements per event.
        count (int): Events written, including staged ones (also ``len(writer)``).
    """

    fmt = ""
    group_bytes = 64 << 20
    """Staged bytes that make a group (written before the next flush)."""
    direct_bytes = 64 << 20
    """A batch of at least this many bytes, when nothing is staged, is written without a copy."""

    def __init__(self, path: str | os.PathLike[str], data_dtype: Any, data_length: int) -> None:
        """Checks the layout against the format."""
        self.path = Path(path)
        self.data_dtype = make_dtype(data_dtype, where=f"{self.path}: data_dtype")
        self.data_length = int(data_length)
        if self.data_length < 1:
            raise ValueError(f"{self.path}: data_length must be >= 1, got {data_length!r}")
        problems = dtype_problems(self.fmt, self.data_dtype)
        if problems:
            raise ValueError(f"{self.path}: " + "; ".join(problems))
        self.count = 0
        self._closed = False
        self._stage = Stage(self.data_dtype, self.data_length)

    def info_json(self, attrs: Mapping[str, Any] | None) -> dict[str, Any]:
        """What the JSON description of a Parquet or ROOT file holds besides ``setup_yaml``.

        ``attrs`` (without ``setup_yaml``, which those files keep on its own) and
        ``mimocorb2_version``, ``data_dtype`` (numpy descr), ``data_length``, ``created``.
        """
        info = {k: v for k, v in (attrs or {}).items() if k != "setup_yaml"}
        info.update(
            mimocorb2_version=__version__,
            data_dtype=np.lib.format.dtype_to_descr(self.data_dtype),
            data_length=self.data_length,
            created=now_iso(),
        )
        return info

    def __len__(self) -> int:
        """The number of events written (including staged ones)."""
        return self.count

    @property
    def closed(self) -> bool:
        """Whether the writer was closed."""
        return self._closed

    def write(self, metadata: Any, data: Any) -> None:
        """Writes ``k`` events: metadata ``(k,)`` records, data ``(k, data_length)``.

        The arrays are not kept: they may be changed after the call.

        Raises:
            ValueError: If the writer is closed or the arrays do not fit.
        """
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        metadata, data = event_arrays(metadata, data, self.data_dtype, self.data_length, self.path)
        if not len(data):
            return
        self.count += len(data)
        if not len(self._stage) and data.nbytes >= self.direct_bytes:
            self._write_group(metadata, data)
            return
        self._stage.append(metadata, data)
        if self._stage.nbytes >= self.group_bytes:
            self._write_group(*self._stage.take())

    def _drain(self) -> None:
        """Writes the staged events."""
        if len(self._stage):
            self._write_group(*self._stage.take())

    def flush(self) -> None:
        """Writes the staged events and hands everything to the file (see the format)."""
        if not self._closed:
            self._drain()
            self._sync()

    def close(self) -> None:
        """Writes the staged events and closes the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._drain()
        finally:
            self._finish()

    def _write_group(self, metadata: np.ndarray, data: np.ndarray) -> None:
        """Writes ``k ≥ 1`` events; the arrays must not be kept (they are reused)."""
        raise NotImplementedError

    def _sync(self) -> None:
        """Makes what was written readable (and crash-safe, as far as the format allows)."""
        raise NotImplementedError

    def _finish(self) -> None:
        """Closes the file."""
        raise NotImplementedError

    def __enter__(self) -> EventFileWriter:
        """Returns the writer."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Closes the file."""
        self.close()
