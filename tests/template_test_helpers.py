"""Buffers, BufferIO and event helpers shared by the worker-template tests."""

from __future__ import annotations

import numpy as np

from mimocorb2.mimo_buffer import BufferReader, BufferWriter, mimoBuffer
from mimocorb2.mimo_worker import BufferIO

DTYPE = {"x": "<i8", "y": "<f4"}
LENGTH = 4
WAIT_S = 10.0


def make_io(name, tmp_path, sources=(), sinks=(), observes=(), config=None) -> BufferIO:
    return BufferIO(
        name, list(sources), list(sinks), list(observes), config or {}, tmp_path, tmp_path
    )


def fill(buf: mimoBuffer, values, end=True) -> None:
    """Writes one event per value (x = value everywhere, counter = value), then ends."""
    w = BufferWriter(buf, timeout=WAIT_S)
    for v in values:
        with w as (metadata, data):
            data["x"] = v
            data["y"] = v / 2
            metadata["counter"] = v
            metadata["timestamp"] = 1000.0 + v
            metadata["deadtime"] = 0.25
    if end:
        w.send_flush_event()


def drain(buf: mimoBuffer) -> list[tuple[np.ndarray, np.ndarray]]:
    """Reads every event (copies of metadata and data) until the end of the stream."""
    r = BufferReader(buf, timeout=WAIT_S)
    out = []
    while True:
        with r as (metadata, data):
            if data is None:
                return out
            out.append((metadata.copy(), data.copy()))


def xs(events) -> list[int]:
    return [int(d["x"][0]) for _, d in events]
