"""The records of a ``.mimo`` file: events converted to record bytes, written completely.

Helpers of :class:`mimocorb2.mimo_file.MimoWriter`. Conversion errors are ``ValueError``
naming the file (``where``); events that already have the right dtype, size and layout
are used without a copy.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE

HAS_WRITEV = hasattr(os, "writev")


def write_all(fd: int, buffers: list[Any]) -> None:
    """Writes the byte buffers completely (``writev``, resuming after partial writes)."""
    views = [memoryview(b).cast("B") for b in buffers]
    total = sum(v.nbytes for v in views)
    while total:
        n = os.writev(fd, views) if HAS_WRITEV else os.write(fd, views[0])
        total -= n
        while n and views:
            if n >= views[0].nbytes:
                n -= views[0].nbytes
                views.pop(0)
            else:
                views[0] = views[0][n:]
                n = 0
        views = [v for v in views if v.nbytes]


def data_bytes(data: Any, data_dtype: np.dtype, data_length: int, where: Any) -> np.ndarray:
    """The bytes of one event's data: ``data_length`` elements of ``data_dtype``."""
    d = data
    if not (
        type(d) is np.ndarray
        and d.dtype == data_dtype
        and d.size == data_length
        and d.flags.c_contiguous
    ):
        try:
            d = np.ascontiguousarray(np.asarray(d, dtype=data_dtype))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: data cannot be converted to {data_dtype} ({e})") from None
        if d.size != data_length:
            raise ValueError(f"{where}: an event has {data_length} elements, got {d.size}")
    return d.reshape(-1).view(np.uint8)


def metadata_bytes(metadata: Any, stamp: np.ndarray, counter: int, where: Any) -> np.ndarray:
    """The bytes of one event's metadata record.

    Args:
        metadata: One record (array, structured scalar or tuple), or None to fill ``stamp``
            (a shape ``(1,)`` metadata array, reused) with ``counter``, the current time and
            a dead time of 0.
        stamp: The array filled for ``metadata=None``.
        counter: The counter stamped for ``metadata=None``.
        where: Names the file in errors.
    """
    m = metadata
    if m is None:
        m = stamp
        m["counter"] = counter
        m["timestamp"] = time.time()
        m["deadtime"] = 0.0
    elif not (
        type(m) is np.ndarray and m.dtype == METADATA_DTYPE and m.size == 1 and m.flags.c_contiguous
    ):
        try:
            m = np.ascontiguousarray(np.asarray(m, dtype=METADATA_DTYPE)).reshape(-1)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{where}: metadata cannot be converted to {METADATA_DTYPE} ({e})"
            ) from None
        if m.size != 1:
            raise ValueError(f"{where}: one metadata record per event, got {m.size}")
    return m.reshape(-1).view(np.uint8)


def event_batch(
    data: Any, metadata: Any, data_dtype: np.dtype, data_length: int, counter: int, where: Any
) -> tuple[np.ndarray, np.ndarray]:
    """A batch of ``k`` events as data ``(k, data_length)`` and metadata ``(k,)`` arrays.

    Args:
        data: The events: shape ``(k, data_length)`` (``(k,)`` if ``data_length`` is 1).
        metadata: ``k`` metadata records, or None to stamp the counters ``counter ..
            counter + k - 1``, the current time and a dead time of 0.
        data_dtype: The data dtype.
        data_length: Elements per event.
        counter: The first counter stamped for ``metadata=None``.
        where: Names the file in errors.
    """
    try:
        d = np.asarray(data, dtype=data_dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: data cannot be converted to {data_dtype} ({e})") from None
    if d.size % data_length or (d.ndim > 1 and d.shape[-1] != data_length):
        raise ValueError(f"{where}: write_many needs shape (k, {data_length}), got {d.shape}")
    d = d.reshape(-1, data_length)
    k = len(d)
    if metadata is None:
        m = np.zeros(k, dtype=METADATA_DTYPE)
        m["counter"] = np.arange(counter, counter + k)
        m["timestamp"] = time.time()
    else:
        try:
            m = np.asarray(metadata, dtype=METADATA_DTYPE).reshape(-1)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"{where}: metadata cannot be converted to {METADATA_DTYPE} ({e})"
            ) from None
        if m.size != k:
            raise ValueError(f"{where}: {k} events but {m.size} metadata records")
    return d, m
