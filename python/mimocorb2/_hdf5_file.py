"""HDF5 files of events (``exporters.hdf5``, ``.mimo`` → ``.h5``) and their recovery after a crash.

Layout: dataset ``data`` of the data dtype (a compound type), shape ``(n, data_length)``, and
dataset ``metadata`` of the metadata record (counter, timestamp, deadtime), shape ``(n,)``;
both chunked (about 1 MiB a chunk) and resizable along the first axis. Root attributes:
``buffer``, ``mimocorb2_version``, ``run_start``, ``setup_yaml``, ``data_length``,
``created`` and any given by the caller. Written in SWMR mode (single writer, multiple
readers).

Large batches are written as they come: a batch that is a view of a record array (the
events of ``read_batch`` or of a ``.mimo`` file, ``data`` rows with the metadata between
them) goes to HDF5 with a strided memory selection, without a copy in numpy; only when the
row pitch is no multiple of the element size is it copied first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2._core import __version__
from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2._event_files import EventFileWriter, copy_rows, now_iso
from mimocorb2._format_registry import require

CHUNK_BYTES = 1 << 20
"""Target size of one HDF5 chunk."""

CHUNK_CACHE_BYTES = 1 << 20
"""HDF5 chunk cache of the file (per dataset)."""

WRITE_BYTES = 1 << 20
"""Batches smaller than this are staged and handed to HDF5 together (per-call overhead)."""

LIBVER = ("v110", "v110")
"""HDF5 file format: SWMR needs 1.10; files stay readable by HDF5 1.10 and newer."""


def _chunks(data_dtype: np.dtype, data_length: int) -> tuple[int, int]:
    """Chunk shape of the ``data`` dataset: about ``CHUNK_BYTES``, whole events if they fit."""
    item = max(1, data_dtype.itemsize)
    cols = data_length if data_length * item <= CHUNK_BYTES else max(1, CHUNK_BYTES // item)
    rows = max(1, CHUNK_BYTES // (cols * item))
    return rows, cols


def _row_pitch(data: np.ndarray) -> int:
    """Elements from one row of ``data`` to the next if HDF5 can take it as it is, else 0.

    That is when the rows are contiguous and lie a whole number of elements apart (a view of
    a record array whose metadata is a multiple of the element size long).
    """
    item = data.dtype.itemsize
    pitch = data.strides[0]
    k, length = data.shape
    if item == 0 or (length > 1 and data.strides[1] != item):
        return 0
    if k == 1:
        return length
    return pitch // item if pitch % item == 0 and pitch >= length * item else 0


class Hdf5Writer(EventFileWriter):
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
    group_bytes = WRITE_BYTES
    direct_bytes = WRITE_BYTES

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
        # "x" creates the file only if it does not exist (O_EXCL), like claim(); a file
        # opened with truncation ("w") would make ext4 write all of it back on close
        try:
            self._file = h5py.File(self.path, "x", libver=LIBVER, rdcc_nbytes=CHUNK_CACHE_BYTES)
        except FileExistsError:  # as os.open says it (with the file name)
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(self.path)) from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        try:
            codec = None if compression in (None, "none") else compression
            level = compression_level if codec == "gzip" else None
            rows, cols = _chunks(self.data_dtype, self.data_length)
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
                chunks=(max(1, CHUNK_BYTES // METADATA_DTYPE.itemsize),),
                compression=codec,
                compression_opts=level,
            )
            info: dict[str, Any] = {"buffer": "", "run_start": "", "setup_yaml": ""}
            info.update(attrs or {})
            info.update(
                mimocorb2_version=__version__, data_length=self.data_length, created=now_iso()
            )
            for key, value in info.items():
                self._file.attrs[key] = "" if value is None else value
            self._file.flush()
            if swmr:
                self._file.swmr_mode = True
        except BaseException:
            self._file.close()
            raise
        self._h5s = h5py.h5s
        self._written = 0
        self._scratch = np.empty(0, np.uint8)

    def _write_group(self, metadata: np.ndarray, data: np.ndarray) -> None:
        """Appends events to the datasets: data first, then their metadata."""
        n, k = self._written, len(data)
        self._data.resize(n + k, axis=0)
        self._write_data(data, n)
        self._meta.resize(n + k, axis=0)
        self._meta.write_direct(np.ascontiguousarray(metadata), dest_sel=np.s_[n : n + k])
        self._written = n + k

    def _write_data(self, data: np.ndarray, start: int) -> None:
        """Writes ``data`` to rows ``start ...``: as it lies in memory, or through a copy."""
        k, length = data.shape
        if data.flags.c_contiguous:
            self._data.write_direct(data, dest_sel=np.s_[start : start + k])
            return
        pitch = _row_pitch(data)
        if not pitch:
            size = data.nbytes
            if self._scratch.size < size:
                self._scratch = np.empty(size, np.uint8)
            block = self._scratch[:size].view(data.dtype).reshape(data.shape)
            copy_rows(block, data)
            self._data.write_direct(block, dest_sel=np.s_[start : start + k])
            return
        # one flat array over the rows (and what lies between them), read by a memory
        # selection of k rows of `length` elements, `pitch` elements apart
        flat = np.lib.stride_tricks.as_strided(
            data, shape=((k - 1) * pitch + length,), strides=(data.dtype.itemsize,)
        )
        memory = self._h5s.create_simple((k, pitch))
        memory.select_hyperslab((0, 0), (k, length))
        target = self._data.id.get_space()
        target.select_hyperslab((start, 0), (k, length))
        self._data.id.write(memory, target, flat)

    def _sync(self) -> None:
        """Puts everything on the file: SWMR readers see it, and it survives a crash."""
        self._file.flush()

    def _finish(self) -> None:
        """Closes the file (it is then a plain HDF5 file)."""
        self._file.close()


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
