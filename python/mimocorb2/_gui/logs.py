"""The "Logs" tab: the output of the worker processes, filtered by worker and stream.

Lines are ``(process, worker, stream, text)`` tuples; the newest :data:`MAX_LOG_LINES` are
kept and shown, stderr lines marked with ``!``.
"""

from __future__ import annotations

import collections

from mimocorb2._qt import QtGui, QtWidgets

MAX_LOG_LINES = 50_000
"""Lines kept (and shown) at most; older ones are dropped."""

Line = tuple[str, str, str, str]


class LogTab(QtWidgets.QWidget):
    """The output of the workers, with a worker filter, a stderr filter and tail following.

    Args:
        worker_names: The workers (choices of the filter).

    Attributes:
        lines (collections.deque): The lines received (the newest ``MAX_LOG_LINES``).
        dropped (int): Lines the control dropped because the GUI fell behind.
        view (QtWidgets.QPlainTextEdit): The text shown.
        worker_filter (QtWidgets.QComboBox): Shows all workers (data None) or one.
        stderr_only (QtWidgets.QCheckBox): Shows only stderr lines.
        follow (QtWidgets.QCheckBox): Scrolls to the newest line as lines arrive.
    """

    def __init__(self, worker_names: list[str]) -> None:
        """Builds the filter row and the text view."""
        super().__init__()
        self.lines: collections.deque[Line] = collections.deque(maxlen=MAX_LOG_LINES)
        self.dropped = 0
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("Worker:"))
        self.worker_filter = QtWidgets.QComboBox()
        self.worker_filter.addItem("All workers", None)
        for w in worker_names:
            self.worker_filter.addItem(w, w)
        self.worker_filter.setToolTip("Show the output of one worker only")
        self.worker_filter.currentIndexChanged.connect(self.refill)
        row.addWidget(self.worker_filter)
        self.stderr_only = QtWidgets.QCheckBox("stderr only")
        self.stderr_only.setToolTip("Show only what the workers wrote to stderr (marked !)")
        self.stderr_only.toggled.connect(self.refill)
        row.addWidget(self.stderr_only)
        self.follow = QtWidgets.QCheckBox("Follow tail")
        self.follow.setChecked(True)
        self.follow.setToolTip("Scroll to the newest line as lines arrive")
        row.addWidget(self.follow)
        row.addStretch(1)
        self.count_label = QtWidgets.QLabel("0 lines")
        row.addWidget(self.count_label)
        layout.addLayout(row)
        self.view = QtWidgets.QPlainTextEdit()
        self.view.setReadOnly(True)
        self.view.setMaximumBlockCount(MAX_LOG_LINES)
        self.view.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        self.view.setFont(font)
        self.view.setPlaceholderText("the output of the workers appears here")
        layout.addWidget(self.view, 1)

    def _shown(self, line: Line) -> bool:
        worker = self.worker_filter.currentData()
        if worker is not None and line[1] != worker:
            return False
        return not (self.stderr_only.isChecked() and line[2] != "stderr")

    @staticmethod
    def _format(line: Line) -> str:
        process, _worker, stream, text = line
        return f"[{process}]{'!' if stream == 'stderr' else ' '} {text}"

    def append(self, lines: list[Line]) -> None:
        """Adds lines (and shows those the filters let through)."""
        if not lines:
            self._update_count()
            return
        self.lines.extend(lines)
        shown = [self._format(line) for line in lines if self._shown(line)]
        if shown:
            bar = self.view.verticalScrollBar()
            keep = bar.value()
            self.view.appendPlainText("\n".join(shown))
            if self.follow.isChecked():
                bar.setValue(bar.maximum())
            else:
                bar.setValue(keep)
        self._update_count()

    def refill(self) -> None:
        """Shows the kept lines again (after a filter changed)."""
        self.view.setPlainText("\n".join(self._format(ln) for ln in self.lines if self._shown(ln)))
        if self.follow.isChecked():
            self.view.verticalScrollBar().setValue(self.view.verticalScrollBar().maximum())
        self._update_count()

    def _update_count(self) -> None:
        text = f"{len(self.lines)} lines"
        if self.dropped:
            text += f" ({self.dropped} dropped: the GUI fell behind)"
        self.count_label.setText(text)
