"""HDF5, Parquet and ROOT files of events: the writers behind the exporters and converters.

``exporters.hdf5``, ``exporters.parquet`` and ``exporters.root`` (worker functions in
:mod:`mimocorb2.functions.exporters`) and the converters of ``.mimo`` files
(:func:`mimocorb2.mimo_file.convert_to`, ``mimocorb2 convert``) write through the classes
here. Each format needs one optional library, installed with an extra of the package:

=========  ===========  ==================================  =========================
format     library      install                             file
=========  ===========  ==================================  =========================
hdf5       ``h5py``     ``pip install "mimocorb2[hdf5]"``   ``<name>.h5``
parquet    ``pyarrow``  ``pip install "mimocorb2[parquet]"`` ``<name>.parquet``
root       ``uproot``   ``pip install "mimocorb2[root]"``   ``<name>.root``
=========  ===========  ==================================  =========================

The libraries are imported only when a file is opened; a missing one raises
:class:`MissingExtraError`, whose message names the ``pip`` command.

Layouts (``k`` events of ``data_length`` elements of a structured ``data_dtype``):

- HDF5 (:class:`Hdf5Writer`): dataset ``data`` of the data dtype (a compound type), shape
  ``(n, data_length)``, and dataset ``metadata`` of the metadata record (counter, timestamp,
  deadtime), shape ``(n,)``; both chunked and resizable along the first axis. Root attributes:
  ``buffer``, ``mimocorb2_version``, ``run_start``, ``setup_yaml``, ``data_length``,
  ``created`` and any given by the caller. Written in SWMR mode (single writer, multiple
  readers).
- Parquet (:class:`ParquetWriter`): one row per event; columns ``counter``, ``timestamp``,
  ``deadtime`` and one per data field (a fixed-size list column of ``data_length`` values
  when ``data_length > 1``); one row group per written group of events; the schema metadata
  holds ``mimocorb2`` (JSON) and ``setup_yaml``.
- ROOT (:class:`RootWriter`): a TTree ``events`` with branches ``counter``, ``timestamp``,
  ``deadtime`` and one per data field (a fixed-length array ``[data_length]`` when
  ``data_length > 1``; fixed byte strings as ``uint8`` arrays of their width); one basket per
  branch per written group of events; TObjStrings ``mimocorb2`` (JSON) and ``setup_yaml``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import importlib.util
import json
import math
import os
import struct
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from mimocorb2._core import __version__
from mimocorb2._csv_file import CsvWriter
from mimocorb2._dtypes import METADATA_DTYPE, make_dtype

__all__ = [
    "FORMATS",
    "Hdf5Writer",
    "MissingExtraError",
    "ParquetWriter",
    "RootWriter",
    "config_problems",
    "conversion_format",
    "convert_mimo",
    "format_of",
    "missing_extra",
    "open_writer",
    "recover_hdf5",
]

FORMATS: dict[str, tuple[str, str]] = {
    "hdf5": ("h5py", "hdf5"),
    "parquet": ("pyarrow", "parquet"),
    "root": ("uproot", "root"),
}
"""Format name → (library imported, extra of mimocorb2 that installs it)."""

SUFFIXES: dict[str, tuple[str, ...]] = {
    "hdf5": (".h5", ".hdf5"),
    "parquet": (".parquet",),
    "root": (".root",),
    "csv": (".csv",),
}
"""File name endings of each format; the first one is appended to names without one."""

COMPRESSIONS: dict[str, tuple[str, ...]] = {
    "hdf5": ("gzip", "lzf"),
    "parquet": ("snappy", "gzip", "brotli", "zstd", "lz4"),
    "root": ("lz4", "zlib", "lzma", "zstd"),
}
"""Compression names accepted per format (besides ``none``, the default)."""

_ROOT_CODEC_MODULES = {"lz4": ("lz4", "xxhash"), "zstd": ("zstandard",)}

_KINDS = {"hdf5": "biufcS", "parquet": "biufS", "root": "biufS"}
"""Numpy dtype kinds each format stores (b bool, i/u integers, f floats, c complex, S bytes)."""

_CHUNK_BYTES = 1 << 20
"""Target size of one HDF5 chunk."""

_CHUNK_CACHE_BYTES = 4 << 20
"""HDF5 chunk cache per dataset."""

GROUP_BYTES = 64 << 20
"""Events collected before a Parquet row group or a ROOT basket is written (besides flushes)."""

_HDF5_WRITE_BYTES = 1 << 20
"""Batches smaller than this are collected and handed to HDF5 together (per-call overhead)."""

_HDF5_LIBVER = ("v110", "v110")
"""HDF5 file format: SWMR needs 1.10; files stay readable by HDF5 1.10 and newer."""


class MissingExtraError(ImportError):
    """The library of a file format is not installed; the message names the pip command."""


def pip_command(fmt: str) -> str:
    """The command that installs the library of ``fmt`` (e.g. ``pip install "mimocorb2[hdf5]"``)."""
    return f'pip install "mimocorb2[{FORMATS[fmt][1]}]"'


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra(fmt: str, who: str) -> str | None:
    """Why ``fmt`` cannot be written (its library is missing), or None if it can.

    Args:
        fmt: ``hdf5``, ``parquet`` or ``root``.
        who: What needs it, for the message (e.g. ``exporters.hdf5``).
    """
    module, _ = FORMATS[fmt]
    if _installed(module):
        return None
    return (
        f"{who} needs the Python package '{module}', which is not installed; install it "
        f"with: {pip_command(fmt)}"
    )


def require(fmt: str, who: str) -> ModuleType:
    """Imports the library of ``fmt``.

    Args:
        fmt: ``hdf5``, ``parquet`` or ``root``.
        who: What needs it, for the message.

    Returns:
        The module (``h5py``, ``pyarrow`` or ``uproot``).

    Raises:
        MissingExtraError: If it cannot be imported (naming the pip command).
    """
    module, _ = FORMATS[fmt]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        reason = "is not installed" if isinstance(e, ModuleNotFoundError) else f"failed: {e}"
        raise MissingExtraError(
            f"{who} needs the Python package '{module}', whose import {reason}; install it "
            f"with: {pip_command(fmt)}"
        ) from None


def format_of(path: str | os.PathLike[str]) -> str | None:
    """The format of a file name by its ending (``.h5``, ``.parquet``, ...), or None."""
    suffix = Path(path).suffix.lower()
    for fmt, suffixes in SUFFIXES.items():
        if suffix in suffixes:
            return fmt
    return None


# --------------------------------------------------------------------------------------------
# Configuration and dtype checks
# --------------------------------------------------------------------------------------------


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def config_problems(fmt: str, config: Mapping[str, Any], who: str) -> list[str]:
    """Checks an exporter's configuration and that its library is installed.

    Args:
        fmt: ``hdf5``, ``parquet`` or ``root``.
        config: The worker configuration (keys of other functions are ignored).
        who: The function name, for messages (e.g. ``exporters.hdf5``).

    Returns:
        One message per problem (empty if the configuration is usable).
    """
    problems = []
    missing = missing_extra(fmt, who)
    if missing:
        problems.append(missing)
    filename = config.get("filename")
    if filename is not None:
        name = str(filename) if isinstance(filename, str) else ""
        if not name or Path(name).name != name or name in (".", ".."):
            problems.append(
                f"config 'filename' must be a plain file name (the file goes to the run "
                f"directory), got {filename!r}"
            )
    for key in ("flush_interval", "part_interval") if fmt == "parquet" else ("flush_interval",):
        value = config.get(key)
        seconds = _number(value)
        if value is not None and not (seconds > 0 and math.isfinite(seconds)):
            problems.append(f"config '{key}' must be a positive number of seconds, got {value!r}")
    compression = config.get("compression")
    names = COMPRESSIONS[fmt]
    if compression is not None and compression is not False:
        if not isinstance(compression, str) or compression.lower() not in (*names, "none"):
            problems.append(
                f"config 'compression' must be one of none, {', '.join(names)}; got {compression!r}"
            )
        elif fmt == "root":
            needed = _ROOT_CODEC_MODULES.get(compression.lower(), ())
            absent = [m for m in needed if not _installed(m)]
            if absent:
                problems.append(
                    f"compression {compression!r} of ROOT files needs the package(s) "
                    f"{', '.join(absent)}; install them with: pip install {' '.join(absent)}"
                )
    level = config.get("compression_level")
    if level is not None and (
        isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 22
    ):
        problems.append(f"config 'compression_level' must be a whole number 0..22, got {level!r}")
    return problems


def dtype_problems(fmt: str, data_dtype: np.dtype) -> list[str]:
    """Fields of ``data_dtype`` that ``fmt`` cannot store, with what to do instead.

    HDF5 stores any compound of booleans, integers, floats, complex numbers and byte strings
    (``S<n>``), including sub-array and nested fields. Parquet and ROOT store plain fields of
    booleans, integers, floats (ROOT: no float16) and byte strings, which must not be named
    like a metadata column.
    """
    kinds = _KINDS[fmt]
    problems = []
    metadata_names = set(METADATA_DTYPE.names or ())

    def leaves(dt: np.dtype, name: str) -> list[tuple[str, np.dtype]]:
        if dt.subdtype is not None:
            return leaves(dt.subdtype[0], name)
        if dt.names:
            return [leaf for n in dt.names for leaf in leaves(dt[n], f"{name}.{n}")]
        return [(name, dt)]

    for field in data_dtype.names or ():
        sub = data_dtype[field]
        if fmt != "hdf5" and (sub.shape or sub.names):
            problems.append(
                f"field {field!r} has dtype {sub}; {fmt} files take plain fields only (give "
                "waveforms as data_length, one plain field per channel)"
            )
            continue
        if fmt != "hdf5" and field in metadata_names:
            problems.append(
                f"field {field!r} has the name of a metadata column "
                f"({', '.join(METADATA_DTYPE.names or ())}); rename it (e.g. '{field}_value')"
            )
        for leaf, dt in leaves(sub, field):
            if dt.kind not in kinds or (fmt == "root" and dt.kind == "f" and dt.itemsize == 2):
                hint = " (use a byte string field 'S<n>')" if dt.kind == "U" else ""
                problems.append(
                    f"field {leaf!r} has dtype {dt}, which {fmt} files do not store{hint}; "
                    "use booleans, integers, floats or byte strings"
                )
    return problems


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


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


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _batch(
    metadata: Any, data: Any, data_dtype: np.dtype, data_length: int, where: Path
) -> tuple[np.ndarray, np.ndarray]:
    """``(metadata, data)`` as arrays of shapes ``(k,)`` and ``(k, data_length)``."""
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


def _contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` as a C-contiguous array (a copy unless it is one).

    The events of a ``read_batch`` are rows of a record array: each row is contiguous, the
    rows are not. numpy copies such structured arrays element by element; they are copied
    row by row as bytes here instead (several times faster for large events).
    """
    if a.flags.c_contiguous:
        return a
    rows = a.reshape(len(a), -1) if a.ndim == 1 else a
    if a.dtype.names and rows.ndim == 2 and rows.strides[1] in (a.dtype.itemsize, 0):
        try:
            raw = np.ascontiguousarray(rows.view(np.uint8))
        except ValueError:  # a layout numpy cannot view as bytes
            return np.ascontiguousarray(a)
        return raw.view(a.dtype).reshape(a.shape)
    return np.ascontiguousarray(a)


class _Writer:
    """Common part of the writers: layout, event count, context manager."""

    fmt = ""

    def __init__(self, path: str | os.PathLike[str], data_dtype: Any, data_length: int) -> None:
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

    def __len__(self) -> int:
        """The number of events written (including pending ones)."""
        return self.count

    @property
    def closed(self) -> bool:
        """Whether the writer was closed."""
        return self._closed

    def write(self, metadata: Any, data: Any) -> None:
        """Writes ``k`` events: metadata ``(k,)`` records, data ``(k, data_length)``."""
        raise NotImplementedError

    def flush(self) -> None:
        """Hands everything written so far to the file (see the class for what that means)."""
        raise NotImplementedError

    def close(self) -> None:
        """Writes what is pending and closes the file (idempotent)."""
        raise NotImplementedError

    def __enter__(self) -> _Writer:
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


def _hdf5_chunks(data_dtype: np.dtype, data_length: int) -> tuple[int, int]:
    """Chunk shape of the ``data`` dataset: about ``_CHUNK_BYTES``, whole events if they fit."""
    item = max(1, data_dtype.itemsize)
    cols = data_length if data_length * item <= _CHUNK_BYTES else max(1, _CHUNK_BYTES // item)
    rows = max(1, _CHUNK_BYTES // (cols * item))
    return rows, cols


class Hdf5Writer(_Writer):
    """Writes events to an HDF5 file (datasets ``data`` and ``metadata``, see the module).

    The file is written in SWMR mode: other processes read it while it grows with
    ``h5py.File(path, "r", swmr=True)`` (call ``dataset.refresh()`` to see new events; the
    complete events are the first ``len(metadata)``). :meth:`write` hands each batch to the
    HDF5 library (small batches collected into blocks of 1 MiB first), :meth:`flush` puts
    everything on the file (readers see it, and a crash keeps it). A file whose writer died
    opens with ``swmr=True``; :func:`recover_hdf5` makes it a plain file again. :meth:`close`
    leaves a plain HDF5 file.

    Args:
        path: The file; created, never overwritten (``FileExistsError`` if it exists).
        data_dtype: Structured dtype of the data.
        data_length: Elements per event.
        attrs: Root attributes to add (strings or numbers), e.g. ``buffer``, ``run_start``,
            ``setup_yaml``; ``mimocorb2_version``, ``data_length`` and ``created`` are set.
        compression: None (default), ``gzip`` or ``lzf``.
        compression_level: gzip level (0..9).
        swmr: Write in SWMR mode (default True).

    Raises:
        MissingExtraError: If h5py is not installed.
        FileExistsError: If the file exists.
        ValueError: For fields HDF5 cannot store.
    """

    fmt = "hdf5"

    def __init__(
        self,
        path: str | os.PathLike[str],
        data_dtype: Any,
        data_length: int,
        *,
        attrs: Mapping[str, Any] | None = None,
        compression: str | None = None,
        compression_level: int | None = None,
        swmr: bool = True,
    ) -> None:
        """Creates the file, its datasets and attributes, then starts SWMR writing."""
        super().__init__(path, data_dtype, data_length)
        h5py = require("hdf5", "writing HDF5 files")
        claim(self.path)
        try:
            self._file = h5py.File(
                self.path, "w", libver=_HDF5_LIBVER, rdcc_nbytes=_CHUNK_CACHE_BYTES
            )
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        try:
            codec = None if compression in (None, "none") else compression
            level = compression_level if codec == "gzip" else None
            rows, cols = _hdf5_chunks(self.data_dtype, self.data_length)
            self._data = self._file.create_dataset(
                "data",
                shape=(0, self.data_length),
                maxshape=(None, self.data_length),
                dtype=self.data_dtype,
                chunks=(rows, cols),
                compression=codec,
                compression_opts=level,
            )
            self._meta = self._file.create_dataset(
                "metadata",
                shape=(0,),
                maxshape=(None,),
                dtype=METADATA_DTYPE,
                chunks=(max(1, _CHUNK_BYTES // METADATA_DTYPE.itemsize),),
                compression=codec,
                compression_opts=level,
            )
            info: dict[str, Any] = {"buffer": "", "run_start": "", "setup_yaml": ""}
            info.update(attrs or {})
            info.update(
                mimocorb2_version=__version__, data_length=self.data_length, created=_now_iso()
            )
            for key, value in info.items():
                self._file.attrs[key] = "" if value is None else value
            self._file.flush()
            if swmr:
                self._file.swmr_mode = True
        except BaseException:
            self._file.close()
            raise
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_bytes = 0
        self._written = 0
        self._scratch = np.empty(0, np.uint8)

    def write(self, metadata: Any, data: Any) -> None:
        """Appends ``k`` events; small batches are collected and handed over in 1 MiB blocks."""
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        metadata, data = _batch(metadata, data, self.data_dtype, self.data_length, self.path)
        k = len(data)
        if not k:
            return
        self.count += k
        if not self._pending and data.nbytes >= _HDF5_WRITE_BYTES:
            self._append(_contiguous(metadata), self._staged(data))
            return
        self._pending.append((_copy(metadata), _copy(data)))
        self._pending_bytes += data.nbytes + metadata.nbytes
        if self._pending_bytes >= _HDF5_WRITE_BYTES:
            self._write_pending()

    def _staged(self, data: np.ndarray) -> np.ndarray:
        """``data`` as a C-contiguous array, copied into a reused buffer if it is not one."""
        if data.flags.c_contiguous:
            return data
        try:
            raw = data.view(np.uint8)  # rows of a record array: each row is contiguous
        except ValueError:
            return np.ascontiguousarray(data)
        if self._scratch.size < raw.size:
            self._scratch = np.empty(raw.size, np.uint8)
        out = self._scratch[: raw.size].reshape(raw.shape)
        np.copyto(out, raw)
        return out.view(data.dtype).reshape(data.shape)

    def _write_pending(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._pending_bytes = 0
        if len(pending) == 1:
            self._append(*pending[0])
        else:
            self._append(
                np.concatenate([m for m, _ in pending]), np.concatenate([d for _, d in pending])
            )

    def _append(self, metadata: np.ndarray, data: np.ndarray) -> None:
        """Writes contiguous events to the datasets (data first, then their metadata)."""
        n, k = self._written, len(data)
        self._data.resize(n + k, axis=0)
        self._data.write_direct(data, dest_sel=np.s_[n : n + k])
        self._meta.resize(n + k, axis=0)
        self._meta.write_direct(metadata, dest_sel=np.s_[n : n + k])
        self._written = n + k

    def flush(self) -> None:
        """Writes everything to the file: SWMR readers see it, and it survives a crash."""
        if not self._closed:
            self._write_pending()
            self._file.flush()

    def close(self) -> None:
        """Writes what is pending and closes the file (it is then a plain HDF5 file)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._write_pending()
        finally:
            self._file.close()


def _copy(a: np.ndarray) -> np.ndarray:
    """A contiguous copy of ``a`` that the caller cannot change any more."""
    out = _contiguous(a)
    return out.copy() if out is a else out


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


class ParquetWriter(_Writer):
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
        group_bytes: int = GROUP_BYTES,
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
        fields = [pa.field(n, _arrow_type(pa, METADATA_DTYPE[n])) for n in METADATA_DTYPE.names]
        for name in self.data_dtype.names or ():
            value_type = _arrow_type(pa, self.data_dtype[name])
            if self.data_length > 1:
                value_type = pa.list_(value_type, self.data_length)
            fields.append(pa.field(name, value_type, nullable=False))
        info = {k: v for k, v in (attrs or {}).items() if k != "setup_yaml"}
        info.update(
            mimocorb2_version=__version__,
            data_dtype=np.lib.format.dtype_to_descr(self.data_dtype),
            data_length=self.data_length,
            created=_now_iso(),
        )
        meta = {b"mimocorb2": json.dumps(info, default=str).encode()}
        setup_yaml = (attrs or {}).get("setup_yaml")
        if setup_yaml:
            meta[b"setup_yaml"] = str(setup_yaml).encode()
        self.schema = pa.schema(fields, metadata=meta)
        self.part_interval = part_interval
        self.group_bytes = int(group_bytes)
        self.parts: list[Path] = []
        self._pending: list[Any] = []
        self._pending_bytes = 0
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

    def write(self, metadata: Any, data: Any) -> None:
        """Converts ``k`` events to Arrow (a copy); writes a row group if enough are pending."""
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        metadata, data = _batch(metadata, data, self.data_dtype, self.data_length, self.path)
        if not len(data):
            return
        batch = self._pa.RecordBatch.from_arrays(self._columns(metadata, data), schema=self.schema)
        self._pending.append(batch)
        self._pending_bytes += data.nbytes + metadata.nbytes
        self.count += len(data)
        if self._pending_bytes >= self.group_bytes:
            self._write_group()

    def _write_group(self) -> None:
        if not self._pending:
            return
        table = self._pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending = []
        self._pending_bytes = 0
        if self._writer is None:  # parts: open the next part
            k = len(self.parts)
            self._part_path = self.path / f".part-{k:05d}.parquet.inprogress"
            self._open(self._part_path)
            self._part_started = time.monotonic()
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

    def flush(self) -> None:
        """Writes the pending events as a row group; closes a part older than part_interval."""
        if self._closed:
            return
        self._write_group()
        if (
            self.part_interval is not None
            and self._writer is not None
            and time.monotonic() - self._part_started >= self.part_interval
        ):
            self._close_part()

    def close(self) -> None:
        """Writes the pending events and the footer (of the last part)."""
        if self._closed:
            return
        try:
            self._write_group()
        finally:
            self._closed = True
            if self.part_interval is None:
                if self._writer is not None:
                    self._writer.close()
            else:
                self._close_part()


def _gather(out: np.ndarray, parts: list[np.ndarray]) -> None:
    """Copies ``parts`` one after the other into ``out`` (converting the byte order)."""
    start = 0
    for part in parts:
        out[start : start + len(part)] = part
        start += len(part)


def _root_compression(uproot: ModuleType, name: str | None, level: int | None) -> Any:
    if name in (None, "none"):
        return None
    cls = {"lz4": "LZ4", "zlib": "ZLIB", "lzma": "LZMA", "zstd": "ZSTD"}[str(name).lower()]
    codec = getattr(uproot, cls)
    return codec(level) if level is not None else codec(1 if cls == "LZ4" else 4)


class RootWriter(_Writer):
    """Writes events to a ROOT file with uproot: a TTree ``events`` (see the module).

    Events are collected and written as one basket per branch at every :meth:`flush` and
    whenever ``group_bytes`` are pending. uproot updates the tree on the file with every
    basket, so a crash of the writer loses only the events written since the last flush.
    Fixed byte strings ``S<n>`` become ``uint8`` arrays of ``n`` (``arr.view("S<n>")`` turns
    them back). Uncompressed by default (uproot's default, ZLIB, is many times slower).

    Args:
        path: The file; created, never overwritten.
        data_dtype: Structured dtype of the data.
        data_length: Elements per event.
        attrs: Values stored as JSON in the TObjString ``mimocorb2`` (with
            ``mimocorb2_version``, ``data_dtype``, ``data_length``, ``created``); the value of
            ``setup_yaml`` goes into the TObjString ``setup_yaml``; ``buffer`` is also the
            tree's title.
        compression: None (default), ``lz4``, ``zlib``, ``lzma`` or ``zstd``.
        compression_level: Level of the codec (default 1 for lz4, 4 otherwise).
        group_bytes: Pending bytes that trigger a basket before the next flush.

    Raises:
        MissingExtraError: If uproot is not installed.
        FileExistsError: If the file exists.
        ValueError: For fields ROOT files cannot store here.
    """

    fmt = "root"

    def __init__(
        self,
        path: str | os.PathLike[str],
        data_dtype: Any,
        data_length: int,
        *,
        attrs: Mapping[str, Any] | None = None,
        compression: str | None = None,
        compression_level: int | None = None,
        group_bytes: int = GROUP_BYTES,
    ) -> None:
        """Creates the file, its info strings and the tree."""
        super().__init__(path, data_dtype, data_length)
        uproot = require("root", "writing ROOT files")
        codec = _root_compression(uproot, compression, compression_level)
        self.group_bytes = int(group_bytes)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_bytes = 0
        self._shapes: dict[str, tuple[int, ...]] = {}
        types: dict[str, Any] = {n: METADATA_DTYPE[n] for n in METADATA_DTYPE.names or ()}
        for name in self.data_dtype.names or ():
            dt = self.data_dtype[name]
            shape: tuple[int, ...] = () if self.data_length == 1 else (self.data_length,)
            if dt.kind == "S":
                shape, dt = (*shape, dt.itemsize), np.dtype(np.uint8)
            self._shapes[name] = shape
            types[name] = np.dtype((dt.newbyteorder("="), shape)) if shape else dt
        info = {k: v for k, v in (attrs or {}).items() if k != "setup_yaml"}
        info.update(
            mimocorb2_version=__version__,
            data_dtype=np.lib.format.dtype_to_descr(self.data_dtype),
            data_length=self.data_length,
            created=_now_iso(),
        )
        claim(self.path)
        try:
            self._file = uproot.recreate(self.path, compression=codec)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        try:
            self._file["mimocorb2"] = json.dumps(info, default=str)
            setup_yaml = (attrs or {}).get("setup_yaml")
            if setup_yaml:
                self._file["setup_yaml"] = str(setup_yaml)
            self._tree = self._file.mktree(
                "events", types, title=str(info.get("buffer") or ""), initial_basket_capacity=64
            )
        except BaseException:
            self._file.close()
            raise

    def write(self, metadata: Any, data: Any) -> None:
        """Collects ``k`` events; writes baskets if enough are pending."""
        if self._closed:
            raise ValueError(f"{self.path}: the writer is closed")
        metadata, data = _batch(metadata, data, self.data_dtype, self.data_length, self.path)
        if not len(data):
            return
        self._pending.append((metadata, data))
        self._pending_bytes += data.nbytes + metadata.nbytes
        self.count += len(data)
        if self._pending_bytes >= self.group_bytes:
            self._write_baskets()

    def _write_baskets(self) -> None:
        """Gathers each branch from the pending batches, big-endian (as ROOT stores it)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._pending_bytes = 0
        k = sum(len(d) for _, d in pending)
        branches: dict[str, np.ndarray] = {}
        for name in METADATA_DTYPE.names or ():
            column = np.empty(k, METADATA_DTYPE[name].newbyteorder(">"))
            _gather(column, [m[name] for m, _ in pending])
            branches[name] = column
        for name, shape in self._shapes.items():
            dt = self.data_dtype[name]
            column = np.empty((k, self.data_length), dt if dt.kind == "S" else dt.newbyteorder(">"))
            _gather(column, [d[name] for _, d in pending])
            if dt.kind == "S":
                column = column.view(np.uint8)
            branches[name] = column.reshape((k, *shape))
        self._tree.extend(branches)

    def flush(self) -> None:
        """Writes the pending events as one basket per branch (then readable, crash-safe)."""
        if not self._closed:
            self._write_baskets()

    def close(self) -> None:
        """Writes the pending events and closes the file."""
        if self._closed:
            return
        try:
            self._write_baskets()
        finally:
            self._closed = True
            self._file.close()


def open_writer(
    fmt: str, path: str | os.PathLike[str], data_dtype: Any, data_length: int, **options: Any
) -> _Writer:
    """Creates the writer of ``fmt`` (``hdf5``, ``parquet``, ``root``) for a new file."""
    cls = {"hdf5": Hdf5Writer, "parquet": ParquetWriter, "root": RootWriter}[fmt]
    return cls(path, data_dtype, data_length, **options)


# --------------------------------------------------------------------------------------------
# HDF5 recovery
# --------------------------------------------------------------------------------------------

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _lookup3(data: bytes) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` (initval 0): HDF5's metadata checksum."""
    mask = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & mask

    n = len(data)
    a = b = c = (0xDEADBEEF + n) & mask
    if n == 0:
        return c
    padded = data + bytes(-n % 12 or 0)
    blocks = (n - 1) // 12  # every block but the last goes through mix
    for i in range(blocks):
        x, y, z = struct.unpack_from("<3I", padded, 12 * i)
        a, b, c = (a + x) & mask, (b + y) & mask, (c + z) & mask
        a = (a - c) & mask
        a ^= rot(c, 4)
        c = (c + b) & mask
        b = (b - a) & mask
        b ^= rot(a, 6)
        a = (a + c) & mask
        c = (c - b) & mask
        c ^= rot(b, 8)
        b = (b + a) & mask
        a = (a - c) & mask
        a ^= rot(c, 16)
        c = (c + b) & mask
        b = (b - a) & mask
        b ^= rot(a, 19)
        a = (a + c) & mask
        c = (c - b) & mask
        c ^= rot(b, 4)
        b = (b + a) & mask
    x, y, z = struct.unpack_from("<3I", padded, 12 * blocks)
    a, b, c = (a + x) & mask, (b + y) & mask, (c + z) & mask
    c ^= b
    c = (c - rot(b, 14)) & mask
    a ^= c
    a = (a - rot(c, 11)) & mask
    b ^= a
    b = (b - rot(a, 25)) & mask
    c ^= b
    c = (c - rot(b, 16)) & mask
    a ^= c
    a = (a - rot(c, 4)) & mask
    b ^= a
    b = (b - rot(a, 14)) & mask
    c ^= b
    c = (c - rot(b, 24)) & mask
    return c


def _clear_superblock_flags(path: Path) -> bool:
    """Clears the "open for writing" flags of a version 2/3 superblock (as ``h5clear -s``).

    Also moves the end-of-allocation address to the end of the file if it lies before it
    (as ``h5clear --increment``). Returns whether the file was changed.

    Raises:
        ValueError: If the file has no version 2/3 superblock with a valid checksum.
    """
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset < size:
            f.seek(offset)
            if f.read(8) == _HDF5_SIGNATURE:
                break
            offset = 512 if offset == 0 else offset * 2
        else:
            raise ValueError(f"{path}: not an HDF5 file (no superblock signature)")
        f.seek(offset)
        head = f.read(12)
        version, width = head[8], head[9]
        if version not in (2, 3) or width not in (4, 8):
            raise ValueError(
                f"{path}: superblock version {version} (offsets of {width} bytes); only files "
                "written in the HDF5 1.10+ format (as by exporters.hdf5) can be recovered here"
            )
        length = 12 + 4 * width
        f.seek(offset)
        block = bytearray(f.read(length + 4))
        (stored,) = struct.unpack_from("<I", block, length)
        if _lookup3(bytes(block[:length])) != stored:
            raise ValueError(f"{path}: the superblock checksum does not match; not recovered")
        eoa_at = 12 + 2 * width
        eoa = int.from_bytes(block[eoa_at : eoa_at + width], "little")
        changed = False
        if block[11] != 0:
            block[11] = 0
            changed = True
        if eoa < size - offset:
            block[eoa_at : eoa_at + width] = (size - offset).to_bytes(width, "little")
            changed = True
        if changed:
            struct.pack_into("<I", block, length, _lookup3(bytes(block[:length])))
            f.seek(offset)
            f.write(block)
            f.flush()
            os.fsync(f.fileno())
        return changed


def recover_hdf5(path: str | os.PathLike[str]) -> int:
    """Makes an HDF5 file left by a crashed ``exporters.hdf5`` writer a plain file again.

    The file of a writer that died still says "open for SWMR writing": h5py opens it only with
    ``swmr=True``, other programs (HDFView, MATLAB) not at all. This clears that mark (like
    HDF5's ``h5clear -s --increment``) and cuts ``data`` and ``metadata`` to their common
    length, the events that were flushed. Use it only when the writer is gone: a running
    writer would corrupt the file.

    Args:
        path: The ``.h5`` file.

    Returns:
        The number of events in the file.

    Raises:
        MissingExtraError: If h5py is not installed.
        ValueError: If the file is not an HDF5 file in the 1.10 format.
    """
    h5py = require("hdf5", "recovering HDF5 files")
    path = Path(path)
    _clear_superblock_flags(path)
    with h5py.File(path, "r+") as f:
        if "data" not in f or "metadata" not in f:
            return 0
        n = min(len(f["data"]), len(f["metadata"]))
        for name in ("data", "metadata"):
            if len(f[name]) != n:
                f[name].resize(n, axis=0)
        return n


# --------------------------------------------------------------------------------------------
# Converters
# --------------------------------------------------------------------------------------------


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

    The layouts are those of the exporters (see the module); the HDF5 attributes and the
    info of the other formats hold the buffer name, ``run_start`` (the ``.mimo`` file's
    creation time), ``converted_from`` and, when the ``.mimo`` file lies in a run directory,
    that run's ``setup.yaml``. CSV needs events of ``data_length`` 1. The caller
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
        for data, metadata in reader.chunks():
            writer.write(metadata, data)
            done += len(data)
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
