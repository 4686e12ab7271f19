"""Event helpers shared by the single-process mimo_buffer tests."""

from __future__ import annotations

import numpy as np

from mimocorb2.mimo_buffer import BufferReader, BufferWriter

DTYPE = {"x": "<i8", "y": "<f4"}
STAT_KEYS = {
    "event_count",
    "filled_slots",
    "empty_slots",
    "flush_event_received",
    "rate",
    "average_deadtime",
    "paused_count",
    "paused",
    "overwritten",
    "lost",
    "forced_shutdown",
}


def write(writer: BufferWriter, value: int, counter: int | None = None) -> None:
    """One event whose data field x is ``value`` everywhere."""
    with writer as (metadata, data):
        data["x"] = value
        data["y"] = value / 2
        if counter is not None:
            metadata["counter"] = counter


def read_x(reader: BufferReader) -> int | None:
    """Reads one event and returns its x value (checks the event is uniform), None at the end."""
    with reader as (metadata, data):
        if data is None:
            assert metadata is None
            return None
        assert np.all(data["x"] == data["x"][0])
        return int(data["x"][0])
