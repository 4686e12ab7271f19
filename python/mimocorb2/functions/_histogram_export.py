"""How ``exporters.histogram`` counts and writes: channels, bins, ``Histograms_<buffer>``.

The worker function (with its manual text) is in :mod:`mimocorb2.functions.exporters`. Every
change of the files happens under an exclusive lock of the directory, and every file is
replaced atomically, so several writers share the files and readers never see a partial one.
"""

from __future__ import annotations

import contextlib
import csv as _csvlib
import io as _io
import math
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2._csv_file import _Locked, _quote
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import SetupError


def create_temp(directory: Path, prefix: str) -> tuple[int, str]:
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


class Channel:
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


INFO_COLUMNS = ("Channel", "Min", "Max", "NBins", "Underflow", "Overflow")


def parse_bins(io: BufferIO, dtype: np.dtype) -> list[Channel]:
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
        channels.append(Channel(str(field), lo_f, hi_f, int(nbins)))
    return channels


class HistogramFiles:
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
        fd, tmp = create_temp(self.dir, prefix=f".{target.name}.")
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
            if len(row) == len(INFO_COLUMNS):
                out[row[0]] = [float(row[1]), float(row[2]), int(row[3]), int(row[4]), int(row[5])]
        return out

    def write_info(self, info: dict[str, list[Any]]) -> None:
        lines = [",".join(INFO_COLUMNS)]
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


def histogram_start(files: HistogramFiles, channels: list[Channel], io: BufferIO) -> None:
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


def histogram_update(files: HistogramFiles, channels: list[Channel]) -> None:
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
