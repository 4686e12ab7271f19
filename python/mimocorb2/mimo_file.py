r"""Reading and writing ``.mimo`` files: raw event streams with a safe, self-describing header.

A ``.mimo`` file holds the events of one buffer: each event's data followed by its 24-byte
metadata record, back to back, after a JSON header that describes the layout. Nothing in the
file is executed when it is read (the reference implementation's pickled header, defect B27,
is refused unless the caller explicitly trusts the file).

Format version 2 (all integers little-endian):

============  ==========  ===============================================================
Offset        Size        Content
============  ==========  ===============================================================
0             16          magic ``b"MIMOCRB2FILE\r\n\x1a\n"`` (:data:`MAGIC`)
16            4           ``H``: u32, size of the header block that follows
20            ``H``       header block: a UTF-8 JSON object, padded with spaces and a final
                          ``\n`` so that ``D = 20 + H`` is a multiple of 64
``D``         ``N*R``     ``N`` records of ``R = data_size + metadata_size`` bytes each:
                          ``data_length`` elements of ``data_dtype``, then one
                          ``metadata_dtype`` record (counter, timestamp, deadtime)
``D + N*R``   32          footer, written only by a clean :meth:`MimoWriter.close`
============  ==========  ===============================================================

Header keys: ``format`` (``"mimocorb2"``), ``version`` (2), ``data_dtype`` and
``metadata_dtype`` (numpy ``descr`` lists as written by ``numpy.lib.format.dtype_to_descr``,
with explicit byte order, e.g. ``[["ch1", "<f4"]]``), ``data_length``, ``data_size``,
``metadata_size``, ``record_size`` (``R``), ``record_layout`` (``["data", "metadata"]``),
``created`` (ISO 8601, UTC), ``source`` (buffer name or null), ``writer`` (software version)
and ``attrs`` (a JSON object of user values). Readers ignore keys they do not know.

Footer (32 bytes): magic ``b"MIMO_END"`` (8), u64 record count ``N``, u64 ``D``, u32 CRC-32
(``zlib.crc32``) of the bytes ``0 .. D`` (magic, length and header block), u32 CRC-32 of the
footer's first 28 bytes. The checksums only guard the header and the footer, not the records:
checking every record would halve the write speed. A footer is accepted only if both
checksums match and ``D + N*R + 32`` equals the file size.

Reading:

- a cleanly closed file: the record count comes from the footer (no scan);
- a file without footer (the writer crashed or is still running): the count is
  ``(size - D) // R``; a partial last record raises :class:`MimoTruncatedError`, or is
  ignored with ``allow_truncated=True``;
- a damaged header (bad magic, length, JSON or keys) raises :class:`MimoFormatError` naming
  the file;
- a file of the reference implementation (it starts with the pickle opcode ``0x80``) is
  refused with :class:`MimoFormatError`; ``trust=True`` reads it with :mod:`pickle` (which can
  execute code from the file: only for files you trust). :func:`convert` rewrites it in
  version 2.

Writing: :class:`MimoWriter` writes whole records in order, small ones through a 1 MiB
staging buffer and large ones (≥ 32 KiB) directly, one ``writev`` per event. Staged records
reach the operating system at least every ``flush_interval`` seconds, so after a crash of the
writing process the file stays readable up to the last flush. Every writer holds an exclusive
``flock`` on its file while it is open: a second writer on the same file, in any process, is
refused instead of corrupting it (defect B18). ``exclusive=True`` refuses to touch an
existing file at all (used by ``data.export`` to give each process its own file).

Converting: :func:`convert_to` (or :func:`to_hdf5`, :func:`to_parquet`, :func:`to_root`,
:func:`to_csv`; on the command line ``mimocorb2 convert IN.mimo OUT.h5``) writes a file's events
as HDF5, Parquet, ROOT or CSV, in the layouts of the exporters of the same names (see
:mod:`mimocorb2._file_formats`). :func:`recover_hdf5` makes the HDF5 file of a crashed
``exporters.hdf5`` a plain HDF5 file.

Examples:
    >>> import numpy as np
    >>> from mimocorb2.mimo_file import MimoReader, MimoWriter
    >>> dt = np.dtype([("ch1", "<f4"), ("ch2", "<f4")])
    >>> with MimoWriter("run.mimo", dt, 500, source="waveforms") as w:
    ...     w.write(np.zeros(500, dt))          # metadata stamped (counter, time)
    >>> with MimoReader("run.mimo") as r:
    ...     data, metadata = r.read_all()       # shapes (n, 500) and (n,)
    ...     for data, metadata in r:            # or event by event
    ...         pass
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE, make_dtype
from mimocorb2._mimo_header import (
    FOOTER_MAGIC,
    FOOTER_SIZE,
    FORMAT_VERSION,
    MAGIC,
    FileHeader,
    check_length,
    footer,
    header_block,
    new_header,
    read_footer,
    read_header,
)
from mimocorb2._mimo_legacy import PICKLE_PROTO, read_reference_header
from mimocorb2._mimo_records import data_bytes, event_batch, metadata_bytes, write_all

try:  # advisory locks (POSIX); without them only the O_EXCL protection remains
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]

__all__ = [
    "FOOTER_MAGIC",
    "FOOTER_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "MimoFileError",
    "MimoFormatError",
    "MimoReader",
    "MimoTruncatedError",
    "MimoWriter",
    "convert",
    "convert_to",
    "open_mimo",
    "record_dtype",
    "recover_hdf5",
    "to_csv",
    "to_hdf5",
    "to_parquet",
    "to_root",
]

_STAGE_SIZE = 1 << 20
_DIRECT_SIZE = 32 * 1024
_CHUNK_BYTES = 8 * 1024 * 1024
_IOV_EVENTS = 256  # events per writev call (2 buffers each; IOV_MAX is 1024 on Linux)


class MimoFileError(ValueError):
    """A ``.mimo`` file cannot be read or written as asked; the message names the file."""


class MimoFormatError(MimoFileError):
    """Not a readable ``.mimo`` file: bad magic, header or version, or a refused pickle."""


class MimoTruncatedError(MimoFileError):
    """The file ends inside a record (the writer was interrupted while writing)."""


def record_dtype(
    data_dtype: Any, data_length: int, metadata_dtype: Any = METADATA_DTYPE
) -> np.dtype:
    """The packed dtype of one file record: ``data`` (``data_length`` elements), then ``metadata``.

    Args:
        data_dtype: The structured data dtype.
        data_length: Elements per event.
        metadata_dtype: The metadata dtype (default: the 24-byte mimocorb2 record).

    Returns:
        A dtype with the fields ``data`` (shape ``(data_length,)``) and ``metadata``.
    """
    return np.dtype(
        [
            ("data", np.dtype(data_dtype), (int(data_length),)),
            ("metadata", np.dtype(metadata_dtype)),
        ]
    )


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class MimoReader:
    """Reads a ``.mimo`` file (format version 2, or the reference format with ``trust=True``).

    The file is checked on opening: header, footer and size. Reading never executes anything
    from the file, except the reference format's pickle when ``trust=True``.

    Args:
        path: The file.
        allow_truncated: Accept a file that ends inside a record (after a crash): the
            complete records are read, the partial one is ignored (see ``truncated_bytes``).
        trust: Read a reference-format file (pickled header). Unpickling can execute code
            stored in the file: use it only for files you trust.

    Attributes:
        path (Path): The file.
        header (dict): The header (for a reference-format file: an equivalent summary).
        version (int): Format version of the file (1 for the reference format).
        data_dtype (np.dtype): The data dtype.
        data_length (int): Elements per event.
        metadata_dtype (np.dtype): The metadata dtype.
        record_dtype (np.dtype): One record: fields ``data`` and ``metadata``.
        record_size (int): Bytes per record.
        data_offset (int): File offset of the first record.
        header_crc (int): CRC-32 of the header block (the footer repeats it).
        clean (bool): Whether the file has a valid footer (was closed cleanly).
        truncated_bytes (int): Bytes of an incomplete last record (0 if none).

    Raises:
        FileNotFoundError: If the file does not exist.
        MimoFormatError: If the file is not a readable ``.mimo`` file.
        MimoTruncatedError: If the file ends inside a record and ``allow_truncated`` is false.

    Examples:
        >>> with MimoReader("waveforms.mimo") as r:
        ...     print(len(r), r.data_dtype, r.data_length)
        ...     data, metadata = r.read_all()
    """

    def __init__(
        self, path: str | os.PathLike[str], allow_truncated: bool = False, trust: bool = False
    ) -> None:
        """Opens the file and checks its header, footer and size."""
        self.path = Path(path)
        self._file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        try:
            self._size = os.fstat(self._file.fileno()).st_size
            first = self._file.read(1)
            if first and first[0] == PICKLE_PROTO:
                self._use_header(read_reference_header(self._file, trust, self._error))
            else:
                self._use_header(read_header(self._file, self._size, self._error))
            self._count_records(allow_truncated)
        except BaseException:
            self._file.close()
            raise

    # ----- opening -----

    def _error(self, message: str) -> MimoFormatError:
        return MimoFormatError(f"{self.path}: {message}")

    def _use_header(self, h: FileHeader) -> None:
        self.header: dict[str, Any] = h.header
        self.version = h.version
        self.data_dtype = h.data_dtype
        self.data_length = h.data_length
        self.metadata_dtype = h.metadata_dtype
        self.data_offset = h.data_offset
        self.header_crc: int = h.header_crc

    def _count_records(self, allow_truncated: bool) -> None:
        self.record_dtype = record_dtype(self.data_dtype, self.data_length, self.metadata_dtype)
        self.record_size = self.record_dtype.itemsize
        self.clean = False
        self.truncated_bytes = 0
        body = self._size - self.data_offset
        footer_count = (
            read_footer(self._file, self._size, self.data_offset, self.record_size, self.header_crc)
            if body >= FOOTER_SIZE
            else None
        )
        if footer_count is not None:
            self.clean = True
            self._count = footer_count
            return
        self._count, self.truncated_bytes = divmod(body, self.record_size)
        if self.truncated_bytes and not allow_truncated:
            raise MimoTruncatedError(
                f"{self.path}: the file ends inside record {self._count} ({self.truncated_bytes} "
                f"of {self.record_size} bytes present; {self._count} complete records): the "
                "writer was interrupted. Open it with allow_truncated=True to read the "
                "complete records"
            )

    # ----- access -----

    def __len__(self) -> int:
        """The number of (complete) records."""
        return self._count

    @property
    def closed(self) -> bool:
        """Whether the reader was closed."""
        return self._file.closed

    def read(self, start: int = 0, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Reads ``count`` records from record ``start`` into memory.

        Args:
            start: First record (negative: from the end).
            count: Number of records (None: to the end).

        Returns:
            ``(data, metadata)`` with shapes ``(k, data_length)`` and ``(k,)``: views of one
            freshly read record array (not of the file).
        """
        n = self._count
        if start < 0:
            start += n
        start = min(max(start, 0), n)
        k = n - start if count is None else min(max(int(count), 0), n - start)
        rec = np.empty(k, dtype=self.record_dtype)
        self._read_into(rec, self.data_offset + start * self.record_size)
        return rec["data"], rec["metadata"]

    def _read_into(self, rec: np.ndarray, offset: int) -> None:
        buf = memoryview(rec.view(np.uint8).reshape(-1))
        self._file.seek(offset)
        done = 0
        while done < buf.nbytes:
            n = self._file.readinto(buf[done:])
            if not n:
                raise MimoTruncatedError(
                    f"{self.path}: the file became shorter while it was read "
                    f"(at byte {offset + done})"
                )
            done += n

    def read_all(self, mmap: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Reads every record.

        Args:
            mmap: Map the file read-only instead of reading it (pages are loaded on access;
                the arrays stay valid after the reader is closed).

        Returns:
            ``(data, metadata)`` with shapes ``(n, data_length)`` and ``(n,)``. Both are
            views of one record array (fields interleaved as in the file); copy with
            ``np.ascontiguousarray`` where contiguous arrays are needed.
        """
        if mmap and self._count:
            rec = np.memmap(
                self.path,
                dtype=self.record_dtype,
                mode="r",
                offset=self.data_offset,
                shape=(self._count,),
            )
            return rec["data"], rec["metadata"]
        return self.read(0, None)

    def chunks(self, records: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields the file in blocks of records, as :meth:`read` returns them.

        Args:
            records: Records per block (default: about 8 MiB per block).
        """
        if records is None:
            records = max(1, _CHUNK_BYTES // self.record_size)
        records = max(1, int(records))
        for start in range(0, self._count, records):
            yield self.read(start, records)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yields ``(data, metadata)`` of each record, shapes ``(data_length,)`` and ``(1,)``.

        The arrays belong to blocks read from the file (about 8 MiB at a time): they stay
        valid, and changing them does not change the file.
        """
        for data, metadata in self.chunks():
            for i in range(len(metadata)):
                yield data[i], metadata[i : i + 1]

    def close(self) -> None:
        """Closes the file (idempotent)."""
        self._file.close()

    def __enter__(self) -> MimoReader:
        """Returns the reader."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Closes the file."""
        self.close()

    def __repr__(self) -> str:
        """Path, layout and record count."""
        state = "clean" if self.clean else "no footer"
        return (
            f"MimoReader({str(self.path)!r}, records={self._count}, data_length="
            f"{self.data_length}, data_dtype={self.data_dtype}, {state})"
        )


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


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
            step = max(1, _CHUNK_BYTES // self.record_size)
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


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def open_mimo(path: str | os.PathLike[str], mode: str = "r", **kwargs: Any) -> Any:
    """Opens a ``.mimo`` file for reading or writing.

    Args:
        path: The file.
        mode: ``"r"`` read (:class:`MimoReader`), ``"w"`` create or replace, ``"x"`` create
            a new file only, ``"a"`` append (:class:`MimoWriter`).
        **kwargs: Passed on: ``allow_truncated``, ``trust`` for reading; ``data_dtype``,
            ``data_length``, ``source``, ``attrs``, ``flush_interval`` for writing.

    Returns:
        A :class:`MimoReader` or :class:`MimoWriter` (both context managers).

    Raises:
        ValueError: For an unknown mode.
    """
    if mode in ("r", "rb"):
        return MimoReader(path, **kwargs)
    if mode in ("w", "wb"):
        return MimoWriter(path, **kwargs)
    if mode in ("x", "xb"):
        return MimoWriter(path, exclusive=True, **kwargs)
    if mode in ("a", "ab"):
        return MimoWriter(path, append=True, **kwargs)
    raise ValueError(f"open_mimo: mode must be 'r', 'w', 'x' or 'a', got {mode!r}")


def convert(
    source: str | os.PathLike[str], target: str | os.PathLike[str], trust: bool = False
) -> int:
    """Rewrites a ``.mimo`` file (e.g. one of the reference format) in format version 2.

    Args:
        source: The file to read.
        target: The new file (must not exist).
        trust: Needed for a reference-format file (its pickled header is loaded).

    Returns:
        The number of records written.
    """
    with (
        MimoReader(source, trust=trust) as r,
        MimoWriter(
            target,
            r.data_dtype,
            r.data_length,
            source=r.header.get("source"),
            exclusive=True,
            attrs={"converted_from": str(Path(source).name)},
        ) as w,
    ):
        for data, metadata in r.chunks():
            w.write_many(data, metadata)  # converts the metadata field by field
        return len(w)


def convert_to(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    format: str | None = None,
    *,
    trust: bool = False,
    progress: Any = None,
    compression: str | None = None,
    compression_level: int | None = None,
) -> int:
    """Writes the events of a ``.mimo`` file as HDF5, Parquet, ROOT or CSV.

    The layouts are those of ``exporters.hdf5``, ``exporters.parquet``, ``exporters.root``
    and ``exporters.csv``. HDF5, Parquet and ROOT need their optional library
    (``pip install "mimocorb2[hdf5]"``, ``[parquet]``, ``[root]``).

    Args:
        source: The ``.mimo`` file (one without footer is read up to its last whole event).
        target: The new file (must not exist).
        format: ``hdf5``, ``parquet``, ``root`` or ``csv`` (default: from the target's ending,
            ``.h5``/``.hdf5``, ``.parquet``, ``.root``, ``.csv``).
        trust: Read a reference-format file (loads its pickled header).
        progress: Called as ``progress(events_done, events_total)`` after each block.
        compression: Codec of the target format (default none).
        compression_level: Its level.

    Returns:
        The number of events written.

    Raises:
        ValueError: For an unknown format, or events the format cannot store.
        ImportError: If the format's library is missing (the message names the pip command).
        FileExistsError: If the target exists.

    Examples:
        >>> convert_to("run/waveforms.mimo", "waveforms.h5")
        >>> convert_to("run/heights.mimo", "heights.parquet", compression="zstd")
    """
    from mimocorb2._mimo_convert import conversion_format, convert_mimo

    source, target = Path(source), Path(target)
    fmt = conversion_format(target, format, compression)
    with MimoReader(source, allow_truncated=True, trust=trust) as reader:
        return convert_mimo(
            reader,
            source,
            target,
            fmt,
            progress=progress,
            compression=compression,
            compression_level=compression_level,
        )


def to_hdf5(source: str | os.PathLike[str], target: str | os.PathLike[str], **kwargs: Any) -> int:
    """:func:`convert_to` in HDF5 (``kwargs`` as there); returns the number of events."""
    return convert_to(source, target, "hdf5", **kwargs)


def to_parquet(
    source: str | os.PathLike[str], target: str | os.PathLike[str], **kwargs: Any
) -> int:
    """:func:`convert_to` in Parquet (``kwargs`` as there); returns the number of events."""
    return convert_to(source, target, "parquet", **kwargs)


def to_root(source: str | os.PathLike[str], target: str | os.PathLike[str], **kwargs: Any) -> int:
    """:func:`convert_to` in ROOT (``kwargs`` as there); returns the number of events."""
    return convert_to(source, target, "root", **kwargs)


def to_csv(source: str | os.PathLike[str], target: str | os.PathLike[str], **kwargs: Any) -> int:
    """:func:`convert_to` in CSV (events of data_length 1); returns the number of events."""
    return convert_to(source, target, "csv", **kwargs)


def recover_hdf5(path: str | os.PathLike[str]) -> int:
    """Makes the HDF5 file of a crashed ``exporters.hdf5`` writer a plain HDF5 file.

    See :func:`mimocorb2._hdf5_file.recover_hdf5` (also ``mimocorb2 recover FILE.h5``).

    Args:
        path: The ``.h5`` file; its writer must be gone.

    Returns:
        The number of events in the file.
    """
    from mimocorb2._hdf5_file import recover_hdf5 as recover

    return recover(path)
