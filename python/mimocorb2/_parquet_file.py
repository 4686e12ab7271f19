"""Parquet files of events (``exporters.parquet``, ``.mimo`` → ``.parquet``).

Layout: one row per event; columns ``counter``, ``timestamp``, ``deadtime`` and one per data
field (a fixed-size list column of ``data_length`` values when ``data_length > 1``, byte
strings as fixed-size binary); one row group per written group of events; the schema
metadata holds ``mimocorb2`` (JSON) and ``setup_yaml``.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2._event_files import EventFileWriter, claim
from mimocorb2._format_registry import require


def _arrow_type(pa: ModuleType, dt: np.dtype) -> Any:
    if dt.kind == "S":
        return pa.binary(dt.itemsize)
    return pa.from_numpy_dtype(dt.newbyteorder("="))


def _arrow_values(pa: ModuleType, values: np.ndarray) -> Any:
    """A flat Arrow array of a 1-d numpy array (fixed-size binary for byte strings)."""
    dt = values.dtype
    if dt.kind == "S":
        raw = np.ascontiguousarray(values).view(np.uint8)
        return pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(dt.itemsize), len(values), [None, pa.py_buffer(raw)]
        )
    if not dt.isnative:
        values = values.astype(dt.newbyteorder("="))
    return pa.array(np.ascontiguousarray(values))


class ParquetWriter(EventFileWriter):
    """Writes events to a Parquet file, or to a directory of part files.

    Events are collected and written as one row group at every :meth:`flush` and whenever
    ``group_bytes`` are pending. A Parquet file can only be read after :meth:`close` (its
    footer is written last): a crash of the writer leaves an unreadable file. With
    ``part_interval`` the path is a directory instead: the current part is written as the
    hidden file ``.part-NNNNN.parquet.inprogress`` and renamed to ``part-NNNNN.parquet`` when
    it is closed, at the first flush after ``part_interval`` seconds and at the end, so a
    crash loses at most the current part. ``pyarrow.parquet.read_table(directory)``,
    ``pandas.read_parquet(directory)`` and ``polars.read_parquet(directory / "*.parquet")``
    read all parts (hidden files are skipped).

    Args:
        path: The file (or directory with ``part_interval``); created, never overwritten.
        data_dtype: Structured dtype of the data.
        data_length: Elements per event.
        attrs: Values stored as JSON under the schema metadata key ``mimocorb2`` (with
            ``mimocorb2_version``, ``data_dtype``, ``data_length``, ``created``); the value of
            ``setup_yaml`` goes under its own key.
        compression: None (default) or a Parquet codec (``snappy``, ``zstd``, ...).
        compression_level: Level for codecs that take one.
        part_interval: Seconds after which a part file is closed (None: one file).
        group_bytes: Pending bytes that trigger a row group before the next flush.

    Raises:
        MissingExtraError: If pyarrow is not installed.
        FileExistsError: If the file (or directory) exists.
        ValueError: For fields Parquet cannot store, or an unavailable codec.
    """

    fmt = "parquet"

    def __init__(
        self,
        path: str | os.PathLike[str],
        data_dtype: Any,
        data_length: int,
        *,
        attrs: Mapping[str, Any] | None = None,
        compression: str | None = None,
        compression_level: int | None = None,
        part_interval: float | None = None,
        group_bytes: int = EventFileWriter.group_bytes,
    ) -> None:
        """Builds the schema and creates the file (or the directory)."""
        super().__init__(path, data_dtype, data_length)
        self._pa = require("parquet", "writing Parquet files")
        self._pq = importlib.import_module("pyarrow.parquet")
        pa = self._pa
        codec = "none" if compression in (None, "none") else str(compression).lower()
        if codec != "none" and not pa.Codec.is_available(codec):
            raise ValueError(f"{self.path}: pyarrow was built without the {codec} codec")
        self._codec = codec
        self._level = compression_level
        names = METADATA_DTYPE.names or ()
        fields = [pa.field(n, _arrow_type(pa, METADATA_DTYPE[n])) for n in names]
        for name in self.data_dtype.names or ():
            value_type = _arrow_type(pa, self.data_dtype[name])
            if self.data_length > 1:
                value_type = pa.list_(value_type, self.data_length)
            fields.append(pa.field(name, value_type, nullable=False))
        info = self.info_json(attrs)
        meta = {b"mimocorb2": json.dumps(info, default=str).encode()}
        setup_yaml = (attrs or {}).get("setup_yaml")
        if setup_yaml:
            meta[b"setup_yaml"] = str(setup_yaml).encode()
        self.schema = pa.schema(fields, metadata=meta)
        self.part_interval = part_interval
        self.group_bytes = int(group_bytes)
        self.parts: list[Path] = []
        self._writer: Any = None
        self._part_path: Path | None = None
        self._part_started = 0.0
        claim(self.path, directory=part_interval is not None)
        if part_interval is None:
            self._open(self.path)

    def _open(self, path: Path) -> None:
        self._writer = self._pq.ParquetWriter(
            str(path),
            self.schema,
            compression=self._codec,
            compression_level=self._level if self._codec != "none" else None,
            use_dictionary=False,
        )

    def _columns(self, metadata: np.ndarray, data: np.ndarray) -> list[Any]:
        pa = self._pa
        cols = [_arrow_values(pa, metadata[n]) for n in METADATA_DTYPE.names or ()]
        for name in self.data_dtype.names or ():
            values = _arrow_values(pa, np.ascontiguousarray(data[name]).reshape(-1))
            if self.data_length > 1:
                values = pa.FixedSizeListArray.from_arrays(values, self.data_length)
            cols.append(values)
        return cols

    def _write_group(self, metadata: np.ndarray, data: np.ndarray) -> None:
        """Writes the events as one row group (opening the next part file if needed)."""
        pa = self._pa
        batch = pa.RecordBatch.from_arrays(self._columns(metadata, data), schema=self.schema)
        if self._writer is None:  # parts: open the next part
            k = len(self.parts)
            self._part_path = self.path / f".part-{k:05d}.parquet.inprogress"
            self._open(self._part_path)
            self._part_started = time.monotonic()
        table = pa.Table.from_batches([batch], schema=self.schema)
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))

    def _close_part(self) -> None:
        if self._writer is None or self._part_path is None:
            return
        self._writer.close()
        self._writer = None
        final = self.path / f"part-{len(self.parts):05d}.parquet"
        os.replace(self._part_path, final)
        self.parts.append(final)
        self._part_path = None

    def _sync(self) -> None:
        """Closes the current part if it is older than part_interval."""
        if (
            self.part_interval is not None
            and self._writer is not None
            and time.monotonic() - self._part_started >= self.part_interval
        ):
            self._close_part()

    def _finish(self) -> None:
        """Writes the footer (of the last part)."""
        if self.part_interval is None:
            if self._writer is not None:
                self._writer.close()
        else:
            self._close_part()
