"""The tables above the tabs: root buffers (rate, dead time, events, state) and workers.

A crashed worker's row is red, with its last error in the status column and the last output
lines of each failed process in the tooltip.
"""

from __future__ import annotations

from typing import Any

from mimocorb2._gui.colors import FAILED_COLOR, STOPPED_COLOR
from mimocorb2._qt import QtCore, QtGui, QtWidgets
from mimocorb2._recent import WINDOW_S


def last_error(failure: dict[str, Any]) -> str:
    """A one-line description of a failed process: how it ended and its last output line."""
    if failure.get("exit_code") is not None:
        how = f"exit code {failure['exit_code']}"
    else:
        how = f"signal {failure.get('signal')}"
    tail = [line for line in failure.get("tail", []) if line.strip()]
    return f"{failure['name']}: {how}" + (f": {tail[-1].strip()}" if tail else "")


def _item(text: str, align_right: bool = False) -> QtWidgets.QTableWidgetItem:
    item = QtWidgets.QTableWidgetItem(text)
    item.setFlags(QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsSelectable)
    if align_right:
        item.setTextAlignment(
            QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
        )
    return item


def _fit_table(table: QtWidgets.QTableWidget, stretch: bool = True) -> None:
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
    table.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
    table.setWordWrap(False)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(stretch)
    table.setMinimumWidth(120)
    table.setMinimumHeight(
        header.sizeHint().height() + table.verticalHeader().defaultSectionSize() + 4
    )


class StatusTables(QtWidgets.QWidget):
    """The root-buffer table and the worker table, side by side.

    Args:
        roots: The root buffers.
        worker_names: The workers, in the order of the setup.
        workers: The setup's workers (``number_of_processes`` of each).

    Attributes:
        roots_table (QtWidgets.QTableWidget): Buffer, rate, dead time, events, state.
        workers_table (QtWidgets.QTableWidget): Worker, alive, CPU, restarts, status.
    """

    def __init__(self, roots: list[str], worker_names: list[str], workers: dict[str, Any]) -> None:
        """Builds both tables with a row per root buffer and per worker."""
        super().__init__()
        self.roots = roots
        self.worker_names = worker_names
        self.workers = workers
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        roots_box = QtWidgets.QGroupBox("Root buffers")
        layout = QtWidgets.QVBoxLayout(roots_box)
        layout.setContentsMargins(4, 4, 4, 4)
        self.roots_table = QtWidgets.QTableWidget(len(roots), 5)
        self.roots_table.setHorizontalHeaderLabels(
            ["Buffer", "Rate (Hz)", f"Dead Time (%, {WINDOW_S:.0f} s)", "Number of Events", "State"]
        )
        self.roots_table.horizontalHeaderItem(2).setToolTip(
            f"Mean dead time of the events of the last {WINDOW_S:.0f} s, in percent (the "
            "whole run's figure is in the summary when the run has finished)"
        )
        self.roots_table.horizontalHeaderItem(4).setToolTip(
            "running, paused or shut down; with the number of events discarded while paused"
        )
        for i, r in enumerate(roots):
            self.roots_table.setItem(i, 0, _item(r))
        _fit_table(self.roots_table, stretch=False)
        layout.addWidget(self.roots_table)
        workers_box = QtWidgets.QGroupBox("Workers (crashed: red, with the last error)")
        layout = QtWidgets.QVBoxLayout(workers_box)
        layout.setContentsMargins(4, 4, 4, 4)
        self.workers_table = QtWidgets.QTableWidget(len(worker_names), 5)
        self.workers_table.setHorizontalHeaderLabels(
            ["Worker", "Alive", "CPU (%)", "Restarts", "Status / last error"]
        )
        for i, w in enumerate(worker_names):
            self.workers_table.setItem(i, 0, _item(w))
        _fit_table(self.workers_table)
        self.workers_table.setTextElideMode(
            QtCore.Qt.TextElideMode.ElideLeft
        )  # the error is at the end
        layout.addWidget(self.workers_table)
        row.addWidget(roots_box, 1)
        row.addWidget(workers_box, 1)

    def update_stats(
        self,
        stats: dict[str, Any],
        failed: dict[str, int],
        errors: dict[str, list[dict[str, Any]]],
    ) -> None:
        """Fills both tables (``failed``: count, ``errors``: failures per worker)."""
        for i, r in enumerate(self.roots):
            s = stats["buffers"].get(r, {})
            state = (
                "shut down"
                if s.get("flush_event_received")
                else ("paused" if s.get("paused") else "running")
            )
            if s.get("paused_count"):
                state += f", {int(s['paused_count'])} discarded while paused"
            dead = s.get("recent_deadtime", s.get("average_deadtime", 0.0))
            values = (
                f"{float(s.get('rate', 0.0)):.1f}",
                f"{100.0 * float(dead):.2f}",
                f"{int(s.get('event_count', 0))}",
            )
            for j, v in enumerate(values, start=1):
                self.roots_table.setItem(i, j, _item(v, align_right=True))
            self.roots_table.setItem(i, 4, _item(state))
        red = QtGui.QBrush(QtGui.QColor(FAILED_COLOR))
        grey = QtGui.QBrush(QtGui.QColor(STOPPED_COLOR))
        for i, w in enumerate(self.worker_names):
            s = stats["workers"].get(w, {})
            n = self.workers[w]["number_of_processes"]
            alive = int(s.get("processes", 0))
            if failed.get(w):
                status = "; ".join(last_error(f) for f in errors[w])
            elif alive:
                status = "running"
            elif s.get("stopped"):
                status = "stopped by user"
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
            elif status == "stopped by user":
                for item in items:
                    item.setForeground(grey)
                    item.setToolTip("ended by Kill Workers / 'shutdown workers', not by an error")
            for j, item in enumerate(items):
                self.workers_table.setItem(i, j, item)
