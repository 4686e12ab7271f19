"""The control GUI (mode ``gui``): a "Buffer Manager" window in its own process.

The window runs in a separate Python process (``python -m mimocorb2._gui``) so that drawing never
slows the data path. The control talks to it through :class:`~mimocorb2._gui.link.GuiLink`: it
sends the statistics (≥ 2 Hz) and the worker output, and receives the commands of the buttons,
which go into ``Control.commands`` exactly like the terminal's commands. To the control, the GUI
is one face of the run (:class:`~mimocorb2._gui.face.GuiFace`).

When the GUI cannot run (no display, no Qt binding or pyqtgraph, or the GUI process fails), the
control prints why and the run continues in the terminal (``kbd``). When every worker has
finished, the control returns as always; the window shows the final state for ``linger`` seconds
(``MIMOCORB2_GUI_LINGER``, default 5) and closes itself unless the user presses *Keep open*,
in which case the control waits until the window is closed.

This module imports no Qt: only the GUI process does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from mimocorb2._control_types import RunInfo
from mimocorb2._gui.link import GuiLink

__all__ = ["GuiLink", "start", "unavailable_reason"]

READY_TIMEOUT_S = 30.0
"""Seconds the GUI process may take to show its window before the control gives up on it."""

DEFAULT_LINGER_S = 5.0
"""Seconds the window shows the final state after every worker has ended."""

STATS_INTERVAL_S = 0.4
"""Seconds between two statistics messages (the GUI refreshes at ≥ 2 Hz)."""

_NO_DISPLAY = "the GUI needs a display"
_HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb", "minimalegl", "webgl")


def unavailable_reason(need_real_display: bool = False) -> str | None:
    """Why the GUI cannot be shown here, or None when it can.

    Args:
        need_real_display: Ignore ``QT_QPA_PLATFORM=offscreen`` and similar (the default mode
            only opens a window a user can see).
    """
    from mimocorb2._qt import binding_problem

    problem = binding_problem()
    if problem is not None:
        return f"the GUI cannot use Qt: {problem}"
    if sys.platform in ("darwin", "win32"):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if platform in _HEADLESS_PLATFORMS and not need_real_display:
        return None
    if platform.startswith("wayland"):
        if os.environ.get("WAYLAND_DISPLAY"):
            return None
    elif platform == "xcb":
        if os.environ.get("DISPLAY"):
            return None
    elif os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        f"{_NO_DISPLAY}, but neither DISPLAY nor WAYLAND_DISPLAY is set "
        "(QT_QPA_PLATFORM=offscreen draws without one)"
    )


def linger_seconds() -> float:
    """How long the window shows the final state (``MIMOCORB2_GUI_LINGER``)."""
    try:
        return max(0.0, float(os.environ.get("MIMOCORB2_GUI_LINGER", DEFAULT_LINGER_S)))
    except ValueError:
        return DEFAULT_LINGER_S


def setup_info(run: RunInfo) -> dict[str, Any]:
    """The setup message: what the window needs to know about the run (sent first)."""
    return {
        "title": f"mimocorb2 Buffer Manager: {run['setup_name']}",
        **run,
        "linger": linger_seconds(),
    }


def _open_channel(run_dir: Path) -> tuple[IO[bytes], IO[bytes], Any]:
    """Starts the GUI process; returns ``(to_gui, from_gui, process)``.

    Tests replace this to run the window in their own process over :func:`link.pipe_pair`.
    """
    log = open(run_dir / "logs" / "gui.log", "wb")  # noqa: SIM115 - the child's stderr
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "mimocorb2._gui"],  # -P: not the cwd's mimocorb2/
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            close_fds=True,
        )
    finally:
        log.close()
    assert process.stdin is not None and process.stdout is not None
    return process.stdin, process.stdout, process


def start(run: RunInfo, on_command: Callable[[Any], None]) -> GuiLink | None:
    """Starts the GUI for a run; prints why and returns None when it cannot run.

    Args:
        run: The run (its setup message is sent first).
        on_command: Takes the commands of the window's buttons.
    """
    reason = unavailable_reason()
    if reason is None:
        try:
            to_gui, from_gui, process = _open_channel(Path(run["run_dir"]))
        except OSError as e:
            reason = f"the GUI process could not be started: {e}"
    if reason is not None:
        told = run["display_problem"]
        if told is not None and reason.startswith(_NO_DISPLAY):
            reason = "the GUI needs a display as well"  # the control has said why
        print(f"mimocorb2: {reason}; running in the terminal instead", file=sys.stderr)
        return None
    link = GuiLink(to_gui, from_gui, on_command, process)
    link.send_setup(setup_info(run))
    return link


def gui_log_tail(run_dir: Path) -> str:
    """The GUI process's last error line from ``logs/gui.log``, and where to read more."""
    path = run_dir / "logs" / "gui.log"
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    if not lines:
        return ""
    hints = ("error", "could not", "cannot", "failed")
    # the first error line names the cause; Qt's later lines are generic
    line = next((ln for ln in lines if any(h in ln.lower() for h in hints)), lines[-1])
    plugin = next((ln for ln in lines if "qt platform plugin" in ln.lower()), None)
    if plugin is not None:
        from mimocorb2._qt_libs import platform_plugin_hint

        m = re.search(r'platform plugin "([^"]+)"', plugin)
        hint = platform_plugin_hint(m.group(1) if m else "xcb")
        if hint:
            return f"{hint} (Qt: {plugin}; see {path})"
    return f"{line} (see {path})"
