"""Data types of buffer slots: the metadata record and user data dtypes from setups."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from mimocorb2._limits import preview

METADATA_DTYPE = np.dtype([("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")])
"""The 24-byte metadata record at the start of every slot."""


def make_dtype(spec: Any, where: str = "data_dtype") -> np.dtype:
    """Builds a structured numpy dtype from a setup value.

    Args:
        spec: A ``{field: dtype string}`` mapping (field order is kept), a list of
            ``(name, dtype)`` pairs, or a numpy dtype.
        where: Where the value came from, for error messages.

    Returns:
        The structured dtype.

    Raises:
        ValueError: If the value is not a valid structured dtype description.
    """
    try:
        if isinstance(spec, np.dtype):
            dt = spec
        elif isinstance(spec, Mapping):
            if not spec:
                raise ValueError("it has no fields")
            dt = np.dtype([(str(k), np.dtype(v)) for k, v in spec.items()])
        else:
            dt = np.dtype(spec)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{where}: {preview(spec)} is not a valid data type ({preview(str(e), 120)}); "
            "write a mapping of field names to numpy type strings, e.g. {ch1: float32, ch2: int16}"
        ) from None
    if dt.names is None:
        dt = np.dtype([("data", dt)])
    if dt.hasobject:
        raise ValueError(f"{where}: Python object fields cannot live in shared memory")
    if dt.itemsize == 0:
        raise ValueError(f"{where}: the data type has zero size")
    if not sound_layout(dt):
        raise ValueError(
            f"{where}: the data type is larger than numpy can describe (at most 2 GiB per "
            "element); use smaller fields"
        )
    return dt


def sound_layout(dt: np.dtype) -> bool:
    """Whether every field of ``dt`` lies inside it (numpy wraps sizes beyond 2 GiB around).

    Args:
        dt: Any numpy dtype.

    Returns:
        False for a negative size or a field outside the element, e.g. for
        ``[("a", "V2147483647"), ("b", "f4")]``.
    """
    if dt.itemsize < 0:
        return False
    if dt.subdtype is not None and not sound_layout(dt.subdtype[0]):
        return False
    for field in (dt.fields or {}).values():
        sub, offset = field[0], field[1]
        if offset < 0 or not sound_layout(sub) or offset + sub.itemsize > dt.itemsize:
            return False
    return True


def dtype_to_json(dt: np.dtype) -> str:
    """Serializes a dtype to JSON text (no pickle), for the shared-memory header."""
    return json.dumps(np.lib.format.dtype_to_descr(dt))


def dtype_from_json(text: str) -> np.dtype:
    """Inverse of :func:`dtype_to_json`."""

    def tuples(x: Any) -> Any:
        if isinstance(x, list) and x and all(isinstance(f, list) for f in x):
            return [tuple(tuples(v) if isinstance(v, list) else v for v in f) for f in x]
        return x

    return np.lib.format.descr_to_dtype(tuples(json.loads(text)))
