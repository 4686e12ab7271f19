"""Conversion of ``.mimo`` files to HDF5, Parquet, ROOT and CSV (``mimocorb2 convert``).

:func:`mimocorb2.mimo_file.convert_to` opens the ``.mimo`` file, checks the format with
:func:`conversion_format` and hands both to :func:`convert_mimo`, which maps the file's
records into memory (read-only) and gives them to the writer of the format
(:mod:`mimocorb2._file_formats`) in large blocks, unchanged: ``data`` and ``metadata`` are
views of the records, so the HDF5 writer reads them straight from the mapping and the other
writers copy them once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2._csv_file import CsvWriter
from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2._event_files import claim
from mimocorb2._file_formats import COMPRESSIONS, SUFFIXES, format_of, open_writer

BLOCK_BYTES = 32 << 20
"""Bytes of records handed to the writer at a time (the unit of progress)."""


def _setup_yaml_beside(source: Path) -> str:
    """The run's ``setup.yaml`` when the ``.mimo`` file lies in a run directory, else ''."""
    candidate = source.parent / "setup.yaml"
    try:
        return candidate.read_text() if candidate.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return ""


def conversion_format(target: Path, fmt: str | None, compression: str | None) -> str:
    """The format of a conversion to ``target``, checked with its compression.

    Args:
        target: The new file.
        fmt: ``hdf5``, ``parquet``, ``root`` or ``csv``; by default from the target's ending
            (``.h5``/``.hdf5``, ``.parquet``, ``.root``, ``.csv``).
        compression: Compression of the target format (None or ``none``: none).

    Returns:
        The format name, lower case.

    Raises:
        ValueError: For an unknown format or a compression the format does not know.
    """
    fmt = (fmt or format_of(target) or "").lower()
    if fmt not in SUFFIXES:
        raise ValueError(
            f"{target}: cannot tell the format from the file name; end it in .h5, .parquet, "
            ".root or .csv, or give the format"
        )
    if compression not in (None, "none") and (
        fmt == "csv" or str(compression).lower() not in COMPRESSIONS[fmt]
    ):
        known = ", ".join(COMPRESSIONS.get(fmt, ()))
        raise ValueError(
            f"{target}: compression {compression!r} is not one of none"
            + (f", {known}" if known else "")
            + f" for {fmt} files"
        )
    return fmt


def convert_mimo(
    reader: Any,
    source: Path,
    target: Path,
    fmt: str,
    *,
    progress: Callable[[int, int], None] | None = None,
    compression: str | None = None,
    compression_level: int | None = None,
) -> int:
    """Writes the events of an open ``.mimo`` file as HDF5, Parquet, ROOT or CSV.

    The layouts are those of the exporters (:mod:`mimocorb2._file_formats`); the HDF5
    attributes and the info of the other formats hold the buffer name, ``run_start`` (the
    ``.mimo`` file's creation time), ``converted_from`` and, when the ``.mimo`` file lies in
    a run directory, that run's ``setup.yaml``. CSV needs events of ``data_length`` 1. The caller
    (:func:`mimocorb2.mimo_file.convert_to`) opens the file and checks the format with
    :func:`conversion_format`.

    Args:
        reader: The open ``.mimo`` file (a ``MimoReader``).
        source: Its path.
        target: The new file (must not exist).
        fmt: The format, as returned by :func:`conversion_format`.
        progress: Called as ``progress(events_done, events_total)`` after each block.
        compression: Compression of the target format (default none).
        compression_level: Its level.

    Returns:
        The number of events written.

    Raises:
        ValueError: For events the format cannot store.
        MissingExtraError: If the format's library is not installed.
        FileExistsError: If the target exists.
    """
    total = len(reader)
    attrs = {
        "buffer": str(reader.header.get("source") or ""),
        "run_start": str(reader.header.get("created") or ""),
        "setup_yaml": _setup_yaml_beside(source),
        "converted_from": source.name,
    }
    writer: Any
    if fmt == "csv":
        writer = _csv_writer(target, reader.data_dtype, reader.data_length)
    else:
        options: dict[str, Any] = {"attrs": attrs, "compression": compression}
        options["compression_level"] = compression_level
        writer = open_writer(fmt, target, reader.data_dtype, reader.data_length, **options)
    done = 0
    try:
        data, metadata = reader.read_all(mmap=True)  # views of the records in the file
        step = max(1, BLOCK_BYTES // reader.record_size)
        for start in range(0, len(data), step):
            writer.write(metadata[start : start + step], data[start : start + step])
            done = min(start + step, len(data))
            if progress is not None:
                progress(done, total)
    finally:
        writer.close()
    if progress is not None and total == 0:
        progress(0, 0)
    return done


class _CsvTarget:
    """``exporters.csv``'s writer on a new file, with the writer interface used above."""

    def __init__(self, path: Path, data_dtype: np.dtype, data_length: int) -> None:
        if data_length != 1:
            raise ValueError(
                f"{path}: CSV holds events of data_length 1 (one value per field), but the "
                f"file's events have data_length {data_length}; convert to .h5, .parquet or "
                ".root instead"
            )
        claim(path)
        try:
            self._writer = CsvWriter(path, METADATA_DTYPE, data_dtype)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise

    def write(self, metadata: np.ndarray, data: np.ndarray) -> None:
        self._writer.write(metadata, np.ascontiguousarray(data).reshape(-1))

    def close(self) -> None:
        self._writer.close()


def _csv_writer(path: Path, data_dtype: np.dtype, data_length: int) -> _CsvTarget:
    return _CsvTarget(path, data_dtype, data_length)
