"""The channel between the control and the GUI process: JSON lines over two pipes.

Control → GUI messages (one JSON object a line):

- ``{"type": "setup", ...}``: first message; buffers, roots, workers, run directory, linger time;
- ``{"type": "stats", "stats": {...}, "failures": [...]}``: the statistics (≥ 2 Hz);
- ``{"type": "lines", "lines": [[process, worker, stream, text], ...], "dropped": n}``: worker
  output; ``dropped`` counts lines the control discarded because the GUI lagged behind;
- ``{"type": "finished", "exit_code": n}``: every worker has ended (final stats came before).

GUI → control messages:

- ``{"type": "ready"}``: the window is shown;
- ``{"type": "command", "command": [...] | null}``: a command for ``Control.commands``;
- ``{"type": "keep_open"}``: after the run finished, the user keeps the window open.

The control side never blocks: :class:`GuiLink` keeps only the newest statistics and a bounded
backlog of lines, and a writer thread sends them; when the GUI lags behind, statistics are
coalesced and the oldest lines are dropped (and counted).
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from mimocorb2._face_messages import (
    decode,
    drain,
    encode,
    failure_summaries,
    line_messages,
    valid_command,
)

MAX_BACKLOG_LINES = 20_000


def pipe_pair() -> tuple[tuple[IO[bytes], IO[bytes]], tuple[IO[bytes], IO[bytes]]]:
    """Two pipes: ``((to_gui, from_gui), (gui_in, gui_out))`` for an in-process GUI (tests)."""
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    return (os.fdopen(w1, "wb"), os.fdopen(r2, "rb")), (os.fdopen(r1, "rb"), os.fdopen(w2, "wb"))


class GuiLink:
    """Control side of the channel.

    Args:
        to_gui: Binary file the messages for the GUI are written to.
        from_gui: Binary file the GUI's messages are read from.
        on_command: Called (from the reader thread) with every valid command of the GUI.
        process: The GUI process (a :class:`subprocess.Popen`), or None when the GUI runs
            elsewhere (tests).
    """

    def __init__(
        self,
        to_gui: IO[bytes],
        from_gui: IO[bytes],
        on_command: Callable[[Any], None],
        process: Any = None,
    ) -> None:
        """Starts the writer and reader threads."""
        self._to_gui = to_gui
        self._from_gui = from_gui
        self._on_command = on_command
        self.process = process
        self.started = time.monotonic()
        self.ready = threading.Event()
        self.gone = threading.Event()
        self.exit_requested = False
        self.keep_open = False
        self.dropped = 0
        self._cond = threading.Condition()
        self._first: list[dict[str, Any]] = []
        self._last: list[dict[str, Any]] = []
        self._stats: dict[str, Any] | None = None
        self._lines: collections.deque[list[str]] = collections.deque(maxlen=MAX_BACKLOG_LINES)
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, name="gui-writer", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="gui-reader", daemon=True)
        self._writer.start()
        self._reader.start()

    # ----- sending (never blocks) -----

    def send_setup(self, info: dict[str, Any]) -> None:
        """Queues the setup message (sent first)."""
        with self._cond:
            self._first.append({"type": "setup", **info})
            self._cond.notify()

    def send_stats(self, stats: dict[str, Any], failures: Iterable[dict[str, Any]]) -> None:
        """Queues the statistics; replaces statistics the GUI has not received yet."""
        fails = failure_summaries(failures)
        with self._cond:
            self._stats = {"type": "stats", "stats": stats, "failures": fails}
            self._cond.notify()

    def send_lines(self, lines: Iterable[Iterable[str]], dropped: int = 0) -> None:
        """Queues worker output; the oldest lines go when the backlog is full."""
        lines = [list(line) for line in lines]
        if not lines and not dropped:
            return
        with self._cond:
            overflow = len(self._lines) + len(lines) - MAX_BACKLOG_LINES
            if overflow > 0:
                self.dropped += overflow
            self.dropped += dropped
            self._lines.extend(lines)
            self._cond.notify()

    def send_finished(self, exit_code: int) -> None:
        """Queues the message that every worker has ended (after the final statistics)."""
        with self._cond:
            self._last.append({"type": "finished", "exit_code": exit_code})
            self._cond.notify()

    def _pending(self) -> bool:
        return bool(self._first or self._stats or self._lines or self._last or self.dropped)

    def _take(self) -> list[dict[str, Any]] | None:
        with self._cond:
            while not (self._pending() or self._closing):
                self._cond.wait()
            if not self._pending():
                return None
            out = self._first
            self._first = []
            lines = list(self._lines)
            self._lines.clear()
            dropped, self.dropped = self.dropped, 0
            out += line_messages(lines, dropped)
            if self._stats is not None:
                out.append(self._stats)
                self._stats = None
            out += self._last
            self._last = []
            return out

    def _write_loop(self) -> None:
        try:
            while True:
                batch = self._take()
                if batch is None:
                    break
                for message in batch:
                    self._to_gui.write(encode(message))
                self._to_gui.flush()
        except (OSError, ValueError):
            self.gone.set()
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._to_gui.close()

    # ----- receiving -----

    def _read_loop(self) -> None:
        try:
            for raw in self._from_gui:
                message = decode(raw)
                if message is None:
                    continue
                kind = message.get("type")
                if kind == "ready":
                    self.ready.set()
                elif kind == "keep_open":
                    self.keep_open = True
                elif kind == "command":
                    command = message.get("command")
                    if valid_command(command):
                        if command is None:
                            self.exit_requested = True
                        self._on_command(command)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._from_gui.close()
            self.gone.set()

    # ----- state -----

    def failure(self, ready_timeout: float) -> str | None:
        """Why the GUI is no longer usable (None while it is, or after the user's Exit)."""
        if self.exit_requested:
            return None
        code = self.process.poll() if self.process is not None else None
        if self.gone.is_set() or code is not None:
            if not self.ready.is_set():
                return "the GUI could not start" + (f" (exit code {code})" if code else "")
            return "the GUI ended unexpectedly" + (f" (exit code {code})" if code else "")
        if not self.ready.is_set() and time.monotonic() - self.started > ready_timeout:
            return f"the GUI did not start within {ready_timeout:.0f} s"
        return None

    def wait_closed(
        self, timeout: float | None, interrupted: Callable[[], bool], until_keep_open: bool = False
    ) -> None:
        """Waits until the GUI closes (its pipe ends), ``timeout`` passes or ``interrupted()``.

        With ``until_keep_open``, also stops when the user asks to keep the window open.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.gone.is_set() and not interrupted():
            if until_keep_open and self.keep_open:
                break
            if self.process is not None and self.process.poll() is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.gone.wait(0.1)

    def close(self, grace: float = 2.0) -> None:
        """Stops the writer, closes the pipes and ends the GUI process.

        The GUI gets an end of file and closes its window; a GUI that does not end within
        ``grace`` seconds (or does not read any more) is killed.
        """
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._writer.join(grace)
        if self._writer.is_alive() and self.process is not None:
            self.process.kill()  # blocked in a write to a GUI that reads no more
            self._writer.join(grace)
        if not self._writer.is_alive():  # closing under a blocked write would wait for it
            with contextlib.suppress(OSError, ValueError):
                self._to_gui.close()
        if self.process is not None:
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(grace)


class Endpoint:
    """GUI side of the channel: a reader thread queues the control's messages.

    Args:
        from_control: Binary file the control's messages arrive on.
        to_control: Binary file the GUI's messages are written to.
    """

    def __init__(self, from_control: IO[bytes], to_control: IO[bytes]) -> None:
        """Starts the reader thread."""
        self._in = from_control
        self._out = to_control
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.closed = False
        self._reader = threading.Thread(target=self._read_loop, name="control-reader", daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        try:
            for raw in self._in:
                message = decode(raw)
                if message is not None:
                    self._queue.put(message)
        except (OSError, ValueError):
            pass
        with contextlib.suppress(OSError, ValueError):
            self._in.close()
        self._queue.put({"type": "eof"})

    def wait_setup(self, timeout: float) -> dict[str, Any]:
        """Waits for the setup message.

        Raises:
            TimeoutError: If it does not arrive within ``timeout`` seconds or the control ends.
        """
        try:
            message = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no setup message from the control") from None
        if message.get("type") != "setup":
            raise TimeoutError(f"expected the setup message, got {message.get('type')!r}")
        return message

    def messages(self) -> list[dict[str, Any]]:
        """Every message received since the last call."""
        return drain(self._queue)

    def send(self, message: dict[str, Any]) -> None:
        """Sends a message to the control (ignored once the control has gone)."""
        with self._lock:
            if self.closed:
                return
            try:
                self._out.write(encode(message))
                self._out.flush()
            except (OSError, ValueError):
                self.closed = True

    def command(self, command: Any) -> None:
        """Sends a command for ``Control.commands``."""
        self.send({"type": "command", "command": command})

    def close(self) -> None:
        """Closes the channel towards the control."""
        with self._lock:
            self.closed = True
            with contextlib.suppress(OSError, ValueError):
                self._out.close()
