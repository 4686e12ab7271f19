"""Prebuilt functions for ``.mimo`` files: export a buffer, replay a file into a buffer.

``data.export`` writes a buffer's events to ``<buffer>.mimo`` in the run directory;
``data.simulate_importer`` and ``data.clocked_importer`` feed such a file back into a setup,
with the original spacing of the events or at a chosen rate. The file format is described in
:mod:`mimocorb2.mimo_file`.
"""

from __future__ import annotations

import glob
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2.mimo_file import MimoFileError, MimoReader, MimoWriter
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import Exporter, Importer, SetupError

__all__ = ["clocked_importer", "export", "simulate_importer"]

_DISTRIBUTIONS = ("uniform", "poisson")
_WAIT_SLICE = 0.1  # seconds: longest sleep between checks for a shut-down sink
_MAX_FILES = 10_000


def export(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Export data to a mimo file.

    Exports data from a source buffer to a mimo file. This function is useful for saving data
    streams within the mimoCoRB2 framework.

    The file is ``<source buffer name>.mimo`` in the run directory (format: see
    :mod:`mimocorb2.mimo_file`). Each process of the worker writes its own file: the first to
    start gets ``<name>.mimo``, the others ``<name>_2.mimo``, ``<name>_3.mimo`` … (files are
    created exclusively, so no two processes ever write one file). Events are handed to the
    operating system at least every ``flush_interval`` seconds: if the worker crashes, the
    file stays readable up to then (it has no footer; a partial last record is detected).

    Type
        Exporter

    Buffers
        sources
            1
        sinks
            Pass through data without modification to all sinks. Must share same dtype as
            source buffer.
        observes
            0

    Configs
        flush_interval
            [float, optional (default=1)] Longest time in seconds that written events wait
            in memory before they are handed to the operating system.

    Examples:
        >>> from mimocorb2.mimo_file import MimoReader
        >>> with MimoReader("run_directory/source_buffer_name.mimo") as r:
        ...     data, metadata = r.read_all()
    """
    exporter = Exporter(buffer_io)
    buffer = exporter.io.read[0].buffer
    flush_interval = _positive(exporter, "flush_interval", buffer_io.get("flush_interval", 1.0))
    run_dir = Path(buffer_io.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = _new_file(exporter, run_dir, buffer.name, buffer, flush_interval)
    exporter.logger.info("worker '%s': writing %s", exporter.name, writer.path)
    with writer:
        for data, metadata in exporter:
            writer.write(data, metadata)
    exporter.logger.info(
        "worker '%s': wrote %d events to %s", exporter.name, len(writer), writer.path
    )


def simulate_importer(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Simulate an Importer by inputting data according to the timestamps in a mimo file.

    Imports data from a mimo file and simulates the Importer behavior by yielding data
    according to the timestamps in the file. This may lead to bunches of data if the
    timestamps are not ordered correctly.

    Event ``i`` is written ``timestamp[i] - timestamp[0]`` seconds after the start (events
    whose time has passed follow at once); the metadata is stamped anew by the Importer.

    Type
        Importer

    Buffers
        sources
            0
        sinks
            1 with the same dtype as the data in the mimo file
        observes
            0

    Configs
        filename
            [str] Path to the mimo file to be imported, ``~`` expanded. A relative path
            is taken from the setup file's directory, or else (as in mimoCoRB2) from the
            current directory. It may contain wildcards (``target/run_*/x.mimo``): the
            newest matching file is used.

    Examples:
        >>> # setup.yaml
        >>> # replay: {function: data.simulate_importer, sinks: [waveforms],
        >>> #          config: {filename: target/run_*/waveforms.mimo}}
    """  # noqa: E501 - the summary line is the manual's
    importer = Importer(buffer_io)
    reader = _open_for_sink(importer, buffer_io)
    sink = importer.writer.buffer

    def replay() -> Iterator[np.ndarray | None]:
        with reader:
            start = time.monotonic()
            first: float | None = None
            for data, metadata in reader.chunks():
                times = metadata["timestamp"].astype(np.float64)
                if first is None and len(times):
                    first = float(times[0])
                due = start + (times - first)
                for i in range(len(data)):
                    if not _wait_until(float(due[i]), sink):
                        return
                    yield data[i]
        yield None

    importer(replay)


def clocked_importer(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Simulate an Importer by inputting data at a fixed rate.

    Imports data from a mimo file and simulates the Importer behavior by yielding data at a
    fixed rate. This is useful for testing and simulating data streams in a controlled
    manner. Can be used to input uniform or poisson distributed data.

    With ``uniform`` the events are ``1/rate`` seconds apart; with ``poisson`` the waiting
    times are exponentially distributed with mean ``1/rate`` (a Poisson process). The events
    follow a fixed schedule from the start: when the pipeline falls behind, events follow at
    once until the schedule is met again, so the mean rate is kept.

    Type
        Importer

    Buffers
        sources
            0
        sinks
            1 with the same dtype as the data in the mimo file
        observes
            0

    Configs
        rate
            [float] Rate at which to yield data in Hz (> 0).
        distribution
            [str, optional (default='uniform')] Distribution to use for generating
            timestamps. Can be 'uniform' or 'poisson'.
        filename
            [str] Path to the mimo file to be imported (as for ``data.simulate_importer``).
        seed
            [int, optional (default=None)] Seed of the random generator for ``poisson``.

    Examples:
        >>> # setup.yaml
        >>> # clocked: {function: data.clocked_importer, sinks: [waveforms],
        >>> #           config: {filename: waveforms.mimo, rate: 500, distribution: poisson}}
    """
    importer = Importer(buffer_io)
    rate = _positive(importer, "rate", buffer_io.get("rate"), required=True)
    distribution = buffer_io.get("distribution", "uniform")
    if not isinstance(distribution, str) or distribution.lower() not in _DISTRIBUTIONS:
        raise SetupError(
            importer,
            f"config 'distribution' must be one of {', '.join(_DISTRIBUTIONS)}, "
            f"got {distribution!r}",
        )
    distribution = distribution.lower()
    seed = buffer_io.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise SetupError(importer, f"config 'seed' must be an integer, got {seed!r}")
    rng = np.random.default_rng(seed)
    reader = _open_for_sink(importer, buffer_io)
    sink = importer.writer.buffer

    def clocked() -> Iterator[np.ndarray | None]:
        with reader:
            due = time.monotonic()
            for data, _metadata in reader.chunks():
                waits = _waiting_times(rate, distribution, len(data), rng)
                for i in range(len(data)):
                    due += float(waits[i])
                    if not _wait_until(due, sink):
                        return
                    yield data[i]
        yield None

    importer(clocked)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _waiting_times(
    rate: float, distribution: str, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Waiting times in seconds before each of ``size`` events.

    ``uniform``: all ``1/rate``. ``poisson``: exponential with mean ``1/rate`` (the gaps of a
    Poisson process of rate ``rate``), not a Poisson-distributed count (defect B14).
    """
    if distribution == "poisson":
        return rng.exponential(1.0 / rate, size)
    if distribution == "uniform":
        return np.full(size, 1.0 / rate)
    raise ValueError(f"unknown distribution {distribution!r}; use one of {_DISTRIBUTIONS}")


def _wait_until(deadline: float, sink: Any) -> bool:
    """Sleeps until ``deadline`` (monotonic clock); False if the sink ended meanwhile."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        if sink.flush_event_received:
            return False
        time.sleep(min(left, _WAIT_SLICE))


def _positive(template: Any, key: str, value: Any, required: bool = False) -> float:
    """A config value as a finite number > 0, else SetupError."""
    if value is None and required:
        raise SetupError(template, f"config '{key}' is missing; give a number > 0")
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise SetupError(template, f"config '{key}' must be a number > 0, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise SetupError(template, f"config '{key}' must be a number > 0, got {value!r}")
    return number


def _resolve_filename(template: Any, io: BufferIO) -> Path:
    """The file named by config ``filename``, ``~`` expanded.

    A relative name is looked up in the setup directory first and then, as the reference
    implementation does, in the current directory. A name with wildcards (``*``, ``?``,
    ``[``) that matches no file literally resolves to the newest matching file.

    Raises:
        SetupError: If ``filename`` is missing or invalid, or no file fits (naming every
            place that was tried).
    """
    value = io.get("filename")
    if value is None:
        raise SetupError(template, "config 'filename' is missing; give the path of a .mimo file")
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise SetupError(template, f"config 'filename' must be a path, got {value!r}")
    raw = Path(str(value)).expanduser()
    if raw.is_absolute():
        candidates = [raw]
    else:
        candidates = [Path(io.setup_dir) / raw]
        in_cwd = Path.cwd() / raw
        if in_cwd.resolve() != candidates[0].resolve():
            candidates.append(in_cwd)
    wildcard = any(c in str(value) for c in "*?[")
    for path in candidates:
        if path.is_file():
            return path
        if wildcard:
            matches = [Path(p) for p in glob.glob(str(path)) if Path(p).is_file()]
            if matches:
                return max(matches, key=lambda p: (p.stat().st_mtime_ns, str(p)))
    if raw.is_absolute():
        raise SetupError(template, f"config 'filename': no file {raw}")
    if len(candidates) == 1:  # the setup directory is the current directory
        tried = f"{candidates[0]} (relative to the setup directory and the current directory)"
    else:
        tried = (
            f"{candidates[0]} (relative to the setup directory) nor {candidates[1]} "
            "(relative to the current directory)"
        )
    raise SetupError(template, f"config 'filename': no file {tried}")


def _open_for_sink(importer: Importer, io: BufferIO) -> MimoReader:
    """Opens the configured file; its events must fit the importer's sink."""
    path = _resolve_filename(importer, io)
    try:
        reader = MimoReader(path)
    except (MimoFileError, OSError) as e:
        raise SetupError(importer, f"config 'filename': cannot read {path}: {e}") from None
    sink = importer.writer.buffer
    same = reader.data_length == sink.data_length and (
        reader.data_dtype == sink.data_dtype
        or np.can_cast(reader.data_dtype, sink.data_dtype, "equiv")
    )
    if not same:
        reader.close()
        raise SetupError(
            importer,
            f"the events in {path} ({reader.data_length} x {reader.data_dtype}) do not fit "
            f"sink '{sink.name}' ({sink.data_length} x {sink.data_dtype}); give the sink the "
            "file's data_length and data_dtype",
        )
    if not len(reader):
        importer.logger.warning("worker '%s': %s holds no events", importer.name, path)
    else:
        importer.logger.info(
            "worker '%s': replaying %d events from %s", importer.name, len(reader), path
        )
    return reader


def _new_file(
    exporter: Exporter, run_dir: Path, name: str, buffer: Any, flush_interval: float
) -> MimoWriter:
    """Creates ``<name>.mimo`` or, if taken, the first free ``<name>_<k>.mimo`` (k ≥ 2)."""
    for k in range(1, _MAX_FILES + 1):
        path = run_dir / (f"{name}.mimo" if k == 1 else f"{name}_{k}.mimo")
        try:
            return MimoWriter(
                path,
                buffer.data_dtype,
                buffer.data_length,
                source=name,
                exclusive=True,
                flush_interval=flush_interval,
                attrs={"worker": exporter.name, "pid": os.getpid()},
            )
        except FileExistsError:
            continue
    raise SetupError(exporter, f"no free file name for {name}.mimo in {run_dir}")
