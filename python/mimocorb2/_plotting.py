"""Shared helpers of the plotting workers (``observers``, ``visualizers``): Qt and pyqtgraph.

Every plotting worker runs in its own process and owns its window there. This module

- finds out whether a window can be shown at all (:func:`display_problem`): Qt bindings and
  pyqtgraph installed, a display (``DISPLAY``, ``WAYLAND_DISPLAY``) or a display-less Qt
  platform (``QT_QPA_PLATFORM=offscreen``), and a Qt application that really starts;
- creates the application (:func:`application`) and runs a window with timers until the
  observed buffer ends or the window is closed (:func:`run_window`);
- saves a PNG of a window (:func:`save_screenshot`, used by the ``screenshot`` config key);
- reads the common configuration values (:func:`interval_config`, :func:`color`,
  :func:`grid_shape`).

Qt is imported lazily, inside the functions: importing this module (or the function modules
using it) never loads Qt.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mimocorb2._qt import INSTALL_HINT

__all__ = [
    "DISPLAYLESS_PLATFORMS",
    "application",
    "color",
    "display_problem",
    "grid_shape",
    "interval_config",
    "legend_below",
    "mark_finished",
    "run_window",
    "save_screenshot",
    "screenshot_path",
    "skip_without_display",
    "stay_open_default",
]

DISPLAYLESS_PLATFORMS = frozenset(
    {"offscreen", "minimal", "minimalegl", "vnc", "linuxfb", "eglfs", "webgl"}
)
"""Qt platform plugins that need no window system (``QT_QPA_PLATFORM``)."""

# matplotlib's default colour cycle ("tab10"); also the meaning of the names C0..C9.
_TAB10 = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_TAB_NAMES = (
    "blue",
    "orange",
    "green",
    "red",
    "purple",
    "brown",
    "pink",
    "gray",
    "olive",
    "cyan",
)

_IMPORT_FAILED = 3
_PROBE = (
    "import sys\n"
    "try:\n"
    "    from mimocorb2._qt import QtWidgets, pg\n"
    "except Exception as e:\n"
    "    print(e, file=sys.stderr)\n"
    f"    sys.exit({_IMPORT_FAILED})\n"
    "app = QtWidgets.QApplication(sys.argv[:1] or ['mimocorb2'])\n"
    "app.processEvents()\n"
)
_PROBE_TIMEOUT_S = 30.0
_probe_result: dict[str, str | None] = {}
_app: Any = None  # the QApplication: Qt destroys it when the last reference goes
_qt_handler: Any = None  # the Qt message handler, kept alive


# ----- can a window be shown? -----


def _platforms() -> list[str]:
    """The Qt platform plugins named in ``QT_QPA_PLATFORM`` (``a;b`` lists fallbacks)."""
    value = os.environ.get("QT_QPA_PLATFORM", "")
    return [p.split(":", 1)[0].strip().lower() for p in value.split(";") if p.strip()]


def _environment_problem() -> str | None:
    """Why the environment offers no display, or None."""
    if sys.platform in ("win32", "darwin"):
        return None
    if any(p in DISPLAYLESS_PLATFORMS for p in _platforms()):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        "neither DISPLAY nor WAYLAND_DISPLAY is set (set QT_QPA_PLATFORM=offscreen to "
        "render without a display)"
    )


def _import_problem() -> str | None:
    """Why Qt or pyqtgraph cannot be imported, or None."""
    from mimocorb2._qt import binding_problem

    problem = binding_problem()
    if problem is not None:
        return _import_message(problem)
    try:
        from mimocorb2._qt import QtWidgets, pg  # noqa: F401
    except Exception as e:  # ImportError, or a missing system library
        return _import_message(str(e))
    return None


def _import_message(error: str) -> str:
    return (
        f"Qt for Python and pyqtgraph are not usable ({error}); install them ({INSTALL_HINT}) "
        "and the system libraries they need (on Debian: .ci/qt-deps.sh)"
    )


def _probe_problem() -> str | None:
    """Starts a Qt application in a child process: Qt aborts the process when it cannot."""
    try:
        r = subprocess.run(
            [sys.executable, "-c", _PROBE],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"starting a Qt application took longer than {_PROBE_TIMEOUT_S:g} s"
    except OSError as e:
        return f"cannot test the Qt application ({e})"
    if r.returncode == 0:
        return None
    lines = [
        line.strip()
        for line in r.stderr.decode(errors="replace").splitlines()
        if line.strip() and "XDG_RUNTIME_DIR" not in line
    ]
    detail = "; ".join(lines[-3:]) or f"exit code {r.returncode}"
    if r.returncode == _IMPORT_FAILED:
        return _import_message(detail)
    plugin = next((line for line in lines if "qt platform plugin" in line.lower()), None)
    if plugin is not None:
        from mimocorb2._qt_libs import platform_plugin_hint

        name = plugin.split('platform plugin "', 1)[-1].split('"', 1)[0] if '"' in plugin else ""
        hint = platform_plugin_hint(name or "xcb")
        if hint:
            return f"Qt cannot start a window: {hint}"
    return f"Qt cannot start a window ({detail})"


def display_problem(probe: bool = True) -> str | None:
    """Tells why no plot window can be shown in this process, or None if one can.

    Checks the environment first (a display, or a display-less Qt platform such as
    ``QT_QPA_PLATFORM=offscreen``). Then, with ``probe``, whether the Qt bindings and
    pyqtgraph import and a Qt application really starts, tested in a child process (Qt
    aborts a process whose platform plugin fails to load; the result is cached per process);
    without ``probe`` only whether they import, in this process.

    Args:
        probe: Whether to test-start a Qt application in a child process.

    Returns:
        A one-line reason, or None.
    """
    problem = _environment_problem()
    if problem is not None:
        return problem
    if not probe:
        return _import_problem()
    key = os.environ.get("QT_QPA_PLATFORM", "") + "|" + os.environ.get("DISPLAY", "")
    key += "|" + os.environ.get("WAYLAND_DISPLAY", "") + "|" + os.environ.get("QT_API", "")
    if key not in _probe_result:
        _probe_result[key] = _probe_problem()
    return _probe_result[key]


def skip_without_display(io: Any, function: str) -> bool:
    """Logs a clear message and returns True if no window can be shown.

    The plotting worker then simply returns: it consumes nothing, so the run goes on
    without it.

    Args:
        io: The worker's BufferIO (for its name and logger).
        function: Name of the prebuilt function, e.g. ``observers.oscilloscope``.
    """
    problem = display_problem()
    if problem is None:
        return False
    # The control says it once per run for every plot worker; standalone, say it here.
    noted = os.environ.get("MIMOCORB2_NO_DISPLAY_NOTED") == "1"
    io.logger.log(
        logging.DEBUG if noted else logging.WARNING,
        "no display: %s is skipped; %s; the run goes on without the plot",
        function,
        problem,
    )
    return True


# ----- configuration values -----


def interval_config(io: Any, key: str = "update_interval", default: float = 1.0) -> float:
    """A positive number of seconds from the worker configuration (None: the default).

    Raises:
        ValueError: If the value is not a positive number.
    """
    value = io.get(key)
    if value is None:
        value = default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(
            f"worker '{io.name}': config '{key}' must be a positive number of seconds, "
            f"got {value!r}"
        )
    return seconds


def screenshot_path(io: Any) -> Path | None:
    """The ``screenshot`` config value as a path (relative paths: in the run directory)."""
    value = io.get("screenshot")
    if not value:
        return None
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else Path(io.run_dir) / path


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of a near-square grid for ``n`` plots."""
    n = max(int(n), 1)
    cols = 1
    while cols * cols < n:
        cols += 1
    rows = -(-n // cols)
    return rows, cols


def color(spec: Any, index: int = 0) -> Any:
    """A QColor from a colour specification; None: the ``index``-th default colour.

    Accepted: what :func:`pyqtgraph.mkColor` takes (one-letter codes ``r g b c m y k w``, SVG
    names such as ``orange``, ``#rrggbb``, (r, g, b[, a]) tuples), and matplotlib's cycle
    names ``C0`` .. ``C9`` and ``tab:<name>``.

    Raises:
        ValueError: For an unknown colour.
    """
    from mimocorb2._qt import pg

    if spec is None:
        return pg.mkColor(_TAB10[index % len(_TAB10)])
    if isinstance(spec, str):
        s = spec.strip()
        if len(s) == 2 and s[0] in "cC" and s[1].isdigit():
            return pg.mkColor(_TAB10[int(s[1])])
        if s.lower().startswith("tab:") and s[4:].lower() in _TAB_NAMES:
            return pg.mkColor(_TAB10[_TAB_NAMES.index(s[4:].lower())])
        spec = s
    elif isinstance(spec, list):
        spec = tuple(spec)
    try:
        return pg.mkColor(spec)
    except Exception as e:
        raise ValueError(f"unknown colour {spec!r}") from e


# ----- application, window loop, screenshots -----

STAY_OPEN_ENV = "MIMOCORB2_PLOTS_STAY_OPEN"
"""``1``: plot windows stay open after the run, ``0``: they close (default: with a display)."""

FINISHED_MARK = "run finished"


def stay_open_default() -> bool:
    """Whether plot windows stay open after their buffer ended (:data:`STAY_OPEN_ENV`).

    Without the variable: yes when a user can see them (not on a display-less platform such
    as ``offscreen``, where nobody could close them).
    """
    value = os.environ.get(STAY_OPEN_ENV, "").strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    return not any(p in DISPLAYLESS_PLATFORMS for p in _platforms())


def mark_finished(window: Any) -> None:
    """Marks a plot window "run finished": its window title and the title of each plot."""
    title = window.windowTitle()
    if FINISHED_MARK not in title:
        window.setWindowTitle(f"{title} ({FINISHED_MARK})")
    plots = []
    if hasattr(window, "getPlotItem"):
        plots.append(window.getPlotItem())
    layout = getattr(window, "ci", None)
    if layout is not None:
        plots += [item for item in layout.items if hasattr(item, "titleLabel")]
    for plot in plots:
        text = plot.titleLabel.text or ""
        if FINISHED_MARK not in text:
            plot.setTitle(f"{text} ({FINISHED_MARK})" if text else FINISHED_MARK)


def _qt_message_handler(logger: logging.Logger) -> Callable[..., None]:
    def handler(mode: Any, _context: Any, message: str) -> None:
        try:
            from mimocorb2._qt import QtCore

            level = logging.DEBUG
            if mode in (QtCore.QtMsgType.QtCriticalMsg, QtCore.QtMsgType.QtFatalMsg):
                level = logging.ERROR
            logger.log(level, "Qt: %s", message)
        except Exception:  # never raise into Qt (it would abort the process)
            pass

    return handler


def application(logger: logging.Logger | None = None) -> Any:
    """The process's QApplication, created on first use.

    Qt's own messages (e.g. warnings of the offscreen platform) go to ``logger``: errors
    as errors, the rest at debug level.
    """
    from mimocorb2._qt import QtCore, QtWidgets

    global _app, _qt_handler
    app = QtWidgets.QApplication.instance()
    if app is None:
        if logger is not None:
            _qt_handler = _qt_message_handler(logger)
            QtCore.qInstallMessageHandler(_qt_handler)
        app = QtWidgets.QApplication(sys.argv[:1] or ["mimocorb2"])
    _app = app
    return app


def legend_below(plot: Any, entries: int, columns: int = 5, **options: Any) -> Any:
    """A legend under the x-axis of ``plot`` (a PlotItem), so it never hides a curve.

    Curves plotted afterwards with ``name=`` appear in it; clicking an entry hides or shows
    its curve.

    Args:
        plot: The pyqtgraph PlotItem.
        entries: How many entries it will hold (to choose the number of columns).
        columns: At most this many entries per row.
        **options: Passed to :class:`pyqtgraph.LegendItem` (``brush``, ``labelTextColor`` ...).

    Returns:
        The LegendItem.
    """
    from mimocorb2._qt import pg

    options.setdefault("labelTextSize", "8pt")
    legend = pg.LegendItem(colCount=max(1, min(entries, columns)), **options)
    plot.layout.addItem(legend, 4, 1)  # rows: title, top axis, view, bottom axis, legend
    plot.legend = legend
    return legend


def save_screenshot(widget: Any, path: str | Path, logger: logging.Logger | None = None) -> bool:
    """Saves a PNG of ``widget`` (after letting pending layout and paint events run).

    Returns:
        Whether the file was written.
    """
    from mimocorb2._qt import QtWidgets

    app = QtWidgets.QApplication.instance()
    if app is not None:
        for _ in range(3):  # axes resize themselves to their labels after the first paint
            app.processEvents()
            time.sleep(0.01)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = bool(widget.grab().save(str(path), "PNG"))
    except Exception as e:
        ok = False
        if logger is not None:
            logger.warning("screenshot %s failed: %s", path, e)
    else:
        if logger is not None:
            if ok:
                logger.info("screenshot saved to %s", path)
            else:
                logger.warning("screenshot %s could not be written", path)
    return ok


class _LoopState:
    """The state of :func:`run_window`'s event loop.

    Attributes:
        reason (str | None): ``"ended"`` (the observed buffer ended), ``"closed"`` (the
            window was closed) or None while running.
        error (BaseException | None): An exception raised by a callback; it ends the loop
            and is re-raised by :func:`run_window`.
    """

    def __init__(self) -> None:
        """Starts with no reason and no error."""
        self.reason: str | None = None
        self.error: BaseException | None = None


def run_window(
    window: Any,
    *,
    refresh: Callable[[], Any],
    alive: Callable[[], bool],
    interval: float,
    poll: float = 0.1,
    screenshot: str | Path | None = None,
    logger: logging.Logger | None = None,
    size: tuple[int, int] = (900, 560),
    stay_open: bool | None = None,
) -> str:
    """Shows ``window`` and runs the Qt event loop until the buffer ends or the window closes.

    ``refresh()`` runs once at the start, then every ``interval`` seconds (a QTimer), and a
    last time when ``alive()`` turned false (checked every ``poll`` seconds). An exception
    raised by a callback (also KeyboardInterrupt) ends the loop and is re-raised here: an
    exception escaping into Qt would abort the process.

    With ``stay_open`` (default: :func:`stay_open_default`) the window is not closed when the
    buffer ends: it keeps the final view, marked "run finished" (:func:`mark_finished`),
    until the user closes it.

    Args:
        window: The top-level widget.
        refresh: Updates the plots.
        alive: Whether the observed buffer still runs.
        interval: Seconds between refreshes.
        poll: Seconds between checks of ``alive``.
        screenshot: If given, a PNG of the window is saved there at the end.
        logger: For messages.
        size: Initial window size in pixels.
        stay_open: Keep the window open after the end, until the user closes it.

    Returns:
        ``"ended"`` if the observed buffer ended, ``"closed"`` if the window was closed.
    """
    from mimocorb2._qt import QtCore

    app = application(logger)
    state = _LoopState()
    shot_taken = False
    if stay_open is None:
        stay_open = stay_open_default()
    ended = False

    def finish(reason: str) -> None:
        nonlocal shot_taken
        if state.reason is not None:
            return
        state.reason = reason
        if screenshot is not None and not shot_taken:
            shot_taken = True
            save_screenshot(window, screenshot, logger)
        app.quit()

    def guarded(fn: Callable[[], Any]) -> Callable[[], None]:
        def call() -> None:
            if state.reason is not None:
                return
            try:
                fn()
            except BaseException as e:  # re-raised after the loop
                state.error = e
                state.reason = "error"
                app.quit()

        return call

    def check_alive() -> None:
        nonlocal ended, shot_taken
        if ended or alive():
            return
        refresh()
        if not stay_open:
            finish("ended")
            return
        ended = True
        refresh_timer.stop()
        alive_timer.stop()
        mark_finished(window)
        if screenshot is not None and not shot_taken:
            shot_taken = True
            save_screenshot(window, screenshot, logger)
        if logger is not None:
            logger.info("run finished: the window stays open until you close it")

    class _CloseWatcher(QtCore.QObject):
        def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 (Qt name)
            if obj is window and event.type() == QtCore.QEvent.Type.Close:
                finish_closed()
            return False

    def finish_closed() -> None:
        nonlocal shot_taken
        if state.reason is None:
            state.reason = "ended" if ended else "closed"
            if screenshot is not None and not shot_taken:
                shot_taken = True
                save_screenshot(window, screenshot, logger)
            app.quit()

    watcher = _CloseWatcher()
    window.installEventFilter(watcher)
    window.resize(*size)
    window.show()
    if logger is not None:
        logger.info("window open: %s", window.windowTitle())

    refresh_timer = QtCore.QTimer()
    refresh_timer.setInterval(max(int(interval * 1000), 1))
    refresh_timer.timeout.connect(guarded(refresh))
    alive_timer = QtCore.QTimer()
    alive_timer.setInterval(max(int(min(poll, interval) * 1000), 1))
    alive_timer.timeout.connect(guarded(check_alive))

    guarded(refresh)()
    guarded(check_alive)()
    if state.reason is None and (not ended or window.isVisible()):
        refresh_timer.start()
        alive_timer.start()
        (getattr(app, "exec", None) or app.exec_)()
    refresh_timer.stop()
    alive_timer.stop()
    window.removeEventFilter(watcher)
    if screenshot is not None and not shot_taken:
        save_screenshot(window, screenshot, logger)
    if window.isVisible():
        window.close()
    app.processEvents()
    if state.error is not None:
        raise state.error
    return state.reason or "closed"
