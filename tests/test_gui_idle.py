"""An idle run costs the control window almost nothing: it redraws only what changed.

The window is built offscreen in the test process and fed statistics messages through a
stand-in for the control's channel. While only the clock and the CPU figures change, the plots
and tables are redrawn every ``IDLE_REDRAW_S`` seconds and the labels with every update.
"""

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt starts: never open a real window

import pytest

from mimocorb2._qt import binding_problem

if binding_problem() is not None:
    pytest.skip(binding_problem(), allow_module_level=True)
pytest.importorskip("pytestqt")

from mimocorb2._gui.window import IDLE_REDRAW_S, BufferManagerWindow
from mimocorb2.mimo_buffer import BufferWriter, mimoBuffer


class Channel:
    """The GUI side of the channel, fed by the test."""

    def __init__(self):
        self.inbox = []
        self.sent = []

    def messages(self):
        out, self.inbox = self.inbox, []
        return out

    def send(self, message):
        self.sent.append(message)

    def command(self, command):
        self.sent.append(command)

    def close(self):
        pass


def setup_message(tmp_path):
    worker = {"function": "f", "number_of_processes": 1, "observes": []}
    return {
        "title": "idle",
        "setup_name": "idle.yaml",
        "run_dir": str(tmp_path),
        "roots": ["raw"],
        "buffers": {"raw": {"slot_count": 4, "data_length": 1}},
        "workers": {
            "source": {**worker, "sources": [], "sinks": ["raw"]},
            "sink": {**worker, "sources": ["raw"], "sinks": []},
        },
        "control_pid": os.getpid(),
        "display_problem": None,
        "linger": 1.0,
    }


def stats_message(buffer, t, cpu):
    worker = {"processes": 1, "cpu_percent": cpu, "failed": 0, "stopped": 0, "restarts": 0}
    stats = {
        "buffers": {"raw": buffer.get_stats()},
        "workers": {"source": dict(worker), "sink": dict(worker)},
        "time_active": t,
        "total_processes_alive": 2,
        "control": {"cpu_percent": cpu},
    }
    return {"type": "stats", "stats": stats, "failures": []}


def test_idle_updates_redraw_the_labels_only(tmp_path, qtbot):
    buffer = mimoBuffer("raw", 4, 1, [("value", "i8")])
    channel = Channel()
    window = BufferManagerWindow(channel, setup_message(tmp_path), poll_ms=10_000)
    window._close_ok = True  # no run to end: closing needs no confirmation
    qtbot.addWidget(window)
    redraws = []
    update = window.tables.update_stats
    window.tables.update_stats = lambda *a, **k: (redraws.append(1), update(*a, **k))

    def deliver(t, cpu):
        channel.inbox.append(stats_message(buffer, t, cpu))
        window.poll()

    deliver(1.0, 3.0)
    assert len(redraws) == 1
    # Only the clock and the CPU changed: no redraw, but the clock is shown.
    deliver(2.0, 5.0)
    deliver(3.0, 4.0)
    assert len(redraws) == 1
    assert window.time_label.text() == "Time Active: 3 s"
    # An event arrives: redrawn at once.
    with BufferWriter(buffer) as (_, data):
        data["value"] = 7
    deliver(4.0, 4.0)
    assert len(redraws) == 2
    # Idle again, but the last full redraw is older than IDLE_REDRAW_S: redrawn.
    deliver(5.0, 4.0)
    assert len(redraws) == 2
    activity, drawn_at = window._drawn
    window._drawn = (activity, drawn_at - IDLE_REDRAW_S)
    deliver(6.0, 4.0)
    assert len(redraws) == 3
