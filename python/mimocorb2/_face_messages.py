"""The JSON messages of the control's remote faces: the GUI link and remote clients.

Both carry the same messages (see :mod:`mimocorb2._gui.link`): the GUI link as JSON lines over
two pipes, remote run control (:mod:`mimocorb2._remote`) as one JSON object a ZeroMQ frame.
This module is their one framing: encoding and decoding a message, the ``lines`` messages of a
batch of worker output, the failures of a ``stats`` message, the check of a ``command``.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from mimocorb2._control_types import parse_command

LINES_PER_MESSAGE = 2_000
"""Worker output lines in one ``lines`` message at most."""

FAILURE_TAIL_LINES = 10
"""Last output lines of a failed process in a ``stats`` message."""

_T = TypeVar("_T")


def encode(message: dict[str, Any]) -> bytes:
    """One message as a JSON line."""
    return (json.dumps(message, default=str, separators=(",", ":")) + "\n").encode()


def decode(raw: bytes | str) -> dict[str, Any] | None:
    """The message in ``raw``, or None when it is not one JSON object."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def valid_command(command: Any) -> bool:
    """Whether ``command`` is one the control accepts (``parse_command`` takes it)."""
    try:
        parse_command(command)
    except ValueError:
        return False
    return True


def line_messages(lines: Sequence[list[str]], dropped: int) -> list[dict[str, Any]]:
    """``lines`` messages for a batch of output lines (none when there is nothing to say).

    Args:
        lines: ``[process, worker, stream, text]`` rows, oldest first.
        dropped: Lines lost before these (told in the first message).
    """
    out = []
    for i in range(0, max(len(lines), 1), LINES_PER_MESSAGE):
        chunk = list(lines[i : i + LINES_PER_MESSAGE])
        if chunk or dropped:
            out.append({"type": "lines", "lines": chunk, "dropped": dropped})
            dropped = 0
    return out


def failure_summaries(failures: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The failed processes as a ``stats`` message carries them (with their last lines)."""
    return [
        {
            "name": p["name"],
            "worker": p["worker"],
            "exit_code": p["exit_code"],
            "signal": p["signal"],
            "tail": list(p.get("tail", []))[-FAILURE_TAIL_LINES:],
        }
        for p in failures
    ]


def drain(waiting: queue.SimpleQueue[_T]) -> list[_T]:
    """Every item waiting in ``waiting`` now, oldest first (does not wait)."""
    out = []
    while True:
        try:
            out.append(waiting.get_nowait())
        except queue.Empty:
            return out
