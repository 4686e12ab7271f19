"""The byte layout of a ``.mimo`` file: magic, JSON header block and footer.

Encodes and decodes the parts of a format-version-2 file around its records (the format is
described in :mod:`mimocorb2.mimo_file`, which re-exports the public constants). Decoding
reports problems through an ``error`` callable (message → exception) so that the caller's
exception classes, which name the file, are raised.
"""

from __future__ import annotations

import datetime as _dt
import json
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE, dtype_from_json, dtype_to_json

MAGIC = b"MIMOCRB2FILE\r\n\x1a\n"
"""The first 16 bytes of every version-2 ``.mimo`` file."""
FORMAT_VERSION = 2
"""The format version this module writes (and the highest it reads)."""
FOOTER_MAGIC = b"MIMO_END"
"""The first 8 bytes of the footer."""
FOOTER_SIZE = 32
"""Size of the footer in bytes."""

PREFIX = struct.Struct("<16sI")  # magic, header block size
FOOTER = struct.Struct("<8sQQII")  # magic, count, data offset, header crc, footer crc
ALIGN = 64
MAX_HEADER = 16 * 1024 * 1024

assert len(MAGIC) == 16 and FOOTER.size == FOOTER_SIZE

ErrorFactory = Callable[[str], Exception]
"""Turns a message into the exception to raise (the reader's, naming the file)."""


@dataclass(frozen=True)
class FileHeader:
    """The decoded header of a ``.mimo`` file and where its records start.

    Attributes:
        header: The header (for a reference-format file: an equivalent summary).
        version: Format version of the file (1 for the reference format).
        data_dtype: The data dtype.
        data_length: Elements per event.
        metadata_dtype: The metadata dtype.
        data_offset: File offset of the first record.
        header_crc: CRC-32 of the bytes before the records (None: the file has no footer
            format, as the reference format).
    """

    header: dict[str, Any]
    version: int
    data_dtype: np.dtype
    data_length: int
    metadata_dtype: np.dtype
    data_offset: int
    header_crc: int | None


def descr(dt: np.dtype) -> Any:
    """The numpy ``descr`` of a dtype as a JSON value (lists, explicit byte order)."""
    return json.loads(dtype_to_json(dt))


def check_length(value: Any, where: str) -> int:
    """``value`` as a positive ``int`` data length; ValueError naming ``where`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{where}: data_length must be a positive integer, got {value!r}")
    return int(value)


def writer_version() -> str:
    """The ``writer`` entry of a header: the software and its version."""
    try:
        from mimocorb2 import __version__

        return f"mimocorb2 {__version__}"
    except Exception:  # pragma: no cover - partial installs
        return "mimocorb2"


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def new_header(
    data_dtype: np.dtype,
    data_length: int,
    record_size: int,
    source: str | None,
    attrs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The header of a new file (format version 2, created now)."""
    return {
        "format": "mimocorb2",
        "version": FORMAT_VERSION,
        "data_dtype": descr(data_dtype),
        "data_length": data_length,
        "data_size": data_length * data_dtype.itemsize,
        "metadata_dtype": descr(METADATA_DTYPE),
        "metadata_size": METADATA_DTYPE.itemsize,
        "record_size": record_size,
        "record_layout": ["data", "metadata"],
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds"),
        "source": None if source is None else str(source),
        "writer": writer_version(),
        "attrs": dict(attrs or {}),
    }


def header_block(header: Mapping[str, Any]) -> bytes:
    """Prefix + JSON header padded so that the records start at a multiple of 64."""
    text = json.dumps(header, ensure_ascii=False, separators=(", ", ": ")).encode()
    used = PREFIX.size + len(text) + 1
    size = len(text) + 1 + (-used % ALIGN)
    block = text + b" " * (size - len(text) - 1) + b"\n"
    return PREFIX.pack(MAGIC, size) + block


def footer(count: int, data_offset: int, header_crc: int) -> bytes:
    """The 32-byte footer of a file of ``count`` records."""
    head = FOOTER.pack(FOOTER_MAGIC, count, data_offset, header_crc, 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(head))


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def read_header(file: IO[bytes], file_size: int, error: ErrorFactory) -> FileHeader:
    """Reads and checks the magic and the JSON header of a format-version-2 file.

    Args:
        file: The file, opened for binary reading (it is read from the start).
        file_size: Its size in bytes.
        error: Makes the exception raised for a damaged or unknown header.

    Returns:
        The decoded header.
    """
    file.seek(0)
    prefix = file.read(PREFIX.size)
    if len(prefix) < PREFIX.size and MAGIC.startswith(prefix[: len(MAGIC)]):
        raise error(f"the file is too short ({file_size} bytes) to hold a .mimo header")
    if not prefix.startswith(MAGIC):
        raise error(f"not a mimocorb2 .mimo file (it starts with {prefix!r}, expected {MAGIC!r})")
    _, size = PREFIX.unpack(prefix)
    if size > MAX_HEADER or PREFIX.size + size > file_size:
        raise error(
            f"damaged header: it claims {size} header bytes, but the file has "
            f"{file_size} bytes in total"
        )
    block = file.read(size)
    try:
        header = json.loads(block.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"damaged header: the JSON header cannot be parsed ({e})") from None
    if not isinstance(header, dict):
        raise error("damaged header: the JSON header is not an object")
    if header.get("format") != "mimocorb2":
        raise error(f"damaged header: format is {header.get('format')!r}, not 'mimocorb2'")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise error(f"damaged header: version {version!r} is not an integer")
    if version > FORMAT_VERSION:
        raise error(
            f"format version {version} is newer than this mimocorb2 reads "
            f"({FORMAT_VERSION}); update mimocorb2"
        )
    if version < FORMAT_VERSION:
        raise error(f"unknown format version {version}")
    try:
        data_dtype = dtype_from_json(json.dumps(header["data_dtype"]))
        metadata_dtype = dtype_from_json(json.dumps(header["metadata_dtype"]))
        data_length = check_length(header["data_length"], "header")
        record_size = header["record_size"]
    except KeyError as e:
        raise error(f"damaged header: key {e} is missing") from None
    except (TypeError, ValueError) as e:
        raise error(f"damaged header: {e}") from None
    if data_dtype.hasobject or metadata_dtype.hasobject:
        raise error("damaged header: object dtypes cannot be stored in a .mimo file")
    expected = data_length * data_dtype.itemsize + metadata_dtype.itemsize
    if record_size != expected or header.get("record_layout", ["data", "metadata"]) != [
        "data",
        "metadata",
    ]:
        raise error(
            f"damaged header: record_size {record_size!r} does not match the dtypes "
            f"({expected} bytes per record, data then metadata)"
        )
    return FileHeader(
        header=header,
        version=version,
        data_dtype=data_dtype,
        data_length=data_length,
        metadata_dtype=metadata_dtype,
        data_offset=PREFIX.size + size,
        header_crc=zlib.crc32(prefix + block),
    )


def read_footer(
    file: IO[bytes], file_size: int, data_offset: int, record_size: int, header_crc: int | None
) -> int | None:
    """The record count of a valid footer, or None.

    A footer is valid if its magic and both checksums match, it points at ``data_offset``
    and its record count accounts for the whole file. The caller checks that the file has
    room for a footer after the header.
    """
    if header_crc is None:
        return None
    file.seek(file_size - FOOTER_SIZE)
    raw = file.read(FOOTER_SIZE)
    magic, count, offset, footer_header_crc, crc = FOOTER.unpack(raw)
    if (
        magic != FOOTER_MAGIC
        or crc != zlib.crc32(raw[:-4])
        or footer_header_crc != header_crc
        or offset != data_offset
        or offset + count * record_size + FOOTER_SIZE != file_size
    ):
        return None
    return int(count)
