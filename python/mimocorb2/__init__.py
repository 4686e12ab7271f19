"""mimocorb2: a multiprocess ring-buffer manager for data acquisition.

The buffer core lives in :mod:`mimocorb2.mimo_buffer`, worker helpers in
:mod:`mimocorb2.mimo_worker` and :mod:`mimocorb2.worker_templates`, the run controller in
:mod:`mimocorb2.control`, errors in :mod:`mimocorb2.exceptions`. The names of the manual are
re-exported here (the worker and control ones are imported on first use).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from mimocorb2._core import __version__
from mimocorb2.exceptions import (
    BufferEndedError,
    BufferTimeoutError,
    LayoutMismatchError,
    MimocorbError,
    SetupValidationError,
    SharedMemoryError,
    SlotReleasedError,
)
from mimocorb2.mimo_buffer import BufferObserver, BufferReader, BufferWriter, mimoBuffer

_LAZY = {
    "BufferIO": "mimocorb2.mimo_worker",
    "Config": "mimocorb2.mimo_worker",
    "Importer": "mimocorb2.worker_templates",
    "Exporter": "mimocorb2.worker_templates",
    "Filter": "mimocorb2.worker_templates",
    "Processor": "mimocorb2.worker_templates",
    "Observer": "mimocorb2.worker_templates",
    "IsAlive": "mimocorb2.worker_templates",
    "SetupError": "mimocorb2.worker_templates",
    "UfuncError": "mimocorb2.worker_templates",
    "Control": "mimocorb2.control",
}

__all__ = [
    "BufferEndedError",
    "BufferIO",
    "BufferObserver",
    "BufferReader",
    "BufferTimeoutError",
    "BufferWriter",
    "Config",
    "Control",
    "Exporter",
    "Filter",
    "Importer",
    "IsAlive",
    "LayoutMismatchError",
    "MimocorbError",
    "Observer",
    "Processor",
    "SetupError",
    "SetupValidationError",
    "SharedMemoryError",
    "SlotReleasedError",
    "UfuncError",
    "__version__",
    "mimoBuffer",
]


def __getattr__(name: str) -> Any:
    """Imports the worker and control names on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mimocorb2' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
