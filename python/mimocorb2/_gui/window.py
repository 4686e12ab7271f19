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
import pyqtgraph as pg
from PyQt5 import QtCore, QtGui, QtWidgets

from mimocorb2._gui.flow import DataFlowView

PALETTE = (
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
FILLED_COLOR = "#1f77b4"
IN_USE_COLOR = "#ff7f0e"
EMPTY_COLOR = "#d9d9d9"
ALIVE_COLOR = "#2ca02c"
FAILED_COLOR = "#d62728"
CONFIGURED_COLOR = "#e0e0e0"

HISTORY_S = 60.0
"""Seconds of history shown by the rate and CPU plots."""
MIN_RATE = 0.1
"""Rates below this are drawn at this value (the rate plot has a log axis)."""
MAX_LOG_LINES = 50_000
TABS = ("Rates", "CPU", "Processes", "Buffers", "Logs", "Data Flow")

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
        "Terminate every worker process (SIGTERM, SIGKILL after 2 s)."
        "\nTerminal: 'shutdown workers'.",
    ),
    (
        "exit_button",
        "Exit",
        "Ctrl+Q",
        None,
        "Leave: asks first while processes still run (then kills them).\nTerminal: 'exit'.",
    ),
)


def command_text(command: Any) -> str:
    """The terminal command of the same effect (for the log and the status bar)."""
    if command is None:
        return "exit"
    kind, which, action = command
    if kind == "worker":
        return "shutdown workers" if which == "all" else f"{action} workers {which}"
    return f"{action} {which}"


def _brush(color: str) -> QtGui.QBrush:
    return QtGui.QBrush(QtGui.QColor(color))


def _item(text: str, align_right: bool = False) -> QtWidgets.QTableWidgetItem:
    item = QtWidgets.QTableWidgetItem(text)
    item.setFlags(QtCore.Qt.ItemIsEnabled | QtCore.Qt.ItemIsSelectable)
    if align_right:
        item.setTextAlignment(int(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter))
    return item


def _legend(plot: pg.PlotWidget, entries: int) -> None:
    """A legend of at most about six rows, on a translucent background."""
    plot.addLegend(
        offset=(10, 10),
        colCount=max(1, math.ceil(entries / 6)),
        brush=pg.mkBrush(255, 255, 255, 210),
        pen=pg.mkPen("#bbbbbb"),
        labelTextSize="8pt",
    )


def last_error(failure: dict[str, Any]) -> str:
    """A one-line description of a failed process: how it ended and its last output line."""
    if failure.get("exit_code") is not None:
        how = f"exit code {failure['exit_code']}"
    else:
        how = f"signal {failure.get('signal')}"
    tail = [line for line in failure.get("tail", []) if line.strip()]
    return f"{failure['name']}: {how}" + (f": {tail[-1].strip()}" if tail else "")


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
        self.log_lines: collections.deque[tuple[str, str, str, str]] = collections.deque(
            maxlen=MAX_LOG_LINES
        )
        self.log_dropped = 0

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
        self.banner.setFrameShape(QtWidgets.QFrame.StyledPanel)
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
        self.failure_label.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.failure_label.setStyleSheet(f"color: {FAILED_COLOR}")
        self.failure_label.hide()
        outer.addWidget(self.failure_label)

        splitter = self.splitter = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        splitter.setChildrenCollapsible(False)
        splitter.splitterMoved.connect(self._splitter_moved)
        splitter.addWidget(self._build_tables())
        self.tabs = QtWidgets.QTabWidget()
        self._build_plots()
        self._build_logs()
        self.flow_view = DataFlowView(self.setup)
        self.tabs.addTab(self.rate_plot, "Rates")
        self.tabs.addTab(self.cpu_plot, "CPU")
        self.tabs.addTab(self.proc_plot, "Processes")
        self.tabs.addTab(self.fill_plot, "Buffers")
        self.tabs.addTab(self.logs_widget, "Logs")
        self.tabs.addTab(self.flow_view, "Data Flow")
        for i in range(self.tabs.count()):
            self.tabs.setTabToolTip(i, f"Ctrl+{i + 1}")
            shortcut = QtWidgets.QShortcut(QtGui.QKeySequence(f"Ctrl+{i + 1}"), self)
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
            button = QtWidgets.QPushButton(label)
            button.setShortcut(QtGui.QKeySequence(key))
            button.setToolTip(f"{tip}\nShortcut: {key}")
            button.setMinimumHeight(32)
            if command is not None:
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
        run_dir.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.statusBar().addPermanentWidget(run_dir)
        self.statusBar().showMessage("waiting for the statistics of the control")

    def _build_plots(self) -> None:
        self.rate_plot = pg.PlotWidget(title="Event rate per buffer (last 60 s)")
        self.rate_plot.setLogMode(x=False, y=True)
        self.rate_plot.setLabel("left", "rate (Hz)")
        self.rate_plot.setLabel("bottom", "time active (s)")
        self.rate_plot.showGrid(x=True, y=True, alpha=0.25)
        _legend(self.rate_plot, len(self.buffer_names))
        self.rate_curves = {}
        for i, b in enumerate(self.buffer_names):
            width = 3 if b in self.roots else 2
            pen = pg.mkPen(PALETTE[i % len(PALETTE)], width=width)
            label = f"{b} (root)" if b in self.roots else b
            self.rate_curves[b] = self.rate_plot.plot([], [], pen=pen, name=label)
        self.rate_plot.setYRange(math.log10(MIN_RATE), 4, padding=0)
        self.rate_plot.setXRange(0, HISTORY_S, padding=0)

        self.cpu_plot = pg.PlotWidget(title="CPU per worker process (mean) and of the control")
        self.cpu_plot.setLabel("left", "CPU (%)")
        self.cpu_plot.setLabel("bottom", "time active (s)")
        self.cpu_plot.showGrid(x=True, y=True, alpha=0.25)
        _legend(self.cpu_plot, len(self.cpu_names))
        self.cpu_curves = {}
        for i, w in enumerate(self.cpu_names):
            if w in ("control", "gui"):
                style = QtCore.Qt.DashLine
            else:  # the colours repeat after ten workers: dotted then
                style = QtCore.Qt.SolidLine if i < len(PALETTE) else QtCore.Qt.DotLine
            pen = pg.mkPen(PALETTE[i % len(PALETTE)], width=2, style=style)
            self.cpu_curves[w] = self.cpu_plot.plot([], [], pen=pen, name=w)
        self.cpu_plot.setYRange(0, 100, padding=0.02)
        self.cpu_plot.setXRange(0, HISTORY_S, padding=0)

        n = len(self.worker_names)
        x = np.arange(n, dtype=float)
        configured = [self.setup["workers"][w]["number_of_processes"] for w in self.worker_names]
        self.proc_plot = pg.PlotWidget(title="Processes alive per worker (grey: configured)")
        self.proc_plot.setLabel("left", "processes")
        self.proc_plot.setMouseEnabled(x=False, y=False)
        self.proc_configured = pg.BarGraphItem(
            x=x, height=configured, width=0.65, brush=_brush(CONFIGURED_COLOR), pen=pg.mkPen("#999")
        )
        self.proc_alive = pg.BarGraphItem(
            x=x, height=np.zeros(n), width=0.5, brush=_brush(ALIVE_COLOR), pen=None
        )
        self.proc_failed = pg.BarGraphItem(
            x=x, y0=np.zeros(n), height=np.zeros(n), width=0.5, brush=_brush(FAILED_COLOR), pen=None
        )
        for item in (self.proc_configured, self.proc_alive, self.proc_failed):
            self.proc_plot.addItem(item)
        self.proc_texts = []
        for i, c in enumerate(configured):
            text = pg.TextItem(f"0/{c}", anchor=(0.5, 1.0), color="k")
            text.setPos(i, c)
            self.proc_plot.addItem(text)
            self.proc_texts.append(text)
        self.proc_plot.getAxis("bottom").setTicks([list(enumerate(self.worker_names))])
        self.proc_plot.setXRange(-0.6, max(n - 0.4, 0.6), padding=0)
        top = max(configured, default=1)
        self.proc_plot.setYRange(0, top * 1.25 + 0.2, padding=0)
        self.proc_plot.getAxis("left").setTickSpacing(max(1, math.ceil(top / 8)), 1)

        m = len(self.buffer_names)
        y = np.arange(m, dtype=float)
        self.fill_plot = pg.PlotWidget(
            title="Buffer fill: filled (blue) / in use (orange) / empty (grey); shaded: shut down"
        )
        self.fill_plot.setLabel("bottom", "slots (%)")
        self.fill_plot.setMouseEnabled(x=False, y=False)
        self.fill_plot.invertY(True)
        self.fill_bars = {
            key: pg.BarGraphItem(
                x0=np.zeros(m), y=y, width=np.zeros(m), height=0.6, brush=_brush(color), pen=None
            )
            for key, color in (
                ("filled", FILLED_COLOR),
                ("in_use", IN_USE_COLOR),
                ("empty", EMPTY_COLOR),
            )
        }
        for bar in self.fill_bars.values():
            self.fill_plot.addItem(bar)
        self.fill_ended = pg.BarGraphItem(
            x0=np.zeros(m),
            y=y,
            width=np.zeros(m),
            height=0.6,
            brush=QtGui.QBrush(QtGui.QColor(40, 40, 40, 90)),
            pen=pg.mkPen("#222222", width=2, style=QtCore.Qt.DashLine),
        )
        self.fill_plot.addItem(self.fill_ended)
        self.fill_texts = []
        for i in range(m):
            text = pg.TextItem("", anchor=(0.0, 0.5), color="k")
            text.setPos(101, i)
            self.fill_plot.addItem(text)
            self.fill_texts.append(text)
        ticks = [
            (i, f"{b} ({self.setup['buffers'][b]['slot_count']})")
            for i, b in enumerate(self.buffer_names)
        ]
        self.fill_plot.getAxis("left").setTicks([ticks])
        self.fill_plot.getAxis("bottom").setTicks([[(v, str(v)) for v in range(0, 101, 20)]])
        self.fill_plot.setXRange(0, 135, padding=0)
        self.fill_plot.setYRange(-0.6, max(m - 0.4, 0.6), padding=0)

    def _build_logs(self) -> None:
        self.logs_widget = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(self.logs_widget)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Worker:"))
        self.log_filter = QtWidgets.QComboBox()
        self.log_filter.addItem("All workers", None)
        for w in self.worker_names:
            self.log_filter.addItem(w, w)
        self.log_filter.setToolTip("Show the output of one worker only")
        self.log_filter.currentIndexChanged.connect(self._refill_log)
        row.addWidget(self.log_filter)
        self.log_errors_only = QtWidgets.QCheckBox("stderr only")
        self.log_errors_only.setToolTip("Show only what the workers wrote to stderr (marked !)")
        self.log_errors_only.toggled.connect(self._refill_log)
        row.addWidget(self.log_errors_only)
        self.log_follow = QtWidgets.QCheckBox("Follow tail")
        self.log_follow.setChecked(True)
        self.log_follow.setToolTip("Scroll to the newest line as lines arrive")
        row.addWidget(self.log_follow)
        row.addStretch(1)
        self.log_count = QtWidgets.QLabel("0 lines")
        row.addWidget(self.log_count)
        layout.addLayout(row)
        self.log_view = QtWidgets.QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(MAX_LOG_LINES)
        self.log_view.setLineWrapMode(QtWidgets.QPlainTextEdit.NoWrap)
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.FixedFont)
        self.log_view.setFont(font)
        self.log_view.setPlaceholderText("the output of the workers appears here")
        layout.addWidget(self.log_view, 1)

    def _build_tables(self) -> QtWidgets.QWidget:
        panel = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(panel)
        row.setContentsMargins(0, 0, 0, 0)
        roots_box = QtWidgets.QGroupBox("Root buffers")
        layout = QtWidgets.QVBoxLayout(roots_box)
        layout.setContentsMargins(4, 4, 4, 4)
        self.roots_table = QtWidgets.QTableWidget(len(self.roots), 5)
        self.roots_table.setHorizontalHeaderLabels(
            ["Buffer", "Rate (Hz)", "Dead Time (%)", "Number of Events", "State"]
        )
        self.roots_table.horizontalHeaderItem(2).setToolTip(
            "Share of the time the source waited for a free slot, in percent"
        )
        for i, r in enumerate(self.roots):
            self.roots_table.setItem(i, 0, _item(r))
        self._fit_table(self.roots_table, stretch=False)
        layout.addWidget(self.roots_table)
        workers_box = QtWidgets.QGroupBox("Workers (crashed: red, with the last error)")
        layout = QtWidgets.QVBoxLayout(workers_box)
        layout.setContentsMargins(4, 4, 4, 4)
        self.workers_table = QtWidgets.QTableWidget(len(self.worker_names), 5)
        self.workers_table.setHorizontalHeaderLabels(
            ["Worker", "Alive", "CPU (%)", "Restarts", "Status / last error"]
        )
        for i, w in enumerate(self.worker_names):
            self.workers_table.setItem(i, 0, _item(w))
        self._fit_table(self.workers_table)
        self.workers_table.setTextElideMode(QtCore.Qt.ElideLeft)  # the error is at the end
        layout.addWidget(self.workers_table)
        row.addWidget(roots_box, 1)
        row.addWidget(workers_box, 1)
        return panel

    @staticmethod
    def _fit_table(table: QtWidgets.QTableWidget, stretch: bool = True) -> None:
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        table.setSelectionMode(QtWidgets.QAbstractItemView.NoSelection)
        table.setFocusPolicy(QtCore.Qt.NoFocus)
        table.setWordWrap(False)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeToContents)
        header.setStretchLastSection(stretch)
        table.setMinimumWidth(120)
        table.setMinimumHeight(
            header.sizeHint().height() + table.verticalHeader().defaultSectionSize() + 4
        )

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
        self._append_lines([("gui", "", "stdout", f"command: {text}")])

    def toggle_pause(self) -> None:
        """Pauses the roots, or resumes them when they are paused."""
        action = "resume" if self._roots_paused else "pause"
        self.send_command(["buffer", "roots", action])
        self._roots_paused = action == "pause"
        self._pause_hold_until = time.monotonic() + 2.0
        self._show_pause_state()

    def _show_pause_state(self) -> None:
        self.pause_button.setText("Resume Roots" if self._roots_paused else "Pause Roots")

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
            QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No,
            QtWidgets.QMessageBox.No,
        )
        return answer == QtWidgets.QMessageBox.Yes

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
                self.log_dropped += int(message.get("dropped", 0))
                self._append_lines(lines)
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
        failed: dict[str, int] = {}
        errors: dict[str, list[dict[str, Any]]] = {}
        for f in self.failures:
            failed[f["worker"]] = failed.get(f["worker"], 0) + 1
            errors.setdefault(f["worker"], []).append(f)

        t = np.fromiter(self.t_hist, float)
        x_max = max(HISTORY_S, float(t[-1]) if len(t) else 0.0)
        peak = MIN_RATE
        for b, curve in self.rate_curves.items():
            values = np.fromiter(self.rate_hist[b], float)
            curve.setData(t, values)
            if len(values):
                peak = max(peak, float(values[t >= x_max - HISTORY_S].max(initial=MIN_RATE)))
        self.rate_plot.setXRange(x_max - HISTORY_S, x_max, padding=0)
        top = max(4.0, math.ceil(math.log10(peak * 2)))
        self.rate_plot.setYRange(math.log10(MIN_RATE), top, padding=0)
        cpu_peak = 10.0
        for w, curve in self.cpu_curves.items():
            values = np.fromiter(self.cpu_hist[w], float)
            curve.setData(t, values)
            if len(values):
                cpu_peak = max(cpu_peak, float(values.max()) * 1.2)
        self.cpu_plot.setXRange(x_max - HISTORY_S, x_max, padding=0)
        self.cpu_plot.setYRange(0, math.ceil(cpu_peak / 10) * 10, padding=0.02)

        alive = np.array(
            [stats["workers"].get(w, {}).get("processes", 0) for w in self.worker_names], float
        )
        n_failed = np.array([failed.get(w, 0) for w in self.worker_names], float)
        self.proc_alive.setOpts(height=alive)
        self.proc_failed.setOpts(y0=alive, height=n_failed)
        for i, w in enumerate(self.worker_names):
            n = self.setup["workers"][w]["number_of_processes"]
            text = f"{int(alive[i])}/{n}" + (
                f"  ({int(n_failed[i])} failed)" if n_failed[i] else ""
            )
            self.proc_texts[i].setText(text, color=FAILED_COLOR if n_failed[i] else "k")
            self.proc_texts[i].setPos(i, max(n, alive[i] + n_failed[i]))

        filled, in_use, empty, ended = [], [], [], []
        for i, b in enumerate(self.buffer_names):
            s = stats["buffers"].get(b, {})
            f = 100.0 * float(s.get("filled_slots", 0.0))
            e = 100.0 * float(s.get("empty_slots", 0.0))
            u = max(0.0, 100.0 - f - e)
            filled.append(f)
            in_use.append(u)
            empty.append(e)
            ended.append(100.0 if s.get("flush_event_received") else 0.0)
            state = (
                "shut down"
                if s.get("flush_event_received")
                else ("paused" if s.get("paused") else f"{float(s.get('rate', 0.0)):.0f} Hz")
            )
            self.fill_texts[i].setText(f"{state}, {f:.0f}% filled")
        filled_a, in_use_a = np.array(filled), np.array(in_use)
        self.fill_bars["filled"].setOpts(x0=np.zeros(len(filled)), width=filled_a)
        self.fill_bars["in_use"].setOpts(x0=filled_a, width=in_use_a)
        self.fill_bars["empty"].setOpts(x0=filled_a + in_use_a, width=np.array(empty))
        self.fill_ended.setOpts(width=np.array(ended))

        self.flow_view.update_stats(stats, failed)
        self._refresh_tables(stats, failed, errors)
        self._refresh_labels(stats)

    def _refresh_tables(
        self,
        stats: dict[str, Any],
        failed: dict[str, int],
        errors: dict[str, list[dict[str, Any]]],
    ) -> None:
        for i, r in enumerate(self.roots):
            s = stats["buffers"].get(r, {})
            state = (
                "shut down"
                if s.get("flush_event_received")
                else ("paused" if s.get("paused") else "running")
            )
            values = (
                f"{float(s.get('rate', 0.0)):.1f}",
                f"{100.0 * float(s.get('average_deadtime', 0.0)):.2f}",
                f"{int(s.get('event_count', 0))}",
            )
            for j, v in enumerate(values, start=1):
                self.roots_table.setItem(i, j, _item(v, align_right=True))
            self.roots_table.setItem(i, 4, _item(state))
        red = QtGui.QBrush(QtGui.QColor(FAILED_COLOR))
        for i, w in enumerate(self.worker_names):
            s = stats["workers"].get(w, {})
            n = self.setup["workers"][w]["number_of_processes"]
            alive = int(s.get("processes", 0))
            if failed.get(w):
                status = "; ".join(last_error(f) for f in errors[w])
            elif alive:
                status = "running"
            else:
                status = "finished"
            items = [
                _item(w),
                _item(f"{alive}/{n}", align_right=True),
                _item(f"{float(s.get('cpu_percent', 0.0)):.1f}", align_right=True),
                _item(str(int(s.get("restarts", 0))), align_right=True),
                _item(status),
            ]
            if failed.get(w):
                tip = "\n\n".join(
                    last_error(f) + "\n" + "\n".join(f.get("tail", [])) for f in errors[w]
                )
                for item in items:
                    item.setForeground(red)
                    item.setToolTip(tip)
            for j, item in enumerate(items):
                self.workers_table.setItem(i, j, item)

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

    def _show_banner(self, left: float | None = None) -> None:
        if self.finished:
            n_failed = len(self.failures)
            if n_failed:
                text = f"Run finished: {n_failed} process(es) failed: " + "; ".join(
                    last_error(f) for f in self.failures[:3]
                )
                color = "#f8d7da"
            else:
                text = "Run finished: every worker has ended."
                color = "#d4edda"
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

    # ----- logs -----

    def _shown(self, line: tuple[str, str, str, str]) -> bool:
        worker = self.log_filter.currentData()
        if worker is not None and line[1] != worker:
            return False
        return not (self.log_errors_only.isChecked() and line[2] != "stderr")

    @staticmethod
    def _format(line: tuple[str, str, str, str]) -> str:
        process, _worker, stream, text = line
        return f"[{process}]{'!' if stream == 'stderr' else ' '} {text}"

    def _append_lines(self, lines: list[tuple[str, str, str, str]]) -> None:
        if not lines:
            self._update_log_count()
            return
        self.log_lines.extend(lines)
        shown = [self._format(line) for line in lines if self._shown(line)]
        if shown:
            bar = self.log_view.verticalScrollBar()
            keep = bar.value()
            self.log_view.appendPlainText("\n".join(shown))
            if self.log_follow.isChecked():
                bar.setValue(bar.maximum())
            else:
                bar.setValue(keep)
        self._update_log_count()

    def _refill_log(self) -> None:
        self.log_view.setPlainText(
            "\n".join(self._format(ln) for ln in self.log_lines if self._shown(ln))
        )
        if self.log_follow.isChecked():
            self.log_view.verticalScrollBar().setValue(self.log_view.verticalScrollBar().maximum())
        self._update_log_count()

    def _update_log_count(self) -> None:
        text = f"{len(self.log_lines)} lines"
        if self.log_dropped:
            text += f" ({self.log_dropped} dropped: the GUI fell behind)"
        self.log_count.setText(text)

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
    print(f"mimocorb2 GUI: window shown (Qt platform {app.platformName()})", file=sys.stderr)
    code = app.exec_()
    endpoint.close()
    print(
        f"mimocorb2 GUI: window closed after {window.stats_received} statistics updates",
        file=sys.stderr,
    )
    return int(code)
