"""The "Buffer Manager" window: live plots, tables, logs, data flow and the control buttons.

The window knows the control only through an :class:`~mimocorb2._gui.link.Endpoint`: it reads
the statistics and worker output every 100 ms and sends the commands of its buttons, the same
commands the terminal's ``kbd`` commands send.
"""

from __future__ import annotations

import collections
import html
import math
import sys
import time
from typing import Any

import numpy as np
import psutil

from mimocorb2._gui.colors import ALIVE_COLOR, FAILED_COLOR, STOPPED_COLOR
from mimocorb2._gui.flow import DataFlowView
from mimocorb2._gui.logs import LogTab
from mimocorb2._gui.tables import StatusTables, last_error
from mimocorb2._gui.tabs import HISTORY_S, MIN_RATE, CpuPlot, FillPlot, ProcessPlot, RatePlot
from mimocorb2._qt import QtCore, QtGui, QtWidgets, pg

TABS = ("Rates", "CPU", "Processes", "Buffers", "Logs", "Data Flow")
#: While only the clock and the CPU figures change (an idle or paused run), the plots and
#: tables are redrawn this often (s), the labels with every update: an idle window then costs
#: a fraction of a percent of a core instead of redrawing everything every second.
IDLE_REDRAW_S = 5.0

# (attribute, label, shortcut, command or None, tooltip); the commands are the terminal's
BUTTONS = (
    (
        "pause_button",
        "Pause Roots",
        "Ctrl+P",
        None,
        "Pause the root buffers (toggles to Resume Roots): their events are counted and "
        "discarded.\nTerminal: 'pause roots' / 'resume roots'.",
    ),
    (
        "shutdown_roots_button",
        "Shutdown Roots",
        "Ctrl+D",
        ["buffer", "roots", "shutdown"],
        "Shut the root buffers down: no new events, the pipeline drains and the workers end."
        "\nTerminal: 'shutdown roots'.",
    ),
    (
        "shutdown_all_button",
        "Shutdown All Buffers",
        "Ctrl+Shift+D",
        ["buffer", "all", "shutdown"],
        "Shut every buffer down at once; events still queued are not processed."
        "\nTerminal: 'shutdown all'.",
    ),
    (
        "kill_button",
        "Kill Workers",
        "Ctrl+K",
        ["worker", "all", "shutdown"],
        "Terminate every worker process (SIGTERM, SIGKILL after 2 s), after asking; they are "
        "shown as stopped by the user.\nTerminal: 'shutdown workers'.",
    ),
    (
        "exit_button",
        "Exit",
        "Ctrl+Q",
        None,
        "Leave: asks first while processes still run (then kills them).\nTerminal: 'exit'.",
    ),
)


class ShortcutButton(QtWidgets.QPushButton):
    """A push button whose shortcut survives a new label.

    ``QAbstractButton.setText`` replaces the shortcut by the label's mnemonic (none), so a
    relabelled button (Pause Roots / Resume Roots) would answer its key only once.
    """

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        """Sets the label and keeps the shortcut."""
        key = self.shortcut()
        super().setText(text)
        self.setShortcut(key)


def command_text(command: Any) -> str:
    """The terminal command of the same effect (for the log and the status bar)."""
    if command is None:
        return "exit"
    kind, which, action = command
    if kind == "worker":
        return "shutdown workers" if which == "all" else f"{action} workers {which}"
    return f"{action} {which}"


class BufferManagerWindow(QtWidgets.QMainWindow):
    """The control window.

    Args:
        endpoint: The channel to the control (``messages()``, ``send()``, ``command()``,
            ``close()``).
        setup: The setup message of the control (buffers, roots, workers, run directory,
            linger time).
        poll_ms: Milliseconds between two reads of the channel.
    """

    def __init__(self, endpoint: Any, setup: dict[str, Any], poll_ms: int = 100) -> None:
        """Builds the window and tells the control it is ready."""
        super().__init__()
        self.endpoint = endpoint
        self.setup = setup
        self.roots: list[str] = list(setup["roots"])
        self.buffer_names: list[str] = list(setup["buffers"])
        self.worker_names: list[str] = list(setup["workers"])
        self.linger = float(setup.get("linger", 5.0))
        self.stats: dict[str, Any] | None = None
        self.stats_received = 0
        self._drawn: tuple[Any, float] | None = None  # (activity, monotonic time) last drawn
        self.failures: list[dict[str, Any]] = []
        self.finished = False
        self.control_gone = False
        self.exit_code: int | None = None
        self.sent: list[Any] = []
        self._roots_paused = False
        self._pause_hold_until = 0.0
        self._countdown: float | None = None
        self._close_ok = False
        self._me = psutil.Process()
        self._me.cpu_percent(None)
        hist = int(HISTORY_S * 5) + 10
        self.t_hist: collections.deque[float] = collections.deque(maxlen=hist)
        self.rate_hist = {b: collections.deque(maxlen=hist) for b in self.buffer_names}
        self.cpu_names = [*self.worker_names, "control", "gui"]
        self.cpu_hist = {w: collections.deque(maxlen=hist) for w in self.cpu_names}

        pg.setConfigOptions(antialias=True, background="w", foreground="k")
        self.setWindowTitle(setup.get("title", "mimocorb2 Buffer Manager"))
        self.setMinimumSize(800, 600)
        screen = QtWidgets.QApplication.primaryScreen()
        avail = screen.availableGeometry() if screen is not None else None
        if avail is not None and avail.width() > 0:  # fits a laptop screen
            self.resize(min(1240, int(avail.width() * 0.95)), min(760, int(avail.height() * 0.9)))
        else:
            self.resize(1240, 760)
        self._build()
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.poll)
        self.timer.start(poll_ms)
        self.endpoint.send({"type": "ready"})

    # ----- building -----

    def _build(self) -> None:
        central = QtWidgets.QWidget()
        outer = QtWidgets.QVBoxLayout(central)
        outer.setContentsMargins(8, 6, 8, 6)

        self.banner = QtWidgets.QFrame()
        self.banner.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        banner_row = QtWidgets.QHBoxLayout(self.banner)
        banner_row.setContentsMargins(8, 4, 8, 4)
        self.banner_label = QtWidgets.QLabel()
        self.banner_label.setWordWrap(True)
        self.keep_open_button = QtWidgets.QPushButton("Keep Open")
        self.keep_open_button.setToolTip("Keep the window open to look at the final state")
        self.keep_open_button.clicked.connect(self.keep_open)
        banner_row.addWidget(self.banner_label, 1)
        banner_row.addWidget(self.keep_open_button)
        self.banner.hide()
        outer.addWidget(self.banner)

        status = QtWidgets.QHBoxLayout()
        bold = QtGui.QFont()
        bold.setBold(True)
        bold.setPointSizeF(bold.pointSizeF() * 1.1)
        self.time_label = QtWidgets.QLabel("Time Active: 0 s")
        self.procs_label = QtWidgets.QLabel("Processes Alive: -")
        self.state_label = QtWidgets.QLabel("Starting")
        for label in (self.time_label, self.procs_label, self.state_label):
            label.setFont(bold)
            status.addWidget(label)
            status.addSpacing(24)
        status.addStretch(1)
        outer.addLayout(status)
        self.failure_label = QtWidgets.QLabel()
        self.failure_label.setWordWrap(True)
        self.failure_label.setTextInteractionFlags(
            QtCore.Qt.TextInteractionFlag.TextSelectableByMouse
        )
        self.failure_label.setStyleSheet(f"color: {FAILED_COLOR}")
        self.failure_label.hide()
        outer.addWidget(self.failure_label)

        splitter = self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        splitter.setChildrenCollapsible(False)
        splitter.splitterMoved.connect(self._splitter_moved)
        self.tables = StatusTables(self.roots, self.worker_names, self.setup["workers"])
        self.roots_table = self.tables.roots_table
        self.workers_table = self.tables.workers_table
        splitter.addWidget(self.tables)
        self.tabs = QtWidgets.QTabWidget()
        self.rate_plot = RatePlot(self.buffer_names, self.roots)
        self.cpu_plot = CpuPlot(self.cpu_names)
        self.proc_plot = ProcessPlot(self.worker_names, self.setup["workers"])
        self.fill_plot = FillPlot(self.buffer_names, self.setup["buffers"])
        self.logs_widget = LogTab(self.worker_names)
        # the log widgets under the window's names (tests, scripts)
        self.log_view = self.logs_widget.view
        self.log_filter = self.logs_widget.worker_filter
        self.log_errors_only = self.logs_widget.stderr_only
        self.flow_view = DataFlowView(self.setup)
        self.tabs.addTab(self.rate_plot, "Rates")
        self.tabs.addTab(self.cpu_plot, "CPU")
        self.tabs.addTab(self.proc_plot, "Processes")
        self.tabs.addTab(self.fill_plot, "Buffers")
        self.tabs.addTab(self.logs_widget, "Logs")
        self.tabs.addTab(self.flow_view, "Data Flow")
        for i in range(self.tabs.count()):
            self.tabs.setTabToolTip(i, f"Ctrl+{i + 1}")
            shortcut = QtGui.QShortcut(QtGui.QKeySequence(f"Ctrl+{i + 1}"), self)
            shortcut.activated.connect(lambda i=i: self.tabs.setCurrentIndex(i))
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        rows = max(len(self.roots), len(self.worker_names), 2)
        row_h = self.workers_table.verticalHeader().defaultSectionSize()
        self._tables_height = 60 + (rows + 1) * row_h
        self._user_split = False
        outer.addWidget(splitter, 1)

        buttons = QtWidgets.QHBoxLayout()
        for attr, label, key, command, tip in BUTTONS:
            button = ShortcutButton(label)
            button.setShortcut(QtGui.QKeySequence(key))
            button.setToolTip(f"{tip}\nShortcut: {key}")
            button.setMinimumHeight(32)
            if attr == "kill_button":
                button.clicked.connect(self.kill_workers)
            elif command is not None:
                button.clicked.connect(lambda _=False, c=command: self.send_command(c))
            setattr(self, attr, button)
            if attr == "exit_button":
                buttons.addStretch(1)
            buttons.addWidget(button)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.exit_button.clicked.connect(self.close)
        outer.addLayout(buttons)
        self.setCentralWidget(central)
        run_dir = QtWidgets.QLabel(f"run directory: {self.setup.get('run_dir', '')}")
        run_dir.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.statusBar().addPermanentWidget(run_dir)
        self.statusBar().showMessage("waiting for the statistics of the control")

    def _splitter_moved(self, _pos: int, _index: int) -> None:
        self._user_split = True

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 - Qt API
        """Keeps the tables at their height but at most 35 % (until the splitter is moved)."""
        super().resizeEvent(event)
        QtCore.QTimer.singleShot(0, self._fit_splitter)  # once the layout has the new size

    def _fit_splitter(self) -> None:
        if not self._user_split:
            total = self.splitter.height()
            top = max(90, min(self._tables_height, int(0.35 * total), total - 260))
            self.splitter.setSizes([top, max(total - top, 1)])

    # ----- commands -----

    def send_command(self, command: Any) -> None:
        """Sends a command to the control and notes it in the log and the status bar."""
        self.sent.append(command)
        self.endpoint.command(command)
        text = command_text(command)
        self.statusBar().showMessage(f"sent: {text}", 5000)
        self.logs_widget.append([("gui", "", "stdout", f"command: {text}")])

    def toggle_pause(self) -> None:
        """Pauses the roots, or resumes them when they are paused."""
        action = "resume" if self._roots_paused else "pause"
        self.send_command(["buffer", "roots", action])
        self._roots_paused = action == "pause"
        self._pause_hold_until = time.monotonic() + 2.0
        self._show_pause_state()

    def _show_pause_state(self) -> None:
        self.pause_button.setText("Resume Roots" if self._roots_paused else "Pause Roots")

    def kill_workers(self) -> None:
        """Asks, then terminates every worker process (Kill Workers)."""
        alive = self.processes_alive()
        if not alive:
            return
        if self._confirm(
            f"Kill all {alive} worker processes now?\n\nEvents still in the buffers are not "
            "processed and the results stay partial. (Shutdown Roots lets the workers finish "
            "their work instead.)"
        ):
            self.send_command(["worker", "all", "shutdown"])

    def keep_open(self) -> None:
        """Stops the closing countdown after the run finished."""
        self._countdown = None
        self.endpoint.send({"type": "keep_open"})
        self.keep_open_button.setEnabled(False)
        self._show_banner()

    def _confirm(self, text: str) -> bool:
        answer = QtWidgets.QMessageBox.question(
            self,
            "mimocorb2",
            text,
            QtWidgets.QMessageBox.StandardButton.Yes | QtWidgets.QMessageBox.StandardButton.No,
            QtWidgets.QMessageBox.StandardButton.No,
        )
        return answer == QtWidgets.QMessageBox.StandardButton.Yes

    def processes_alive(self) -> int:
        """Processes alive according to the newest statistics (0 once the run finished)."""
        if self.finished or self.control_gone:
            return 0
        if self.stats is None:  # no statistics yet: the workers are starting
            return sum(w["number_of_processes"] for w in self.setup["workers"].values())
        return int(self.stats.get("total_processes_alive", 0))

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt API
        """Exit: asks while processes run; Yes kills them, then ends the control's loop."""
        if not self._close_ok:
            alive = self.processes_alive()
            if alive:
                if not self._confirm(
                    f"{alive} processes still run.\n\nKill them and exit? (Shutdown Roots lets "
                    "them finish their work instead.)"
                ):
                    event.ignore()
                    return
                self.send_command(["worker", "all", "shutdown"])
            if not (self.finished or self.control_gone):
                self.send_command(None)
        self._close_ok = True
        self.timer.stop()
        self.endpoint.close()
        event.accept()

    # ----- receiving -----

    def poll(self) -> None:
        """Reads the channel and updates the window."""
        new_stats = False
        for message in self.endpoint.messages():
            kind = message.get("type")
            if kind == "stats":
                self._add_stats(message["stats"], message.get("failures", []))
                new_stats = True
            elif kind == "lines":
                lines = [tuple(line) for line in message.get("lines", [])]
                self.logs_widget.dropped += int(message.get("dropped", 0))
                self.logs_widget.append(lines)
            elif kind == "finished":
                self.finished = True
                self.exit_code = message.get("exit_code")
                self._countdown = time.monotonic() + self.linger
                self._show_banner()
            elif kind == "eof":
                self.control_gone = True
                if self.finished:  # the control stopped waiting for the window (Ctrl-C)
                    self._countdown = time.monotonic()
                else:
                    self._countdown = time.monotonic() + self.linger
                    self._show_banner()
        if new_stats:
            self.refresh()
        if self._countdown is not None:
            left = self._countdown - time.monotonic()
            if left <= 0:
                self._close_ok = True
                self.close()
            else:
                self._show_banner(left)

    def _add_stats(self, stats: dict[str, Any], failures: list[dict[str, Any]]) -> None:
        if self.stats is None:
            self.statusBar().clearMessage()
        self.stats = stats
        self.stats_received += 1
        self.failures = failures
        t = float(stats.get("time_active", 0.0))
        self.t_hist.append(t)
        for b in self.buffer_names:
            rate = float(stats["buffers"].get(b, {}).get("rate", 0.0))
            self.rate_hist[b].append(max(rate, MIN_RATE))
        for w in self.worker_names:
            self.cpu_hist[w].append(float(stats["workers"].get(w, {}).get("cpu_percent", 0.0)))
        self.cpu_hist["control"].append(float(stats.get("control", {}).get("cpu_percent", 0.0)))
        self.cpu_hist["gui"].append(float(self._me.cpu_percent(None)))

    # ----- drawing -----

    def refresh(self) -> None:
        """Redraws plots, tables and labels from the newest statistics."""
        stats = self.stats
        if stats is None:
            return
        activity = _activity(stats, len(self.failures), self.finished)
        now = time.monotonic()
        drawn = self._drawn
        if drawn is not None and drawn[0] == activity and now - drawn[1] < IDLE_REDRAW_S:
            self._refresh_labels(stats)
            return
        self._drawn = (activity, now)
        failed: dict[str, int] = {}
        errors: dict[str, list[dict[str, Any]]] = {}
        for f in self.failures:
            failed[f["worker"]] = failed.get(f["worker"], 0) + 1
            errors.setdefault(f["worker"], []).append(f)

        t = np.fromiter(self.t_hist, float)
        x_max = max(HISTORY_S, float(t[-1]) if len(t) else 0.0)
        self.rate_plot.show_history(t, x_max, self.rate_hist)
        self.cpu_plot.show_history(t, x_max, self.cpu_hist)
        self.proc_plot.update_stats(stats, failed)
        self.fill_plot.update_stats(stats)
        self.flow_view.update_stats(stats, failed)
        self.tables.update_stats(stats, failed, errors)
        self._refresh_labels(stats)

    def _refresh_labels(self, stats: dict[str, Any]) -> None:
        total = sum(w["number_of_processes"] for w in self.setup["workers"].values())
        alive = int(stats.get("total_processes_alive", 0))
        self.time_label.setText(f"Time Active: {float(stats.get('time_active', 0.0)):.0f} s")
        self.procs_label.setText(f"Processes Alive: {alive} / {total}")
        roots = [stats["buffers"].get(r, {}) for r in self.roots]
        if time.monotonic() >= self._pause_hold_until:
            self._roots_paused = any(r.get("paused") for r in roots)
            self._show_pause_state()
        if self.finished:
            state, color = "Finished", "#555555"
        elif roots and all(r.get("flush_event_received") for r in roots):
            state, color = "Roots shut down: draining", "#ff7f0e"
        elif self._roots_paused:
            state, color = "Roots paused", "#ff7f0e"
        else:
            state, color = "Running", ALIVE_COLOR
        stopped = sum(int(w.get("stopped", 0)) for w in stats.get("workers", {}).values())
        if stopped and not self.failures:
            state += f" ({stopped} stopped by the user)"
            color = STOPPED_COLOR
        if self.failures:
            state += f" ({len(self.failures)} failed)"
            color = FAILED_COLOR
            shown = [f"Crashed: {last_error(f)}" for f in self.failures[:3]]
            if len(self.failures) > 3:
                shown.append(f"... and {len(self.failures) - 3} more (see the Workers table)")
            self.failure_label.setText("\n".join(shown))
            self.failure_label.show()
        else:
            self.failure_label.hide()
        self.state_label.setText(state)
        self.state_label.setStyleSheet(f"color: {color}")

    def _stopped_by_user(self) -> int:
        """Processes ended by Kill Workers (from the newest statistics)."""
        workers = (self.stats or {}).get("workers", {})
        return sum(int(w.get("stopped", 0)) for w in workers.values())

    def _whole_run_summary(self) -> str:
        """`` raw: 300 events, dead time 0.4% (whole run).`` for every root buffer."""
        buffers = (self.stats or {}).get("buffers", {})
        parts = [
            f"{r}: {int(b.get('event_count', 0))} events, dead time "
            f"{100.0 * float(b.get('average_deadtime', 0.0)):.1f}% (whole run)"
            + (
                f", {int(b['paused_count'])} discarded while paused"
                if b.get("paused_count")
                else ""
            )
            for r in self.roots
            if (b := buffers.get(r)) is not None
        ]
        return (" " + "; ".join(parts) + ".") if parts else ""

    def _show_banner(self, left: float | None = None) -> None:
        if self.finished:
            n_failed = len(self.failures)
            if n_failed:
                text = f"Run finished: {n_failed} process(es) failed: " + "; ".join(
                    last_error(f) for f in self.failures[:3]
                )
                color = "#f8d7da"
            elif self._stopped_by_user():
                text = (
                    f"Run finished: {self._stopped_by_user()} process(es) stopped by the user; "
                    "the results are partial."
                )
                color = "#fff3cd"
            else:
                text = "Run finished: every worker has ended."
                color = "#d4edda"
            text += self._whole_run_summary()
            if left is not None:
                text += f" Closing in {math.ceil(left)} s (Keep Open to stay, Exit to close)."
            self.keep_open_button.setVisible(self._countdown is not None)
            for button in (
                self.pause_button,
                self.shutdown_roots_button,
                self.shutdown_all_button,
                self.kill_button,
            ):
                button.setEnabled(False)
            self.state_label.setText("Finished")
        else:
            text = "The control has ended."
            if left is not None:
                text += f" Closing in {math.ceil(left)} s."
            color = "#fff3cd"
            self.keep_open_button.hide()
        self.banner_label.setText(html.escape(text))
        self.banner.setStyleSheet(f"QFrame {{ background: {color}; }}")
        self.banner.show()

    # ----- screenshots (tests, documentation) -----

    def grab_tab(self, index: int) -> QtGui.QImage:
        """Shows tab ``index`` and returns an image of the whole window."""
        self.tabs.setCurrentIndex(index)
        QtWidgets.QApplication.processEvents()
        return self.grab().toImage()


def run_window(endpoint: Any, setup: dict[str, Any]) -> int:
    """Creates the application and the window; returns when the window is closed."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("mimocorb2")
    window = BufferManagerWindow(endpoint, setup)
    window.show()
    print(
        f"mimocorb2 GUI: window shown (Qt platform {app.platformName()}) with {pg.Qt.VERSION_INFO}",
        file=sys.stderr,
    )
    code = app.exec()
    endpoint.close()
    print(
        f"mimocorb2 GUI: window closed after {window.stats_received} statistics updates",
        file=sys.stderr,
    )
    return int(code)


def _activity(stats: dict[str, Any], failures: int, finished: bool) -> tuple[Any, ...]:
    """What of a statistics update is worth a redraw: everything but the clock and the CPU."""
    buffers = tuple(
        (
            name,
            b.get("event_count"),
            b.get("filled_slots"),
            b.get("paused"),
            b.get("paused_count"),
            b.get("flush_event_received"),
            b.get("lost"),
            b.get("overwritten"),
        )
        for name, b in sorted(stats.get("buffers", {}).items())
    )
    workers = tuple(
        (name, w.get("processes"), w.get("failed"), w.get("stopped"), w.get("restarts"))
        for name, w in sorted(stats.get("workers", {}).items())
    )
    return (buffers, workers, stats.get("total_processes_alive"), failures, finished)
