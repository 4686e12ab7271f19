"""The file formats of the exporters and converters: names, endings, extras, checks.

``hdf5``, ``parquet`` and ``root`` each need one optional library, installed with an extra of
the package (see :mod:`mimocorb2._file_formats`). This module knows which, imports it when a
file is opened (:func:`require`; a missing one raises :class:`MissingExtraError` naming the
``pip`` command) and checks an exporter's configuration and a buffer's dtype against what
each format stores, without importing any of the libraries.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE

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
