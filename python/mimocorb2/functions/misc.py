"""Prebuilt miscellaneous functions: ``misc.copy``.

Use them in a setup with ``function: misc.<name>`` and no ``file``.
"""

from __future__ import annotations

from typing import Any

from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import Filter

__all__ = ["copy"]


def _every_event(_data: Any) -> bool:
    return True


def copy(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Copy data from one source to multiple sinks.

    Copys data from a source buffer to multiple sink buffers. This function is useful for
    duplicating data streams within the mimoCoRB2 framework.

    Every event (data and metadata, unchanged) goes to every sink. A sink that is shut down
    early receives no more events; the others keep receiving them.

    Type
        Filter

    Buffers
        sources
            1 source buffer containing the data to be copied
        sinks
            1 or more sink buffers that will receive the copied data (same data_length and dtype
            as the source)
        observes
            0

    Examples:
        Setup entry::

            copy:
              function: misc.copy
              sources: [raw]
              sinks: [raw_for_export, raw_for_analysis]
    """
    Filter(buffer_io)(_every_event)
