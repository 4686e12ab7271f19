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

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2 import _file_formats as _ff
from mimocorb2._csv_file import CsvWriter, _clashing_columns
from mimocorb2._csv_file import _Locked as _Locked  # read by functions._histogram_files
from mimocorb2.functions._export_loop import (
    PendingRows,
    _batch_events,
    _interval,
    _run_guarded,
    export_loop,
)
from mimocorb2.functions._histogram_export import (
    HistogramFiles as _HistogramFiles,  # the name tests use
)
from mimocorb2.functions._histogram_export import (
    histogram_start,
    histogram_update,
    parse_bins,
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
    channels = parse_bins(buffer_io, dtype)
    interval = _interval(buffer_io, "update_interval", 1.0)
    source = buffer_io.buffer_names_in[0]
    files = _HistogramFiles(Path(buffer_io.run_dir) / f"Histograms_{source}")

    def body() -> None:
        pending = PendingRows()

        def count() -> None:
            taken = pending.take()
            if taken is not None:
                for ch in channels:
                    ch.add(taken[1][ch.name])

        def add(metadata: np.ndarray, data: np.ndarray) -> None:
            if pending.add(metadata, data):
                count()

        def update() -> None:
            count()
            histogram_update(files, channels)

        try:
            histogram_start(files, channels, buffer_io)
            export_loop(exporter, interval, add, update)
        finally:
            update()
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
        pending = PendingRows()

        def save() -> None:
            taken = pending.take()
            if taken is not None:
                writer.write(*taken)

        def add(metadata: np.ndarray, data: np.ndarray) -> None:
            if pending.add(metadata, data):
                save()

        try:
            export_loop(exporter, interval, add, save)
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
