"""mimocorb2: a multiprocess ring-buffer manager for data acquisition.

The buffer core lives in :mod:`mimocorb2.mimo_buffer`; its errors in
:mod:`mimocorb2.exceptions`.
"""

from mimocorb2._core import __version__
from mimocorb2.exceptions import (
    BufferEndedError,
    BufferTimeoutError,
    LayoutMismatchError,
    MimocorbError,
    SharedMemoryError,
    SlotReleasedError,
)
from mimocorb2.mimo_buffer import BufferObserver, BufferReader, BufferWriter, mimoBuffer

__all__ = [
    "BufferEndedError",
    "BufferObserver",
    "BufferReader",
    "BufferTimeoutError",
    "BufferWriter",
    "LayoutMismatchError",
    "MimocorbError",
    "SharedMemoryError",
    "SlotReleasedError",
    "__version__",
    "mimoBuffer",
]
