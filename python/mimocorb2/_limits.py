"""What a buffer, a setup and a wait can hold, and short previews of bad values for messages.

The numeric limits mirror the Rust core (``rust/src/layout.rs``): values beyond them cannot be
stored there, so the Python layers refuse them with a :class:`ValueError` (buffers, timeouts)
or a setup error (setup files) that names the key, the limit and the fix, instead of letting
an ``OverflowError`` or a panic escape from the core.

:func:`preview` renders any value in at most a few dozen characters without ever building
its full ``repr``: an alias bomb in a setup expands to millions of elements when printed, and
a 5000-digit integer cannot even be converted to text.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
import reprlib
from typing import Any

__all__ = [
    "MAX_DTYPE_JSON",
    "MAX_NAME_BYTES",
    "MAX_PROCESSES",
    "MAX_RESTARTS",
    "MAX_SLOTS",
    "MAX_SLOT_DATA_BYTES",
    "MAX_TIMEOUT",
    "MAX_WRITERS",
    "check_timeout",
    "name_problem",
    "preview",
]

MAX_SLOTS = 1 << 20
"""Most slots of one buffer (the core's ``MAX_SLOTS``)."""
MAX_WRITERS = 256
"""Most writers that can register with one buffer (the core's ``MAX_WRITERS``)."""
MAX_NAME_BYTES = 240
"""Longest buffer name in UTF-8 bytes (the core's ``MAX_NAME``); worker names use the same."""
MAX_DTYPE_JSON = 8192
"""Longest data dtype description (its JSON text) the core stores."""
MAX_SLOT_DATA_BYTES = 1 << 40
"""Largest data part of one slot (1 TiB): far beyond any memory, well inside the core's u64."""
MAX_PROCESSES = MAX_WRITERS
"""Most processes of one worker: a worker writing a buffer registers one writer per process."""
MAX_RESTARTS = 1_000_000
"""Most restarts of a worker with ``restart: on-failure``."""
MAX_TIMEOUT = 1e9
"""Longest finite timeout in seconds (about 31 years); use None to wait without a limit."""

PREVIEW_CHARS = 60
"""Longest preview of a value in a message."""

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9_.\-]+")


class _Preview(reprlib.Repr):
    """A ``repr`` that looks at no more than a few levels and elements of a value."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxtuple = self.maxlist = self.maxarray = 4
        self.maxdict = self.maxset = self.maxfrozenset = self.maxdeque = 4
        self.maxstring = self.maxother = self.maxlong = limit

    def repr_int(self, x: int, level: int) -> str:
        # int -> str refuses more than 4300 digits (and is quadratic below that).
        if x.bit_length() > 128:
            sign = "-" if x < 0 else ""
            return f"<{sign}integer of {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)

    def repr_bytes(self, x: bytes, level: int) -> str:
        text = repr(x[: self.maxstring])
        return text if len(x) <= self.maxstring else text + "..."


@functools.lru_cache(maxsize=8)
def _previewer(limit: int) -> _Preview:
    return _Preview(limit)


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A ``repr`` of ``value`` cut to at most ``limit`` characters, built in bounded time.

    Args:
        value: Any value, e.g. one read from a setup file (possibly an alias bomb, a deeply
            nested list or a huge integer).
        limit: Most characters of the result.

    Returns:
        The preview; ``...`` marks where it was cut.
    """
    try:
        text = _previewer(limit).repr(value)
    except Exception:  # a broken __repr__ of an unknown type
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def name_problem(name: Any, kind: str) -> str | None:
    """Why ``name`` cannot be a worker or buffer name, or None if it can.

    Names become file names (worker specs, logs, exported files), so they must be plain:
    letters, digits, ``_``, ``-`` and ``.``, not starting with ``.``, at most
    :data:`MAX_NAME_BYTES` characters.

    Args:
        name: The name as written in the setup.
        kind: ``"worker"`` or ``"buffer"``, for the message.

    Returns:
        The problem with the fix, or None.
    """
    if not isinstance(name, str) or not name:
        return f"{kind} name {preview(name)} must be a non-empty text"
    if len(name) > MAX_NAME_BYTES:
        return (
            f"{kind} name {preview(name)} has {len(name)} characters; the limit is "
            f"{MAX_NAME_BYTES}: use a shorter name"
        )
    if _PLAIN_NAME.fullmatch(name) is None or name.startswith("."):
        plain = re.sub(r"_{2,}", "_", _NOT_PLAIN.sub("_", name).replace("..", "_"))
        plain = plain.strip("._") or kind
        return (
            f"{kind} name {preview(name)} may only contain letters, digits, '_', '-' and '.', "
            f"and must not start with '.' (it becomes part of file names); rename it, e.g. "
            f"to {preview(plain)}"
        )
    return None


def check_timeout(timeout: Any, where: str) -> float | None:
    """Checks a timeout argument before it reaches the core.

    Args:
        timeout: Seconds (a finite number from 0 to :data:`MAX_TIMEOUT`) or None (no limit).
        where: The call, for the message (e.g. ``"BufferReader 'raw'"``).

    Returns:
        The timeout as a float, or None.

    Raises:
        ValueError: If the timeout is not None and not such a number.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise ValueError(
            f"{where}: timeout must be a number of seconds or None, got {preview(timeout)}"
        )
    try:
        value = float(timeout)
    except OverflowError:  # an int beyond the float range
        value = math.inf
    if not math.isfinite(value) or not 0 <= value <= MAX_TIMEOUT:
        raise ValueError(
            f"{where}: timeout must be between 0 and {MAX_TIMEOUT:g} seconds, got "
            f"{preview(timeout)}; use None to wait without a limit"
        )
    return value
