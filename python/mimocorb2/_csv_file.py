"""CSV files of events: :class:`CsvWriter`, the writer of ``exporters.csv`` and the converters.

Also the ``flock`` guard (:class:`_Locked`) that serialises several writers of one file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

try:  # POSIX; without it (Windows) concurrent writers of one output are not serialised
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - platform dependent
    _fcntl = None  # type: ignore[assignment]


class _Locked:
    """Holds a ``flock`` on an open file descriptor (a no-op without fcntl).

    Exclusive for writers; ``shared`` for readers (several at once, but no writer meanwhile).
    """

    __slots__ = ("_fd", "_shared")

    def __init__(self, fd: int, shared: bool = False) -> None:
        self._fd = fd
        self._shared = shared

    def __enter__(self) -> None:
        if _fcntl is not None:
            _fcntl.flock(self._fd, _fcntl.LOCK_SH if self._shared else _fcntl.LOCK_EX)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if _fcntl is not None:
            _fcntl.flock(self._fd, _fcntl.LOCK_UN)


def _quote(text: str) -> str:
    """CSV quoting of one field (RFC 4180): only where needed."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _column_formatter(dtype: np.dtype) -> Callable[[np.ndarray], Iterator[str] | list[str]]:
    """A function turning a column into its CSV strings, in the column's own type.

    Integers and bools as Python prints them, float64 as ``repr`` (shortest text that reads
    back to the same value), smaller floats as numpy's shortest text for their precision,
    anything else as ``str``, quoted where needed.
    """
    kind = dtype.kind
    if kind in "iub":
        return lambda col: map(str, col.tolist())
    if kind == "f" and dtype.itemsize == 8:
        return lambda col: map(repr, col.tolist())
    if kind in "fcmM":
        return lambda col: col.astype(str).tolist()
    if kind == "S":
        return lambda col: [
            _quote(v.decode("utf-8", errors="backslashreplace")) for v in col.tolist()
        ]
    return lambda col: [_quote(str(v)) for v in col.tolist()]


def _clashing_columns(metadata_dtype: np.dtype, data_dtype: np.dtype) -> list[str]:
    """The data fields named like a metadata field (they would repeat a CSV column name)."""
    metadata = set(metadata_dtype.names or ())
    return [name for name in data_dtype.names or () if name in metadata]


class CsvWriter:
    """The core of ``exporters.csv``: formats batches of events and appends them to a file.

    Rows are ``counter, timestamp, deadtime`` followed by the data fields, each column in its
    own type. The file is opened for appending; every write of a batch (and the header check)
    holds an exclusive ``flock`` of the file, so several writers of one file never mix their
    lines.

    Args:
        path: The CSV file.
        metadata_dtype: Structured dtype of the metadata records.
        data_dtype: Structured dtype of the data (plain fields, no sub-arrays).

    Raises:
        ValueError: If a field is a sub-array or has the name of a metadata field, or the file
            exists with another header.
    """

    def __init__(self, path: str | Path, metadata_dtype: np.dtype, data_dtype: np.dtype) -> None:
        """Opens the file and writes the header, unless the file already has it."""
        self.path = Path(path)
        clash = _clashing_columns(metadata_dtype, data_dtype)
        if clash:
            raise ValueError(
                f"data field(s) {clash} have the name of a metadata column "
                f"({', '.join(metadata_dtype.names or ())}); the columns would repeat"
            )
        columns: list[tuple[str, str, Callable[[np.ndarray], Any]]] = []
        for part, dtype in (("metadata", metadata_dtype), ("data", data_dtype)):
            for name in dtype.names or ():
                sub = dtype[name]
                if sub.shape or sub.names:
                    raise ValueError(
                        f"field {name!r} has dtype {sub}; only plain (scalar) fields can be "
                        "written as CSV columns"
                    )
                columns.append((part, name, _column_formatter(sub)))
        self._columns = columns
        self.header = ",".join(_quote(name) for _, name, _ in columns) + "\n"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            self._write_header()
        except BaseException:
            os.close(self._fd)
            raise

    def _write_header(self) -> None:
        header = self.header.encode()
        with _Locked(self._fd):
            if os.fstat(self._fd).st_size == 0:
                _write_all(self._fd, header)
                return
            with open(self.path, "rb") as f:
                first = f.read(len(header))
        if first != header:
            raise ValueError(
                f"{self.path} already exists with other columns ({first.decode(errors='replace')!r}"
                f" instead of {self.header!r})"
            )

    def format(self, metadata: np.ndarray, data: np.ndarray) -> str:
        """The CSV lines of ``k`` events (``metadata`` and ``data`` of shape ``(k,)``)."""
        if len(data) == 0:
            return ""
        cols = [
            fmt(metadata[name] if part == "metadata" else data[name])
            for part, name, fmt in self._columns
        ]
        return "\n".join(map(",".join, zip(*cols, strict=True))) + "\n"

    def write(self, metadata: np.ndarray, data: np.ndarray) -> int:
        """Appends the rows of ``k`` events in one locked write; returns ``k``."""
        text = self.format(metadata, data)
        if text:
            payload = text.encode()
            with _Locked(self._fd):
                _write_all(self._fd, payload)
        return len(data)

    def close(self) -> None:
        """Closes the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
