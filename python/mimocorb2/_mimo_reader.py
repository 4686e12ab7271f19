"""Reading ``.mimo`` files: :class:`MimoReader`, the record layout and the file errors.

The format is described in :mod:`mimocorb2.mimo_file`, which re-exports everything here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2._mimo_header import FOOTER_SIZE, FileHeader, read_footer, read_header
from mimocorb2._mimo_legacy import PICKLE_PROTO, read_reference_header

CHUNK_BYTES = 8 * 1024 * 1024
"""Bytes of records per block of :meth:`MimoReader.chunks` (and of a ``write_many`` write)."""


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
            records = max(1, CHUNK_BYTES // self.record_size)
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
