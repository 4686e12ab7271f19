r"""Reading and writing ``.mimo`` files: raw event streams with a safe, self-describing header.

A ``.mimo`` file holds the events of one buffer: each event's data followed by its 24-byte
metadata record, back to back, after a JSON header that describes the layout. Nothing in the
file is executed when it is read (the reference implementation's pickled header, defect B27,
is refused unless the caller explicitly trusts the file).

Format version 2 (all integers little-endian):

============  ==========  ===============================================================
Offset        Size        Content
============  ==========  ===============================================================
0             16          magic ``b"MIMOCRB2FILE\r\n\x1a\n"`` (:data:`MAGIC`)
16            4           ``H``: u32, size of the header block that follows
20            ``H``       header block: a UTF-8 JSON object, padded with spaces and a final
                          ``\n`` so that ``D = 20 + H`` is a multiple of 64
``D``         ``N*R``     ``N`` records of ``R = data_size + metadata_size`` bytes each:
                          ``data_length`` elements of ``data_dtype``, then one
                          ``metadata_dtype`` record (counter, timestamp, deadtime)
``D + N*R``   32          footer, written only by a clean :meth:`MimoWriter.close`
============  ==========  ===============================================================

Header keys: ``format`` (``"mimocorb2"``), ``version`` (2), ``data_dtype`` and
``metadata_dtype`` (numpy ``descr`` lists as written by ``numpy.lib.format.dtype_to_descr``,
with explicit byte order, e.g. ``[["ch1", "<f4"]]``), ``data_length``, ``data_size``,
``metadata_size``, ``record_size`` (``R``), ``record_layout`` (``["data", "metadata"]``),
``created`` (ISO 8601, UTC), ``source`` (buffer name or null), ``writer`` (software version)
and ``attrs`` (a JSON object of user values). Readers ignore keys they do not know.

Footer (32 bytes): magic ``b"MIMO_END"`` (8), u64 record count ``N``, u64 ``D``, u32 CRC-32
(``zlib.crc32``) of the bytes ``0 .. D`` (magic, length and header block), u32 CRC-32 of the
footer's first 28 bytes. The checksums only guard the header and the footer, not the records:
checking every record would halve the write speed. A footer is accepted only if both
checksums match and ``D + N*R + 32`` equals the file size.

Reading:

- a cleanly closed file: the record count comes from the footer (no scan);
- a file without footer (the writer crashed or is still running): the count is
  ``(size - D) // R``; a partial last record raises :class:`MimoTruncatedError`, or is
  ignored with ``allow_truncated=True``;
- a damaged header (bad magic, length, JSON or keys) raises :class:`MimoFormatError` naming
  the file;
- a file of the reference implementation (it starts with the pickle opcode ``0x80``) is
  refused with :class:`MimoFormatError`; ``trust=True`` reads it with :mod:`pickle` (which can
  execute code from the file: only for files you trust). :func:`convert` rewrites it in
  version 2.

Writing: :class:`MimoWriter` writes whole records in order, small ones through a 1 MiB
staging buffer and large ones (≥ 32 KiB) directly, one ``writev`` per event. Staged records
reach the operating system at least every ``flush_interval`` seconds, so after a crash of the
writing process the file stays readable up to the last flush. Every writer holds an exclusive
``flock`` on its file while it is open: a second writer on the same file, in any process, is
refused instead of corrupting it (defect B18). ``exclusive=True`` refuses to touch an
existing file at all (used by ``data.export`` to give each process its own file).

Converting: :func:`convert_to` (or :func:`to_hdf5`, :func:`to_parquet`, :func:`to_root`,
:func:`to_csv`; on the command line ``mimocorb2 convert IN.mimo OUT.h5``) writes a file's events
as HDF5, Parquet, ROOT or CSV, in the layouts of the exporters of the same names (see
:mod:`mimocorb2._file_formats`). :func:`recover_hdf5` makes the HDF5 file of a crashed
``exporters.hdf5`` a plain HDF5 file.

Examples:
    >>> import numpy as np
    >>> from mimocorb2.mimo_file import MimoReader, MimoWriter
    >>> dt = np.dtype([("ch1", "<f4"), ("ch2", "<f4")])
    >>> with MimoWriter("run.mimo", dt, 500, source="waveforms") as w:
    ...     w.write(np.zeros(500, dt))          # metadata stamped (counter, time)
    >>> with MimoReader("run.mimo") as r:
    ...     data, metadata = r.read_all()       # shapes (n, 500) and (n,)
    ...     for data, metadata in r:            # or event by event
    ...         pass
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mimocorb2._mimo_header import FOOTER_MAGIC, FOOTER_SIZE, FORMAT_VERSION, MAGIC
from mimocorb2._mimo_reader import (
    MimoFileError,
    MimoFormatError,
    MimoReader,
    MimoTruncatedError,
    record_dtype,
)
from mimocorb2._mimo_writer import MimoWriter

__all__ = [
    "FOOTER_MAGIC",
    "FOOTER_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "MimoFileError",
    "MimoFormatError",
    "MimoReader",
    "MimoTruncatedError",
    "MimoWriter",
    "convert",
    "convert_to",
    "open_mimo",
    "record_dtype",
    "recover_hdf5",
    "to_csv",
    "to_hdf5",
    "to_parquet",
    "to_root",
]

for _public in (MimoFileError, MimoFormatError, MimoTruncatedError, MimoReader, MimoWriter):
    _public.__module__ = __name__  # the manual's path (also in reprs and for pickle)

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def open_mimo(path: str | os.PathLike[str], mode: str = "r", **kwargs: Any) -> Any:
    """Opens a ``.mimo`` file for reading or writing.

    Args:
        path: The file.
        mode: ``"r"`` read (:class:`MimoReader`), ``"w"`` create or replace, ``"x"`` create
            a new file only, ``"a"`` append (:class:`MimoWriter`).
        **kwargs: Passed on: ``allow_truncated``, ``trust`` for reading; ``data_dtype``,
            ``data_length``, ``source``, ``attrs``, ``flush_interval`` for writing.

    Returns:
        A :class:`MimoReader` or :class:`MimoWriter` (both context managers).

    Raises:
        ValueError: For an unknown mode.
    """
    if mode in ("r", "rb"):
        return MimoReader(path, **kwargs)
    if mode in ("w", "wb"):
        return MimoWriter(path, **kwargs)
    if mode in ("x", "xb"):
        return MimoWriter(path, exclusive=True, **kwargs)
    if mode in ("a", "ab"):
        return MimoWriter(path, append=True, **kwargs)
    raise ValueError(f"open_mimo: mode must be 'r', 'w', 'x' or 'a', got {mode!r}")


def convert(
    source: str | os.PathLike[str], target: str | os.PathLike[str], trust: bool = False
) -> int:
    """Rewrites a ``.mimo`` file (e.g. one of the reference format) in format version 2.

    Args:
        source: The file to read.
        target: The new file (must not exist).
        trust: Needed for a reference-format file (its pickled header is loaded).

    Returns:
        The number of records written.
    """
    with (
        MimoReader(source, trust=trust) as r,
        MimoWriter(
            target,
            r.data_dtype,
            r.data_length,
            source=r.header.get("source"),
            exclusive=True,
            attrs={"converted_from": str(Path(source).name)},
        ) as w,
    ):
        for data, metadata in r.chunks():
            w.write_many(data, metadata)  # converts the metadata field by field
        return len(w)


def convert_to(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    format: str | None = None,
    *,
    trust: bool = False,
    progress: Any = None,
    compression: str | None = None,
    compression_level: int | None = None,
) -> int:
    """Writes the events of a ``.mimo`` file as HDF5, Parquet, ROOT or CSV.

    The layouts are those of ``exporters.hdf5``, ``exporters.parquet``, ``exporters.root``
    and ``exporters.csv``. HDF5, Parquet and ROOT need their optional library
    (``pip install "mimocorb2[hdf5]"``, ``[parquet]``, ``[root]``).

    Args:
        source: The ``.mimo`` file (one without footer is read up to its last whole event).
        target: The new file (must not exist).
        format: ``hdf5``, ``parquet``, ``root`` or ``csv`` (default: from the target's ending,
            ``.h5``/``.hdf5``, ``.parquet``, ``.root``, ``.csv``).
        trust: Read a reference-format file (loads its pickled header).
        progress: Called as ``progress(events_done, events_total)`` after each block.
        compression: Codec of the target format (default none).
        compression_level: Its level.

    Returns:
        The number of events written.

    Raises:
        ValueError: For an unknown format, or events the format cannot store.
        ImportError: If the format's library is missing (the message names the pip command).
        FileExistsError: If the target exists.

    Examples:
        >>> convert_to("run/waveforms.mimo", "waveforms.h5")
        >>> convert_to("run/heights.mimo", "heights.parquet", compression="zstd")
    """
    from mimocorb2._mimo_convert import conversion_format, convert_mimo

    source, target = Path(source), Path(target)
    fmt = conversion_format(target, format, compression)
    with MimoReader(source, allow_truncated=True, trust=trust) as reader:
        return convert_mimo(
            reader,
            source,
            target,
            fmt,
            progress=progress,
            compression=compression,
            compression_level=compression_level,
        )


def to_hdf5(source: str | os.PathLike[str], target: str | os.PathLike[str], **kwargs: Any) -> int:
    """:func:`convert_to` in HDF5 (``kwargs`` as there); returns the number of events."""
    return convert_to(source, target, "hdf5", **kwargs)


def to_parquet(
    source: str | os.PathLike[str], target: str | os.PathLike[str], **kwargs: Any
) -> int:
    """:func:`convert_to` in Parquet (``kwargs`` as there); returns the number of events."""
    return convert_to(source, target, "parquet", **kwargs)


def to_root(source: str | os.PathLike[str], target: str | os.PathLike[str], **kwargs: Any) -> int:
    """:func:`convert_to` in ROOT (``kwargs`` as there); returns the number of events."""
    return convert_to(source, target, "root", **kwargs)


def to_csv(source: str | os.PathLike[str], target: str | os.PathLike[str], **kwargs: Any) -> int:
    """:func:`convert_to` in CSV (events of data_length 1); returns the number of events."""
    return convert_to(source, target, "csv", **kwargs)


def recover_hdf5(path: str | os.PathLike[str]) -> int:
    """Makes the HDF5 file of a crashed ``exporters.hdf5`` writer a plain HDF5 file.

    See :func:`mimocorb2._hdf5_file.recover_hdf5` (also ``mimocorb2 recover FILE.h5``).

    Args:
        path: The ``.h5`` file; its writer must be gone.

    Returns:
        The number of events in the file.
    """
    from mimocorb2._hdf5_file import recover_hdf5 as recover

    return recover(path)
