"""Prebuilt exporters: ``drain``, ``histogram``, ``csv``, ``hdf5``, ``parquet`` and ``root``.

Use them in a setup with ``function: exporters.<name>`` and no ``file``.

The exporters read their source in batches (:meth:`~mimocorb2.mimo_buffer.BufferReader.read_batch`)
and pass every batch on unchanged to their optional pass-through sinks, like the
:class:`~mimocorb2.worker_templates.Exporter` template does event by event.

Several writers of one output (``number_of_processes > 1``, or two exporters of one buffer
with the same output) never clobber each other: they share the output under an exclusive
file lock (``flock``).

- ``exporters.csv`` appends whole batches of rows under the lock, so rows of several
  processes interleave batch-wise (ordered by ``counter`` within a batch, not across
  processes); the header is written once.
- ``exporters.histogram`` merges: each process adds the counts it collected since its last
  update to the counts in the files, under the lock. The files hold the histogram of every
  event read by any of the writers, i.e. of the whole buffer.

``exporters.hdf5``, ``exporters.parquet`` and ``exporters.root`` write files that physicists
open directly (h5py, pyarrow/pandas/polars, uproot/ROOT); each needs an optional library
(``pip install "mimocorb2[hdf5]"``, ``[parquet]``, ``[root]``, or ``[all]``). Their files are
never shared: each process writes its own (``<name>``, ``<name>_2``, ``<name>_3`` …, as
``data.export`` does). The writers are in :mod:`mimocorb2._file_formats`.
"""

from __future__ import annotations

import contextlib
import csv as _csvlib
import io as _io
import math
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2 import _file_formats as _ff
from mimocorb2._csv_file import CsvWriter, _clashing_columns, _Locked, _quote
from mimocorb2.functions._export_loop import (
    _MAX_PENDING_ROWS,
    _MIN_WAIT,
    _batch_events,
    _interval,
    _PassThrough,
    _run_guarded,
)
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import Exporter, SetupError

__all__ = ["csv", "drain", "hdf5", "histogram", "parquet", "root"]

# ----- shared helpers -----


def _require_single_element(io: BufferIO, function: str) -> np.dtype:
    """The source dtype; SetupError unless the source has data_length 1."""
    buf = io.read[0].buffer
    if buf.data_length != 1:
        raise SetupError(
            io.name,
            f"{function} needs a source with data_length 1 (one value per field and event), "
            f"but source '{buf.name}' has data_length {buf.data_length}; use a buffer of "
            "data_length 1 (e.g. filled by a Processor that extracts the values)",
        )
    return buf.data_dtype


def _create_temp(directory: Path, prefix: str) -> tuple[int, str]:
    """Creates a new temporary file for writing, like ``tempfile.mkstemp``.

    Unlike mkstemp (mode 0600), the file gets the mode of any new file (``0o666 & ~umask``,
    and the directory's default ACL), which it keeps when it replaces its target.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = directory / f"{prefix}{secrets.token_hex(6)}.tmp"
        try:
            return os.open(path, flags, 0o666), str(path)
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary file name in {directory}")


# ----- drain -----


def drain(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Drain buffer.

    Drains all data from the source buffer and does nothing with it.

    Type
        Exporter

    Buffers
        sources
            1
        sinks
            0
        observes
            0

    Examples:
        A worker that consumes the events nobody else needs::

            drain:
              function: exporters.drain
              sources: [unused_buffer]
    """
    exporter = Exporter(buffer_io)
    if exporter.write:
        raise SetupError(
            buffer_io.name,
            f"exporters.drain has no sinks, but the setup gives {buffer_io.buffer_names_out}; "
            "remove the sinks (use misc.copy to duplicate a stream)",
        )
    reader = exporter.reader
    max_events = _batch_events(buffer_io)
    n = 0
    while True:
        _, data = reader.read_batch(max_events)
        if data is None:
            break
        n += len(data)
    exporter.logger.info("worker '%s': drained %d events", buffer_io.name, n)


# ----- histogram -----


class _Channel:
    """Configuration and pending (not yet written) counts of one histogram channel."""

    __slots__ = ("max", "min", "name", "nans", "nbins", "overflow", "pending", "underflow")

    def __init__(self, name: str, lo: float, hi: float, nbins: int) -> None:
        self.name = name
        self.min = lo
        self.max = hi
        self.nbins = nbins
        self.pending = np.zeros(nbins, dtype=np.int64)
        self.underflow = 0
        self.overflow = 0
        self.nans = 0

    def add(self, values: np.ndarray) -> None:
        """Counts ``values``: bins ``[e_i, e_i+1)`` (the last one includes ``max``)."""
        values = values.reshape(-1)
        if values.dtype.kind == "b":
            values = values.view(np.uint8)
        counts, _ = np.histogram(values, bins=self.nbins, range=(self.min, self.max))
        self.pending += counts
        if values.dtype.kind == "f":
            self.nans += int(np.count_nonzero(np.isnan(values)))
        self.underflow += int(np.count_nonzero(values < self.min))
        self.overflow += int(np.count_nonzero(values > self.max))

    def key(self) -> tuple[float, float, int]:
        return (self.min, self.max, self.nbins)

    def dirty(self) -> bool:
        return bool(self.underflow or self.overflow or self.pending.any())

    def reset(self) -> None:
        self.pending[:] = 0
        self.underflow = 0
        self.overflow = 0


_INFO_COLUMNS = ("Channel", "Min", "Max", "NBins", "Underflow", "Overflow")


def _parse_bins(io: BufferIO, dtype: np.dtype) -> list[_Channel]:
    """The channels of the ``bins`` config; SetupError with the fix for anything wrong."""
    example = "bins: {<field>: [min, max, number_of_bins]}"
    fields = list(dtype.names or ())
    bins = io.get("bins")
    if not isinstance(bins, dict) or not bins:
        raise SetupError(
            io.name,
            f"exporters.histogram needs the config key '{example}' with at least one of the "
            f"source fields {fields}; got {bins!r}",
        )
    channels = []
    for field, spec in bins.items():
        if field not in fields:
            raise SetupError(
                io.name,
                f"config 'bins' names field {field!r}, which the source "
                f"'{io.buffer_names_in[0]}' does not have; use one of {fields}",
            )
        bad = SetupError(
            io.name,
            f"config 'bins' entry {field!r} must be [min, max, number_of_bins] with finite "
            f"min < max and a positive integer number_of_bins, got {spec!r}",
        )
        if not isinstance(spec, Sequence) or isinstance(spec, str) or len(spec) != 3:
            raise bad
        lo, hi, nbins = spec
        try:
            lo_f, hi_f = float(lo), float(hi)
        except (TypeError, ValueError):
            raise bad from None
        if (
            isinstance(nbins, bool)
            or not isinstance(nbins, int | np.integer | float)
            or int(nbins) != nbins
            or int(nbins) < 1
            or not (math.isfinite(lo_f) and math.isfinite(hi_f) and lo_f < hi_f)
        ):
            raise bad
        if dtype[field].kind not in "biuf":
            raise SetupError(
                io.name,
                f"config 'bins' names field {field!r} of dtype {dtype[field]}, which cannot "
                "be histogrammed; choose a numeric field",
            )
        channels.append(_Channel(str(field), lo_f, hi_f, int(nbins)))
    return channels


class _HistogramFiles:
    """The directory ``Histograms_<buffer>``: ``info.csv`` and one ``<field>.npy`` per channel.

    Every change happens under an exclusive lock of the directory, and every file is replaced
    atomically (temporary file + ``os.replace``), so readers never see a partial file.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.info = directory / "info.csv"
        self._fd = os.open(directory, os.O_RDONLY)

    def close(self) -> None:
        os.close(self._fd)

    def lock(self) -> _Locked:
        return _Locked(self._fd)

    def _replace(self, target: Path, write: Callable[[Any], None], binary: bool) -> None:
        fd, tmp = _create_temp(self.dir, prefix=f".{target.name}.")
        try:
            with open(fd, "wb" if binary else "w", newline="" if not binary else None) as f:
                write(f)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def read_info(self) -> dict[str, list[Any]]:
        """Rows of info.csv by channel: [min, max, nbins, underflow, overflow]."""
        try:
            text = self.info.read_text()
        except FileNotFoundError:
            return {}
        rows = list(_csvlib.reader(_io.StringIO(text)))
        out: dict[str, list[Any]] = {}
        for row in rows[1:]:
            if len(row) == len(_INFO_COLUMNS):
                out[row[0]] = [float(row[1]), float(row[2]), int(row[3]), int(row[4]), int(row[5])]
        return out

    def write_info(self, info: dict[str, list[Any]]) -> None:
        lines = [",".join(_INFO_COLUMNS)]
        for name, (lo, hi, nbins, under, over) in info.items():
            lines.append(f"{_quote(name)},{lo!r},{hi!r},{nbins},{under},{over}")
        text = "\n".join(lines) + "\n"
        self._replace(self.info, lambda f: f.write(text), binary=False)

    def npy(self, name: str) -> Path:
        return self.dir / f"{name}.npy"

    def load(self, name: str, nbins: int) -> np.ndarray:
        try:
            counts = np.load(self.npy(name))
        except (FileNotFoundError, ValueError, OSError):
            return np.zeros(nbins, dtype=np.int64)
        if counts.shape != (nbins,):
            return np.zeros(nbins, dtype=np.int64)
        return counts.astype(np.int64, copy=False)

    def save(self, name: str, counts: np.ndarray) -> None:
        self._replace(self.npy(name), lambda f: np.save(f, counts), binary=True)


def _histogram_start(files: _HistogramFiles, channels: list[_Channel], io: BufferIO) -> None:
    """Registers the channels in info.csv (zero counts); SetupError on conflicting bins."""
    with files.lock():
        info = files.read_info()
        changed = False
        for ch in channels:
            row = info.get(ch.name)
            if row is None:
                info[ch.name] = [ch.min, ch.max, ch.nbins, 0, 0]
                files.save(ch.name, np.zeros(ch.nbins, dtype=np.int64))
                changed = True
            elif tuple(row[:3]) != ch.key():
                raise SetupError(
                    io.name,
                    f"another histogram exporter of buffer '{io.buffer_names_in[0]}' already "
                    f"writes field {ch.name!r} with bins [{row[0]}, {row[1]}, {row[2]}] to "
                    f"{files.dir}; exporters of one buffer share these files, so use the same "
                    f"bins (this worker has [{ch.min}, {ch.max}, {ch.nbins}])",
                )
        if changed or not files.info.exists():
            files.write_info(info)


def _histogram_update(files: _HistogramFiles, channels: list[_Channel]) -> None:
    """Adds the pending counts to the files (under the lock) and clears them."""
    dirty = [ch for ch in channels if ch.dirty()]
    if not dirty:
        return
    with files.lock():
        info = files.read_info()
        for ch in dirty:
            row = info.get(ch.name)
            if row is None or tuple(row[:3]) != ch.key():  # file removed or rewritten
                row = [ch.min, ch.max, ch.nbins, 0, 0]
                counts = np.zeros(ch.nbins, dtype=np.int64)
            else:
                counts = files.load(ch.name, ch.nbins)
            files.save(ch.name, counts + ch.pending)
            row[3] += ch.underflow
            row[4] += ch.overflow
            info[ch.name] = row
            ch.reset()
        files.write_info(info)


def histogram(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Export data as a histogram.

    Saves histograms of the data in the source buffer to npy files in the run_dir for each
    field in the source buffer. The histograms are saved in a directory named
    "Histograms_<source_buffer_name>". The directory contains a file named "info.csv" with the
    histogram configuration and individual npy files for each channel. It is possible to
    visualize the histograms using the *visualize_histogram* function
    (``visualizers.histogram``).

    ``info.csv`` has the columns ``Channel, Min, Max, NBins, Underflow, Overflow``; each
    ``<field>.npy`` holds ``NBins`` int64 counts. The bin edges are
    ``np.linspace(min, max, nbins + 1)``: bin ``i`` counts ``edge[i] <= x < edge[i+1]``, the last
    bin also ``x == max`` (as ``np.histogram``). Values below ``min`` count as underflow, above
    ``max`` as overflow; NaN values are not counted (their number is logged). The files are
    rewritten every ``update_interval`` and at the end, each atomically (a reader never sees a
    partial file).

    Several processes of this worker, and several histogram exporters of the same buffer,
    share the files: each adds its counts under a file lock, so the files hold the histogram
    of every event of the buffer. They must use the same bins for a field they share.

    Type
        Exporter

    Buffers
        sources
            1 with data_length = 1
        sinks
            Pass through data without modification to all sinks. Must share same dtype as source
            buffer.
        observes
            0

    Configs
        update_interval : int, optional (default=1)
            Interval in seconds to save the histogram data to files.
        bins : dict
            Dictionary where keys are channel names and values are tuples of
            (min, max, number_of_bins). Channels must be present in the source buffer data.

    Examples:
        Setup entry::

            histogram:
              function: exporters.histogram
              sources: [pulse_heights]
              config:
                update_interval: 1
                bins: {height: [0.0, 1.0, 100]}

        Reading the result:

        >>> import numpy as np
        >>> counts = np.load('run_directory/Histograms_pulse_heights/height.npy')
        >>> edges = np.linspace(0.0, 1.0, 100 + 1)
    """
    exporter = Exporter(buffer_io)
    dtype = _require_single_element(buffer_io, "exporters.histogram")
    channels = _parse_bins(buffer_io, dtype)
    interval = _interval(buffer_io, "update_interval", 1.0)
    source = buffer_io.buffer_names_in[0]
    files = _HistogramFiles(Path(buffer_io.run_dir) / f"Histograms_{source}")

    def body() -> None:
        pending: list[np.ndarray] = []
        n_pending = 0
        next_update = time.monotonic() + interval

        def wait() -> float:
            return max(_MIN_WAIT, next_update - time.monotonic())

        def count() -> None:
            nonlocal n_pending
            if pending:
                values = np.concatenate(pending) if len(pending) > 1 else pending[0]
                for ch in channels:
                    ch.add(values[ch.name])
                pending.clear()
                n_pending = 0

        try:
            _histogram_start(files, channels, buffer_io)
            for _, data in _PassThrough(exporter).batches(wait):
                if data is not None:
                    pending.append(data.reshape(-1).copy())  # compact, frees the batch
                    n_pending += len(data)
                    if n_pending >= _MAX_PENDING_ROWS:
                        count()
                if time.monotonic() >= next_update:
                    count()
                    _histogram_update(files, channels)
                    next_update = time.monotonic() + interval
        finally:
            count()
            _histogram_update(files, channels)
            nans = {ch.name: ch.nans for ch in channels if ch.nans}
            if nans:
                exporter.logger.warning(
                    "worker '%s': NaN values not counted in the histograms: %s",
                    buffer_io.name,
                    nans,
                )
            files.close()

    _run_guarded(buffer_io, body)


# ----- csv -----


def _csv_path(io: BufferIO) -> Path:
    source = io.buffer_names_in[0]
    filename = io.get("filename", source)
    if filename is None:
        filename = source
    name = str(filename)
    if not name or Path(name).name != name or name in (".", ".."):
        raise SetupError(
            io.name,
            f"config 'filename' must be a plain file name (the file goes to the run "
            f"directory), got {filename!r}",
        )
    if not name.endswith(".csv"):
        name += ".csv"
    return Path(io.run_dir) / name


def csv(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Save data from the source buffer to a CSV file.

    Saves data from the source buffer to a CSV file in the run_dir. Each field in the source
    buffer is saved as a column in the CSV file.

    The columns are ``counter, timestamp, deadtime`` (the event metadata) followed by the data
    fields, each written in its own type: integers as integers (exact, also above 2**53),
    float64 with the shortest text that reads back to the same value, float32 likewise for its
    precision. The header is written once; rows are collected in memory and appended every
    ``save_interval`` seconds and at the end, so after a crash the file keeps every row written
    until then.

    Several processes of this worker (or several csv exporters with the same file name) append
    to the same file under a file lock, each batch of rows in one piece: the file never mixes
    partial lines, but rows of different processes are not sorted by ``counter``. Writers of
    one file must write the same columns. A data field must not be named like a metadata
    column (``counter``, ``timestamp``, ``deadtime``): that is a setup error (rename the field).

    Type
        Exporter

    Buffers
        sources
            1 with data_length = 1
        sinks
            Pass through data without modification to all sinks. Must share same dtype as source
            buffer.
        observes
            0

    Configs
        save_interval : int, optional (default=1)
            Interval in seconds to save the CSV file.
        filename : str, optional (default='buffer_name')
            Name of the CSV file to save the data to. The file will be saved in the run_dir
            (``.csv`` is appended unless the name ends with it).

    Examples:
        >>> import numpy as np
        >>> import pandas as pd
        >>> print(pd.read_csv('run_directory/exporter_name.csv'))
    """
    exporter = Exporter(buffer_io)
    dtype = _require_single_element(buffer_io, "exporters.csv")
    metadata_dtype = exporter.metadata_example.dtype
    clash = _clashing_columns(metadata_dtype, dtype)
    if clash:
        names = ", ".join(map(repr, clash))
        raise SetupError(
            buffer_io.name,
            f"exporters.csv cannot write the data field {names} of source "
            f"'{buffer_io.buffer_names_in[0]}': the CSV columns are the metadata "
            f"({', '.join(metadata_dtype.names or ())}) followed by the data fields, so {names} "
            f"would be a repeated column name; rename the field in the buffer's data_dtype "
            f"(e.g. '{clash[0]}_value')",
        )
    interval = _interval(buffer_io, "save_interval", 1.0)
    path = _csv_path(buffer_io)
    try:
        writer = CsvWriter(path, metadata_dtype, dtype)
    except ValueError as e:
        raise SetupError(
            buffer_io.name,
            f"cannot write source '{buffer_io.buffer_names_in[0]}' to {path}: {e}; "
            "give this worker its own 'filename' or use a source with scalar fields",
        ) from None

    def body() -> None:
        pending_meta: list[np.ndarray] = []
        pending_data: list[np.ndarray] = []
        n_pending = 0
        next_save = time.monotonic() + interval

        def wait() -> float:
            return max(_MIN_WAIT, next_save - time.monotonic())

        def save() -> None:
            nonlocal n_pending
            if not pending_data:
                return
            if len(pending_data) == 1:
                meta, data = pending_meta[0], pending_data[0]
            else:
                meta, data = np.concatenate(pending_meta), np.concatenate(pending_data)
            pending_meta.clear()
            pending_data.clear()
            n_pending = 0
            writer.write(meta, data)

        try:
            for metadata, data in _PassThrough(exporter).batches(wait):
                if data is not None:  # compact copies (free the batch arrays)
                    pending_meta.append(metadata.copy())
                    pending_data.append(data.reshape(-1).copy())
                    n_pending += len(data)
                if n_pending >= _MAX_PENDING_ROWS or time.monotonic() >= next_save:
                    save()
                    next_save = time.monotonic() + interval
        finally:
            try:
                save()
            finally:
                writer.close()

    _run_guarded(buffer_io, body)


# ----- hdf5, parquet, root -----


def _file_exporter(buffer_io: BufferIO, fmt: str) -> None:
    from mimocorb2.functions import _file_exporters  # imports the format's library on use

    _file_exporters.run(buffer_io, fmt)


def hdf5(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Save the events of the source buffer to an HDF5 file.

    Writes ``<buffer>.h5`` in the run directory (config ``filename``) with two datasets,
    chunked and resizable along the first axis:

    - ``data``: the buffer's structured ``data_dtype`` (an HDF5 compound type), shape
      ``(n, data_length)``;
    - ``metadata``: ``counter`` (int64), ``timestamp`` (float64, seconds since the epoch) and
      ``deadtime`` (float64), shape ``(n,)``.

    Root attributes: ``setup_yaml`` (the run's effective setup), ``buffer``,
    ``mimocorb2_version``, ``run_start`` (ISO 8601, UTC), ``data_length``, ``created``,
    ``worker`` and ``pid``.

    The file is written in SWMR mode: events reach the file at least every
    ``flush_interval`` seconds, and another process can read it meanwhile with
    ``h5py.File(path, "r", swmr=True)`` (``dataset.refresh()`` shows new events; the complete
    events are the first ``len(metadata)``). A file whose writer crashed holds every event
    flushed before; it opens with ``swmr=True``, and ``mimocorb2 recover FILE.h5`` (or
    :func:`mimocorb2.mimo_file.recover_hdf5`) makes it a plain HDF5 file for other programs.
    After a normal end it is a plain HDF5 file (HDF5 1.10 format).

    Several processes of this worker write one file each: the first ``<name>.h5``, the
    others ``<name>_2.h5``, ``<name>_3.h5`` … (HDF5 has a single writer per file).

    Needs h5py: ``pip install "mimocorb2[hdf5]"`` (without it the setup is refused).

    Type
        Exporter

    Buffers
        sources
            1 (fields of booleans, integers, floats, complex numbers, byte strings ``S<n>``)
        sinks
            Pass through data without modification to all sinks. Must share same dtype as
            source buffer.
        observes
            0

    Configs
        filename : str, optional (default=source buffer name)
            Name of the file in the run directory (``.h5`` is appended unless the name ends
            in ``.h5`` or ``.hdf5``).
        flush_interval : float, optional (default=1)
            Longest time in seconds before written events are on the file.
        compression : str, optional (default=none)
            ``none``, ``gzip`` or ``lzf``.
        compression_level : int, optional
            gzip level 0..9.

    Examples:
        >>> import h5py
        >>> with h5py.File("run_directory/waveforms.h5", "r") as f:
        ...     data, metadata = f["data"][:], f["metadata"][:]
        ...     ch1 = data["ch1"]            # shape (n, data_length)
    """
    _file_exporter(buffer_io, "hdf5")


def parquet(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Save the events of the source buffer to a Parquet file.

    Writes ``<buffer>.parquet`` in the run directory (config ``filename``): one row per event,
    the columns ``counter`` (int64), ``timestamp`` (float64), ``deadtime`` (float64) and one per
    data field, a scalar column for ``data_length`` 1 and a fixed-size list column of
    ``data_length`` values otherwise (byte strings ``S<n>`` as fixed-size binary). Events are
    written as one row group every ``flush_interval`` seconds (or every 64 MiB), uncompressed
    by default. The schema metadata holds ``mimocorb2`` (JSON: buffer, mimocorb2 version,
    run start, data dtype and length, worker) and ``setup_yaml`` (the run's effective setup).

    A Parquet file becomes readable when it is closed at the end of the run: if the worker
    crashes, the file is lost. With ``part_interval`` the output is a directory
    ``<buffer>.parquet/`` of part files ``part-00000.parquet``, ``part-00001.parquet`` …, one
    closed every ``part_interval`` seconds (the open one is hidden while written), so a crash
    loses at most the last part; ``pandas.read_parquet`` and ``pyarrow.parquet.read_table``
    read the directory as one table.

    Several processes of this worker write one file (or directory) each: ``<name>.parquet``,
    ``<name>_2.parquet``, ``<name>_3.parquet`` …

    Needs pyarrow: ``pip install "mimocorb2[parquet]"`` (without it the setup is refused).

    Type
        Exporter

    Buffers
        sources
            1 (plain fields of booleans, integers, floats, byte strings ``S<n>``; not named
            counter, timestamp or deadtime)
        sinks
            Pass through data without modification to all sinks. Must share same dtype as
            source buffer.
        observes
            0

    Configs
        filename : str, optional (default=source buffer name)
            Name of the file in the run directory (``.parquet`` is appended unless present).
        flush_interval : float, optional (default=1)
            Seconds between row groups.
        part_interval : float, optional (default=None: one file)
            Seconds after which a part file is closed (then the output is a directory).
        compression : str, optional (default=none)
            ``none``, ``snappy``, ``gzip``, ``brotli``, ``zstd`` or ``lz4``.
        compression_level : int, optional
            Level of the codec.

    Examples:
        >>> import pandas as pd
        >>> events = pd.read_parquet("run_directory/pulse_heights.parquet")
    """
    _file_exporter(buffer_io, "parquet")


def root(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Save the events of the source buffer to a ROOT file.

    Writes ``<buffer>.root`` in the run directory (config ``filename``) with uproot (no ROOT
    installation needed): a TTree ``events`` with the branches ``counter`` (Long64_t),
    ``timestamp`` and ``deadtime`` (Double_t) and one per data field, a scalar for
    ``data_length`` 1 and a fixed-length array ``[data_length]`` otherwise; byte strings
    ``S<n>`` become ``uint8`` arrays of ``n`` (``.view("S<n>")`` turns them back). The
    TObjStrings ``mimocorb2`` (JSON: buffer, mimocorb2 version, run start, data dtype and
    length, worker) and ``setup_yaml`` (the run's effective setup) describe the run.

    Events are written as one basket per branch every ``flush_interval`` seconds (or every
    64 MiB); the tree on the file is updated with each basket, so a crash of the worker loses
    only the events of the last ``flush_interval``. Uncompressed by default (uproot's own
    default, ZLIB, is many times slower); ``compression: lz4`` is fast.

    Several processes of this worker write one file each: ``<name>.root``, ``<name>_2.root``,
    ``<name>_3.root`` …

    Needs uproot: ``pip install "mimocorb2[root]"`` (without it the setup is refused).

    Type
        Exporter

    Buffers
        sources
            1 (plain fields of booleans, integers, float32/float64, byte strings ``S<n>``;
            not named counter, timestamp or deadtime)
        sinks
            Pass through data without modification to all sinks. Must share same dtype as
            source buffer.
        observes
            0

    Configs
        filename : str, optional (default=source buffer name)
            Name of the file in the run directory (``.root`` is appended unless present).
        flush_interval : float, optional (default=1)
            Longest time in seconds before written events are on the file.
        compression : str, optional (default=none)
            ``none``, ``lz4``, ``zlib``, ``lzma`` or ``zstd``.
        compression_level : int, optional
            Level of the codec (default 1 for lz4, else 4).

    Examples:
        >>> import uproot
        >>> tree = uproot.open("run_directory/spectrum.root")["events"]
        >>> arrays = tree.arrays(library="np")
    """
    _file_exporter(buffer_io, "root")


def _validator(fmt: str) -> Callable[[dict[str, Any], Any, Any], list[str]]:
    def validate_config(config: dict[str, Any], sink_dtype: Any, data_length: Any) -> list[str]:
        """Problems of the configuration, including a missing library (checked at setup)."""
        return _ff.config_problems(fmt, config, f"exporters.{fmt}")

    return validate_config


hdf5.validate_config = _validator("hdf5")  # type: ignore[attr-defined]
parquet.validate_config = _validator("parquet")  # type: ignore[attr-defined]
root.validate_config = _validator("root")  # type: ignore[attr-defined]
