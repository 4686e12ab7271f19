"""Writing ``.mimo`` files: :class:`MimoWriter`.

The format is described in :mod:`mimocorb2.mimo_file`, which re-exports the writer.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE, make_dtype
from mimocorb2._mimo_header import check_length, footer, header_block, new_header
from mimocorb2._mimo_reader import CHUNK_BYTES, MimoFileError, MimoReader, record_dtype
from mimocorb2._mimo_records import data_bytes, event_batch, metadata_bytes, write_all

try:  # advisory locks (POSIX); without them only the O_EXCL protection remains
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

_STAGE_SIZE = 1 << 20
_DIRECT_SIZE = 32 * 1024
_IOV_EVENTS = 256  # events per writev call (2 buffers each; IOV_MAX is 1024 on Linux)


class MimoWriter:
    """Writes events to a ``.mimo`` file (format version 2).

    Records are written whole and in order. :meth:`close` (also at the end of a ``with``
    block, even after an exception) writes the footer; a file without footer stays readable
    up to the last flush.

    Args:
        path: The file. It is created, or replaced if it exists (see ``append`` and
            ``exclusive``).
        data_dtype: Structured dtype of the data (a numpy dtype, a ``{field: type}`` mapping
            or a list of pairs, as in a setup).
        data_length: Elements per event.
        source: Name of the buffer the events come from (stored in the header).
        append: Continue an existing file: its dtype and length must match; its footer is
            removed and written again on close. A missing file is created.
        exclusive: Refuse to open an existing file (``FileExistsError``).
        attrs: JSON-serialisable values stored in the header under ``attrs``.
        flush_interval: Seconds after which staged records are handed to the operating
            system at the latest.

    Attributes:
        path (Path): The file.
        data_dtype (np.dtype): The data dtype.
        data_length (int): Elements per event.
        record_dtype (np.dtype): One record: fields ``data`` and ``metadata``.
        header (dict): The header.
        count (int): Records in the file so far (also ``len(writer)``).

    Raises:
        FileExistsError: With ``exclusive=True`` if the file exists.
        MimoFileError: If another writer holds the file, or for ``append`` with a different
            layout or an unreadable file.
        ValueError: For an invalid dtype or length.

    Examples:
        >>> with MimoWriter("out.mimo", {"x": "f8"}, 4, source="demo") as w:
        ...     w.write(np.zeros(4, w.data_dtype), metadata=None)
        ...     w.write_many(np.zeros((10, 4), w.data_dtype))
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        data_dtype: Any,
        data_length: int,
        source: str | None = None,
        *,
        append: bool = False,
        exclusive: bool = False,
        attrs: Mapping[str, Any] | None = None,
        flush_interval: float = 1.0,
    ) -> None:
        """Creates (or reopens) the file and writes the header."""
        self.path = Path(path)
        self.data_dtype = make_dtype(data_dtype, where=f"{self.path}: data_dtype")
        self.data_length = check_length(data_length, str(self.path))
        self.record_dtype = record_dtype(self.data_dtype, self.data_length)
        self.record_size = self.record_dtype.itemsize
        self._data_size = self.data_length * self.data_dtype.itemsize
        self.flush_interval = float(flush_interval)
        self.count = 0
        self._fd = -1
        self._closed = False
        if append and self.path.exists() and self.path.stat().st_size > 0:
            self._reopen()
        else:
            self._create(source, exclusive, attrs)
        self._direct = self.record_size >= _DIRECT_SIZE
        self._stage = np.empty(0 if self._direct else _STAGE_SIZE, dtype=np.uint8)
        self._stage_cap = (self._stage.size // self.record_size) * self.record_size
        self._pos = 0
        self._last_flush = time.monotonic()
        self._meta = np.zeros(1, dtype=METADATA_DTYPE)
        self._rec: np.ndarray | None = None

    # ----- opening -----

    def _lock(self, fd: int) -> None:
        if _fcntl is None:  # pragma: no cover - Windows
            return
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise MimoFileError(
                f"{self.path}: another writer has this file open; use a different file "
                "name for each writer"
            ) from None

    def _create(self, source: str | None, exclusive: bool, attrs: Mapping[str, Any] | None) -> None:
        self.header = new_header(self.data_dtype, self.data_length, self.record_size, source, attrs)
        try:
            block = header_block(self.header)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{self.path}: attrs must be JSON-serialisable ({e})") from None
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
        if exclusive:
            flags |= os.O_EXCL
        fd = os.open(self.path, flags, 0o644)
        self._lock(fd)
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            write_all(fd, [block])
        except BaseException:
            self._abandon()
            raise
        self.data_offset = len(block)
        self._header_crc = zlib.crc32(block)

    def _reopen(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_BINARY", 0))
        self._lock(fd)
        self._fd = fd
        try:
            with MimoReader(self.path) as r:  # refuses a reference-format file
                if r.data_dtype != self.data_dtype or r.data_length != self.data_length:
                    raise MimoFileError(
                        f"{self.path}: cannot append events of {self.data_length} x "
                        f"{self.data_dtype} to a file holding events of {r.data_length} x "
                        f"{r.data_dtype}"
                    )
                self.header = r.header
                self.data_offset = r.data_offset
                self._header_crc = r.header_crc
                self.count = len(r)
            end = self.data_offset + self.count * self.record_size
            os.ftruncate(fd, end)  # drops the footer
            os.lseek(fd, end, os.SEEK_SET)
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """Closes the file without footer (after an error while opening)."""
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
        self._closed = True

    # ----- writing -----

    def _check_open(self) -> None:
        if self._closed:
            raise MimoFileError(f"{self.path}: the writer is closed")

    def write(self, data: Any, metadata: Any = None) -> None:
        """Writes one event.

        Args:
            data: ``data_length`` elements of ``data_dtype`` (anything numpy converts).
            metadata: One metadata record (shape ``(1,)`` array, structured scalar or
                ``(counter, timestamp, deadtime)`` tuple); None stamps the running record
                number, the current time and a dead time of 0.

        Raises:
            ValueError: If ``data`` or ``metadata`` do not fit.
            MimoFileError: If the writer is closed.
        """
        if self._closed:
            self._check_open()
        d = data_bytes(data, self.data_dtype, self.data_length, self.path)
        m = metadata_bytes(metadata, self._meta, self.count, self.path)
        if self._direct:
            write_all(self._fd, [d, m])
        else:
            pos = self._pos
            if pos + self.record_size > self._stage_cap:
                self._flush_stage()
                pos = 0
            end = pos + self._data_size
            self._stage[pos:end] = d
            self._stage[end : end + m.size] = m
            self._pos = end + m.size
        self.count += 1
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def write_many(self, data: Any, metadata: Any = None) -> None:
        """Writes a batch of events.

        Args:
            data: ``k`` events: shape ``(k, data_length)`` (``(k,)`` if ``data_length`` is 1).
            metadata: ``k`` metadata records, or None to stamp the running record number,
                the current time and a dead time of 0.

        Raises:
            ValueError: If the shapes or dtypes do not fit.
            MimoFileError: If the writer is closed.
        """
        self._check_open()
        d, m = event_batch(data, metadata, self.data_dtype, self.data_length, self.count, self.path)
        k = len(d)
        if not k:
            return
        self._flush_stage()
        if self._direct:  # large records: one writev per block of events, no copy
            d = np.ascontiguousarray(d).view(np.uint8).reshape(k, -1)
            m = np.ascontiguousarray(m).view(np.uint8).reshape(k, -1)
            for start in range(0, k, _IOV_EVENTS):
                stop = min(k, start + _IOV_EVENTS)
                write_all(self._fd, [x for i in range(start, stop) for x in (d[i], m[i])])
                self.count += stop - start
        else:  # small records: interleave a block at a time, one write per block
            step = max(1, CHUNK_BYTES // self.record_size)
            if self._rec is None:
                self._rec = np.empty(step, dtype=self.record_dtype)
            for start in range(0, k, step):
                part = self._rec[: min(step, k - start)]
                part["data"] = d[start : start + len(part)]
                part["metadata"] = m[start : start + len(part)]
                write_all(self._fd, [part.view(np.uint8)])
                self.count += len(part)
        self._last_flush = time.monotonic()

    def _flush_stage(self) -> None:
        if self._pos:
            write_all(self._fd, [self._stage[: self._pos]])
            self._pos = 0

    def flush(self, fsync: bool = False) -> None:
        """Hands staged records to the operating system (they survive a crash of this process).

        Args:
            fsync: Also wait until the data is on the storage device (survives power loss).
        """
        self._check_open()
        self._flush_stage()
        if fsync:
            os.fsync(self._fd)
        self._last_flush = time.monotonic()

    def __len__(self) -> int:
        """The number of records written (including those of an appended file)."""
        return self.count

    @property
    def closed(self) -> bool:
        """Whether the writer was closed."""
        return self._closed

    def close(self, fsync: bool = False) -> None:
        """Writes the staged records and the footer and closes the file (idempotent).

        Args:
            fsync: Wait until the file is on the storage device.
        """
        if self._closed:
            return
        try:
            self._flush_stage()
            write_all(self._fd, [footer(self.count, self.data_offset, self._header_crc)])
            if fsync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
            self._closed = True

    def __del__(self) -> None:
        """An unclosed writer is closed (with footer) when collected, with a ResourceWarning."""
        if getattr(self, "_closed", True) or getattr(self, "_fd", -1) < 0:
            return
        warnings.warn(
            f"unclosed MimoWriter {str(self.path)!r}", ResourceWarning, stacklevel=2, source=self
        )
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> MimoWriter:
        """Returns the writer."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Closes the file (with footer: every record in it is complete)."""
        self.close()

    def __repr__(self) -> str:
        """Path, layout and record count."""
        return (
            f"MimoWriter({str(self.path)!r}, records={self.count}, data_length="
            f"{self.data_length}, data_dtype={self.data_dtype}"
            f"{', closed' if self._closed else ''})"
        )
