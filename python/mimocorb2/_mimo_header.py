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

from mimocorb2._dtypes import METADATA_DTYPE, dtype_from_json, dtype_to_json, sound_layout
from mimocorb2._limits import preview

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
MAX_HEADER = 1024 * 1024
"""Largest header block (1 MiB): the layout and a few user ``attrs``, never bulk data."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of lists and objects in a header (``attrs`` included)."""
MAX_RECORD = (1 << 31) - 1
"""Largest record in bytes: numpy describes no larger element."""

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
        raise ValueError(f"{where}: data_length must be a positive integer, got {preview(value)}")
    return int(value)


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of lists/tuples and dicts in ``value``, counted up to ``limit + 1``.

    Walks without recursion, so any depth is measured safely; stops as soon as the depth
    exceeds ``limit``.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


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
    """Prefix + JSON header padded so that the records start at a multiple of 64.

    Raises:
        ValueError: If the header is not JSON-serialisable, nested deeper than
            :data:`MAX_JSON_DEPTH` or larger than :data:`MAX_HEADER` (readers refuse those).
    """
    if json_depth(header, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValueError(f"the header is nested more than {MAX_JSON_DEPTH} levels deep")
    text = json.dumps(header, ensure_ascii=False, separators=(", ", ": ")).encode()
    if len(text) + ALIGN > MAX_HEADER:
        raise ValueError(f"the header has {len(text)} bytes, more than the limit of {MAX_HEADER}")
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
    if len(block) != size:
        raise error(f"damaged header: {len(block)} of its {size} bytes could be read")
    try:
        header = json.loads(block.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"damaged header: the JSON header cannot be parsed ({e})") from None
    except RecursionError:
        raise error("damaged header: the JSON header is nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        reason = preview(str(e), 100)
        raise error(f"damaged header: the JSON header cannot be parsed ({reason})") from None
    if not isinstance(header, dict):
        raise error("damaged header: the JSON header is not an object")
    if json_depth(header, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise error(f"damaged header: it is nested more than {MAX_JSON_DEPTH} levels deep")
    if header.get("format") != "mimocorb2":
        raise error(f"damaged header: format is {preview(header.get('format'))}, not 'mimocorb2'")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise error(f"damaged header: version {preview(version)} is not an integer")
    if version > FORMAT_VERSION:
        raise error(
            f"format version {preview(version)} is newer than this mimocorb2 reads "
            f"({FORMAT_VERSION}); update mimocorb2"
        )
    if version < FORMAT_VERSION:
        raise error(f"unknown format version {preview(version)}")
    data_dtype, data_length, metadata_dtype = _layout(header, error)
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


_REQUIRED = ("data_dtype", "data_length", "metadata_dtype", "record_size")
_TYPES: dict[str, tuple[type, ...]] = {
    "data_size": (int,),
    "metadata_size": (int,),
    "record_size": (int,),
    "record_layout": (list,),
    "created": (str,),
    "source": (str, type(None)),
    "writer": (str,),
    "attrs": (dict,),
}


def _layout(header: dict[str, Any], error: ErrorFactory) -> tuple[np.dtype, int, np.dtype]:
    """Checks every key of a version-2 header that describes the records.

    Returns:
        ``(data_dtype, data_length, metadata_dtype)``.
    """
    for key in _REQUIRED:
        if key not in header:
            raise error(f"damaged header: key '{key}' is missing")
    for key, types in _TYPES.items():
        value = header.get(key, None if key == "source" else types[0]())
        if not isinstance(value, types) or isinstance(value, bool):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise error(f"damaged header: {key} must be {names}, got {preview(value)}")
    data_dtype = _dtype(header["data_dtype"], "data_dtype", error)
    metadata_dtype = _dtype(header["metadata_dtype"], "metadata_dtype", error)
    if metadata_dtype != METADATA_DTYPE:
        raise error(
            f"damaged header: metadata_dtype is {preview(str(metadata_dtype), 120)}, not the "
            f"mimocorb2 metadata record {METADATA_DTYPE} (counter, timestamp, deadtime)"
        )
    if data_dtype.itemsize == 0:
        raise error("damaged header: data_dtype has zero size")
    try:
        data_length = check_length(header["data_length"], "header")
    except ValueError as e:
        raise error(f"damaged header: {e}") from None
    data_size = data_length * data_dtype.itemsize
    expected = data_size + metadata_dtype.itemsize
    if expected > MAX_RECORD:
        raise error(
            f"damaged header: records of {preview(data_length)} x {data_dtype.itemsize} bytes "
            f"are larger than the limit of {MAX_RECORD} bytes"
        )
    record_size = header["record_size"]
    if record_size != expected or header.get("record_layout", ["data", "metadata"]) != [
        "data",
        "metadata",
    ]:
        raise error(
            f"damaged header: record_size {preview(record_size)} does not match the dtypes "
            f"({expected} bytes per record, data then metadata)"
        )
    for key, value in (("data_size", data_size), ("metadata_size", metadata_dtype.itemsize)):
        if header.get(key, value) != value:
            raise error(
                f"damaged header: {key} {preview(header[key])} does not match the dtypes "
                f"({value} bytes)"
            )
    return data_dtype, data_length, metadata_dtype


def _dtype(descr_value: Any, key: str, error: ErrorFactory) -> np.dtype:
    """Decodes a dtype ``descr`` of the header; MimoFormatError (via ``error``) if it is bad."""
    try:
        dt = dtype_from_json(json.dumps(descr_value))
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as e:
        raise error(
            f"damaged header: {key} {preview(descr_value)} is not a numpy dtype description "
            f"({preview(str(e), 100)})"
        ) from None
    except RecursionError:
        raise error(f"damaged header: {key} is nested too deeply") from None
    if dt.hasobject:
        raise error("damaged header: object dtypes cannot be stored in a .mimo file")
    if not sound_layout(dt):
        raise error(
            f"damaged header: {key} {preview(descr_value)} describes an element larger than "
            "numpy can hold (its size wraps around)"
        )
    return dt
