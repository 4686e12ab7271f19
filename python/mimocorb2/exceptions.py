"""Exceptions raised by mimocorb2.

Every error of the buffer core derives from :class:`MimocorbError`. Where a builtin exception
fits as well, it is a second base class, so ``except TimeoutError`` or ``except OSError`` also
catch the matching mimocorb2 error.
"""

from __future__ import annotations

__all__ = [
    "BufferEndedError",
    "BufferTimeoutError",
    "LayoutMismatchError",
    "MimocorbError",
    "SetupValidationError",
    "SharedMemoryError",
    "SlotReleasedError",
]


class MimocorbError(Exception):
    """Base class of all mimocorb2 errors."""


class BufferEndedError(MimocorbError):
    """A write was attempted on a buffer that has been shut down (flushed)."""


class BufferTimeoutError(MimocorbError, TimeoutError):
    """A blocking buffer operation ran out of time."""


class LayoutMismatchError(MimocorbError):
    """A shared region is not a buffer of this mimocorb2 version (or not the expected one)."""


class SharedMemoryError(MimocorbError, OSError):
    """Shared memory could not be created, reserved or attached."""


class SlotReleasedError(MimocorbError):
    """A slot was used after it had been committed or released, or was never held."""


class SetupValidationError(MimocorbError, ValueError):
    """A setup file is invalid.

    ``errors`` lists every problem found, each naming the file, the worker or buffer, the key
    and the fix.
    """

    def __init__(self, errors: list[str], source: str = "setup") -> None:
        """Keeps the list of problems and builds one message from it."""
        self.errors = list(errors)
        self.source = source
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{source} has {len(self.errors)} problem(s):\n{lines}")
