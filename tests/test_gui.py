"""The control GUI, rendered offscreen, driven by a real running Control.

The window is built in the test process and wired to a real :class:`Control` (running its loop
in a thread) through the same JSON-lines channel the GUI process uses; only the process start
is replaced. The end-to-end tests run ``mimocorb2 -c gui+stats`` with the real GUI process.
Screenshots of every tab go to ``tests/artifacts/gui/`` (``MIMOCORB2_ARTIFACTS`` overrides).
"""

import os
import re

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt starts: never open a real window

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mimocorb2._qt import binding_problem

if binding_problem() is not None:
    pytest.skip(binding_problem(), allow_module_level=True)
pytest.importorskip("pytestqt")

from mimocorb2 import _gui
from mimocorb2._gui import link
from mimocorb2._gui.face import GuiFace
from mimocorb2._gui.flow import layout
from mimocorb2._gui.window import TABS, BufferManagerWindow
from mimocorb2._qt import QtCore, QtGui, pg
from mimocorb2.control import Control

WORKERS = Path(__file__).parent / "pipelines" / "workers.py"
ARTIFACTS = Path(os.environ.get("MIMOCORB2_ARTIFACTS", Path(__file__).parent / "artifacts")) / "gui"

TALK = '''
from mimocorb2 import Filter


def talk(buffer_io):
    """mimoCoRB2 Function: passes even values and reports every 100th event.

    Type
        Filter
    """

    def keep(data):
        v = int(data["value"][0])
        if v % 100 == 0:
            print(f"passing event {v}", flush=True)
        return v % 2 == 0

    Filter(buffer_io)(keep)
'''


def make_setup(tmp_path: Path, n_events: int = -1, fail_at: int | None = None) -> dict:
    talk = tmp_path / "talk.py"
    talk.write_text(TALK)
    double_cfg = {"fail_at": fail_at} if fail_at is not None else {}
    buffer = {"slot_count": 16, "data_length": 1, "data_dtype": {"value": "int64"}}
    return {
        "Buffers": {"raw": dict(buffer), "even": dict(buffer), "doubled": dict(buffer)},
        "Workers": {
            "source": {
                "file": str(WORKERS),
                "function": "source",
                "config": {"n_events": n_events, "sleep": 0.001},
                "sinks": ["raw"],
            },
            "filter": {
                "file": str(talk),
                "function": "talk",
                "number_of_processes": 2,
                "sources": ["raw"],
                "sinks": ["even"],
            },
            "double": {
                "file": str(WORKERS),
                "function": "double",
                "number_of_processes": 2,
                "config": double_cfg,
                "sources": ["even"],
                "sinks": ["doubled"],
            },
            "collect": {"file": str(WORKERS), "function": "collect", "sources": ["doubled"]},
        },
        "target_directory": str(tmp_path / "runs"),
    }


class Run:
    """A Control running in a thread, with the window connected to it."""

    def __init__(self, control, thread, window, confirms):
        self.control = control
        self.thread = thread
        self.window = window
        self.confirms = confirms  # texts of the Exit questions; the answer is confirms.answer

    def root_stats(self) -> dict:
        return self.control.buffers["raw"].get_stats()

    def alive(self) -> int:
        return sum(1 for p in self.control.supervisor.poll() if p["alive"])


class Confirms(list):
    answer = True


@pytest.fixture
def start_run(tmp_path, monkeypatch, qtbot):
    """Starts a run in gui mode whose window lives in this process; ends it afterwards."""
    monkeypatch.setenv("MIMOCORB2_GUI_LINGER", "0.5")
    runs = []

    def start(**setup_args) -> Run:
        holder = {}

        def open_channel(run_dir):
            (to_gui, from_gui), (gui_in, gui_out) = link.pipe_pair()
            holder["endpoint"] = link.Endpoint(gui_in, gui_out)
            return to_gui, from_gui, None

        monkeypatch.setattr(_gui, "_open_channel", open_channel)
        control = Control(make_setup(tmp_path, **setup_args), tmp_path, mode="gui")
        thread = threading.Thread(target=control, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while "endpoint" not in holder and time.monotonic() < deadline:
            time.sleep(0.01)
        setup = holder["endpoint"].wait_setup(timeout=10)
        window = BufferManagerWindow(holder["endpoint"], setup)
        qtbot.addWidget(window)
        confirms = Confirms()

        def confirm(text):
            confirms.append(text)
            return confirms.answer

        window._confirm = confirm
        window.show()
        run = Run(control, thread, window, confirms)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.thread.is_alive():
            run.control.commands.put(["worker", "all", "shutdown"])
            run.control.commands.put(None)
        qtbot.waitUntil(lambda run=run: not run.thread.is_alive(), timeout=30_000)


def wait_running(qtbot, run: Run, events: int = 200) -> None:
    qtbot.waitUntil(
        lambda: (
            run.window.stats is not None
            and run.window.stats["buffers"]["raw"]["event_count"] >= events
        ),
        timeout=20_000,
    )


def image_array(image: QtGui.QImage) -> np.ndarray:
    """(height, width, 3) RGB of ``image``, the same with every binding."""
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    bgra = pg.functions.ndarray_from_qimage(image)  # little endian: B, G, R, A
    return bgra[..., 2::-1].copy()


def colored_pixels(a: np.ndarray) -> int:
    a = a.astype(int)
    return int(((a.max(axis=2) - a.min(axis=2)) > 60).sum())


def bar_pixels(a: np.ndarray) -> int:
    grey = np.all(a == (217, 217, 217), axis=2).sum()
    return int(grey) + colored_pixels(a)


def dark_pixels(a: np.ndarray) -> int:
    return int((a.max(axis=2) < 90).sum())


# ----- the window with a real run -----


def test_every_tab_renders_live_data_and_screenshots(start_run, qtbot):
    run = start_run(fail_at=100)
    w = run.window
    wait_running(qtbot, run)
    # the failing process of `double` is shown in red with its last error
    qtbot.waitUntil(lambda: any(f["worker"] == "double" for f in w.failures), timeout=20_000)
    qtbot.waitUntil(lambda: "passing event" in w.log_view.toPlainText(), timeout=20_000)
    time.sleep(0.6)
    qtbot.wait(300)
    row = w.worker_names.index("double")
    status = w.workers_table.item(row, 4)
    assert "bad value 100" in status.text()
    assert status.foreground().color().name() == "#d62728"
    assert w.workers_table.item(w.worker_names.index("source"), 4).text() == "running"
    assert "failed" in w.state_label.text()

    # root table: rate in Hz, dead time as a real percentage (B19), events
    stats = w.stats["buffers"]["raw"]
    assert w.roots_table.item(0, 0).text() == "raw"
    assert float(w.roots_table.item(0, 1).text()) == pytest.approx(stats["rate"], abs=0.051)
    assert float(w.roots_table.item(0, 2).text()) == pytest.approx(
        100 * stats["recent_deadtime"], abs=0.006
    )
    assert int(w.roots_table.item(0, 3).text()) == stats["event_count"]
    assert w.time_label.text().startswith("Time Active:")
    assert w.procs_label.text().startswith("Processes Alive: 5 / 6")

    # readable at its smallest size, screenshots at a laptop's size
    w.resize(w.minimumSize())
    qtbot.wait(100)
    assert w.tabs.currentWidget().height() >= 220
    w.resize(1240, 760)
    qtbot.wait(100)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(TABS):
        image = w.grab_tab(i)
        path = ARTIFACTS / f"{i + 1}_{name.lower().replace(' ', '_')}.png"
        assert image.save(str(path)), path
        whole = image_array(image)
        page = image_array(w.tabs.currentWidget().grab().toImage())
        assert whole.std() > 10, f"{name}: blank window"
        assert page.std() > 5, f"{name}: blank tab"
        if name == "Logs":
            assert dark_pixels(page) > 200, "no log text"
        elif name == "Buffers":  # the bars: grey (empty), blue (filled), orange (in use)
            assert bar_pixels(page) > 2000, "no bars drawn"
        else:
            assert colored_pixels(page) > 200, f"{name}: no data drawn"

    # log filter per worker
    w.log_filter.setCurrentIndex(w.log_filter.findData("double"))
    text = w.log_view.toPlainText()
    assert "bad value 100" in text and "passing event" not in text
    w.log_filter.setCurrentIndex(w.log_filter.findData("filter"))
    assert "passing event" in w.log_view.toPlainText()
    assert "bad value" not in w.log_view.toPlainText()
    w.log_errors_only.setChecked(True)
    assert "passing event" not in w.log_view.toPlainText()
    w.log_errors_only.setChecked(False)
    w.log_filter.setCurrentIndex(0)
    bar = w.log_view.verticalScrollBar()
    assert bar.value() == bar.maximum()  # follows the tail


def test_stats_arrive_at_2_hz_or_more(start_run, qtbot):
    run = start_run()
    wait_running(qtbot, run, events=1)
    n0, t0 = run.window.stats_received, time.monotonic()
    qtbot.wait(2500)
    rate = (run.window.stats_received - n0) / (time.monotonic() - t0)
    assert rate >= 2.0


def test_pause_and_resume_roots(start_run, qtbot):
    run = start_run()
    w = run.window
    wait_running(qtbot, run)
    assert w.pause_button.text() == "Pause Roots"
    qtbot.mouseClick(w.pause_button, QtCore.Qt.MouseButton.LeftButton)
    assert w.sent[-1] == ["buffer", "roots", "pause"]
    assert w.pause_button.text() == "Resume Roots"
    qtbot.waitUntil(lambda: run.root_stats()["paused"], timeout=5000)
    qtbot.wait(200)
    count = run.root_stats()["event_count"]
    qtbot.wait(700)
    assert run.root_stats()["event_count"] == count  # paused roots stop counting
    qtbot.waitUntil(lambda: w.roots_table.item(0, 4).text().startswith("paused"), timeout=5000)
    assert w.pause_button.text() == "Resume Roots"
    assert w.state_label.text() == "Roots paused"
    # the events discarded while paused are counted and shown
    qtbot.waitUntil(lambda: run.root_stats()["paused_count"] > 0, timeout=5000)
    qtbot.waitUntil(
        lambda: (
            f"{w.stats['buffers']['raw']['paused_count']} discarded while paused"
            in w.roots_table.item(0, 4).text()
        ),
        timeout=5000,
    )

    qtbot.mouseClick(w.pause_button, QtCore.Qt.MouseButton.LeftButton)
    assert w.sent[-1] == ["buffer", "roots", "resume"]
    qtbot.waitUntil(lambda: run.root_stats()["event_count"] > count + 50, timeout=10_000)
    qtbot.waitUntil(lambda: w.roots_table.item(0, 4).text().startswith("running"), timeout=5000)
    assert w.pause_button.text() == "Pause Roots"


@pytest.mark.parametrize(
    ("button", "command"),
    [
        ("shutdown_roots_button", ["buffer", "roots", "shutdown"]),
        ("shutdown_all_button", ["buffer", "all", "shutdown"]),
        ("kill_button", ["worker", "all", "shutdown"]),
    ],
)
def test_shutdown_buttons_end_the_run(start_run, qtbot, button, command):
    run = start_run()
    w = run.window
    wait_running(qtbot, run)
    if button == "kill_button":  # asks first: No keeps the workers running
        run.confirms.answer = False
        qtbot.mouseClick(w.kill_button, QtCore.Qt.MouseButton.LeftButton)
        assert len(run.confirms) == 1 and "Kill all 6 worker processes" in run.confirms[0]
        assert w.sent == []
        qtbot.wait(300)
        assert run.alive() == 6
        run.confirms.answer = True
    qtbot.mouseClick(getattr(w, button), QtCore.Qt.MouseButton.LeftButton)
    assert w.sent == [command]
    qtbot.waitUntil(lambda: run.alive() == 0, timeout=15_000)
    # the window shows the final state, then closes itself; the control returns
    qtbot.waitUntil(lambda: w.finished, timeout=15_000)
    assert "Run finished" in w.banner_label.text()
    assert not w.pause_button.isEnabled() and w.exit_button.isEnabled()
    if button == "kill_button":  # stopped by the user: not crashed, no "signal 15", not red
        assert "6 process(es) stopped by the user" in w.banner_label.text()
        assert w.failures == [] and "signal" not in w.banner_label.text()
        for row in range(len(w.worker_names)):
            item = w.workers_table.item(row, 4)
            assert item.text() == "stopped by user"
            assert item.foreground().color().name() != "#d62728"
    qtbot.waitUntil(lambda: not run.thread.is_alive(), timeout=15_000)
    assert not w.isVisible()
    assert len(run.confirms) == (2 if button == "kill_button" else 0)
    if button == "shutdown_roots_button":
        assert run.control.exit_code == 0
        assert run.root_stats()["flush_event_received"]


def test_exit_asks_while_processes_run(start_run, qtbot):
    run = start_run()
    w = run.window
    wait_running(qtbot, run)
    run.confirms.answer = False
    qtbot.mouseClick(w.exit_button, QtCore.Qt.MouseButton.LeftButton)
    assert len(run.confirms) == 1 and "processes still run" in run.confirms[0]
    assert w.isVisible() and w.sent == []
    qtbot.wait(300)
    assert run.thread.is_alive() and run.alive() == 6

    run.confirms.answer = True
    w.close()  # closing the window is Exit
    assert len(run.confirms) == 2
    assert w.sent == [["worker", "all", "shutdown"], None]
    assert not w.isVisible()
    qtbot.waitUntil(lambda: not run.thread.is_alive(), timeout=15_000)
    assert run.alive() == 0


def test_keyboard_shortcuts_and_tooltips(start_run, qtbot):
    run = start_run()
    w = run.window
    wait_running(qtbot, run, events=1)
    expected = {
        "pause_button": ("Ctrl+P", "pause roots"),
        "shutdown_roots_button": ("Ctrl+D", "shutdown roots"),
        "shutdown_all_button": ("Ctrl+Shift+D", "shutdown all"),
        "kill_button": ("Ctrl+K", "shutdown workers"),
        "exit_button": ("Ctrl+Q", "exit"),
    }
    for attr, (key, terminal) in expected.items():
        button = getattr(w, attr)
        assert button.shortcut().toString() == key
        assert key in button.toolTip() and f"'{terminal}'" in button.toolTip()
    w.activateWindow()
    w.setFocus()
    qtbot.keyClick(w, QtCore.Qt.Key.Key_3, QtCore.Qt.KeyboardModifier.ControlModifier)
    assert w.tabs.currentIndex() == 2
    qtbot.keyClick(w, QtCore.Qt.Key.Key_P, QtCore.Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: w.sent == [["buffer", "roots", "pause"]], timeout=2000)  # animated
    qtbot.waitUntil(lambda: run.root_stats()["paused"], timeout=5000)
    qtbot.keyClick(w, QtCore.Qt.Key.Key_D, QtCore.Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: w.sent[-1] == ["buffer", "roots", "shutdown"], timeout=2000)
    qtbot.waitUntil(lambda: not run.thread.is_alive(), timeout=15_000)


def test_ctrl_p_pauses_and_resumes_again_and_again(start_run, qtbot):
    run = start_run()
    w = run.window
    wait_running(qtbot, run, events=1)
    w.activateWindow()
    w.setFocus()
    expected = []
    for action in ("pause", "resume", "pause", "resume"):
        qtbot.keyClick(w, QtCore.Qt.Key.Key_P, QtCore.Qt.KeyboardModifier.ControlModifier)
        expected.append(["buffer", "roots", action])
        qtbot.waitUntil(lambda e=list(expected): w.sent == e, timeout=3000)
        label = "Resume Roots" if action == "pause" else "Pause Roots"
        assert w.pause_button.text() == label  # relabelled ...
        assert w.pause_button.shortcut().toString() == "Ctrl+P"  # ... and the key still works
    qtbot.waitUntil(lambda: not run.root_stats()["paused"], timeout=5000)
    qtbot.keyClick(w, QtCore.Qt.Key.Key_D, QtCore.Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not run.thread.is_alive(), timeout=15_000)


def test_legends_sit_under_the_plots(start_run, qtbot):
    run = start_run()
    w = run.window
    wait_running(qtbot, run, events=1)
    for plot in (w.rate_plot, w.cpu_plot):
        item = plot.getPlotItem()
        legend = item.legend
        assert len(legend.items) == len(plot.curves)
        view = item.vb.sceneBoundingRect()
        box = legend.sceneBoundingRect()
        assert box.height() > 0 and not view.intersects(box)
        assert box.top() >= item.getAxis("bottom").sceneBoundingRect().top()
    run.control.commands.put(["buffer", "roots", "shutdown"])
    qtbot.waitUntil(lambda: not run.thread.is_alive(), timeout=15_000)


def test_run_that_ends_by_itself_shows_the_final_state(start_run, qtbot):
    run = start_run(n_events=300)
    w = run.window
    qtbot.waitUntil(lambda: w.finished, timeout=20_000)
    assert "every worker has ended" in w.banner_label.text()
    assert "raw: 300 events, dead time" in w.banner_label.text()
    assert "(whole run)" in w.banner_label.text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    image = w.grab_tab(TABS.index("Buffers"))
    assert image.save(str(ARTIFACTS / "7_finished.png"))
    assert image_array(image).std() > 10
    assert w.roots_table.item(0, 3).text() == "300"
    assert w.procs_label.text() == "Processes Alive: 0 / 6"
    qtbot.waitUntil(lambda: "collected 150 events" in w.log_view.toPlainText(), timeout=5000)
    qtbot.waitUntil(lambda: not run.thread.is_alive(), timeout=15_000)
    assert run.control.exit_code == 0


def test_keep_open_holds_the_control_until_the_window_closes(start_run, qtbot):
    run = start_run(n_events=100)
    w = run.window
    qtbot.waitUntil(lambda: w.finished, timeout=20_000)
    w.keep_open()
    qtbot.wait(1500)  # longer than the linger time
    assert w.isVisible() and run.thread.is_alive()
    assert run.confirms == []
    w.close()
    qtbot.waitUntil(lambda: not run.thread.is_alive(), timeout=10_000)
    assert run.confirms == []


def test_gui_that_dies_leaves_the_run_to_the_terminal(start_run, qtbot, capsys):
    run = start_run()
    w = run.window
    wait_running(qtbot, run)
    w.timer.stop()
    w.endpoint.close()  # as if the GUI process crashed: its pipe ends without an Exit
    w.hide()
    gui_face = next(f for f in run.control.faces if isinstance(f, GuiFace))
    qtbot.waitUntil(lambda: gui_face.link is None, timeout=5000)
    assert "the GUI ended unexpectedly" in capsys.readouterr().err
    count = run.root_stats()["event_count"]
    qtbot.wait(500)
    assert run.thread.is_alive() and run.alive() == 6
    assert run.root_stats()["event_count"] > count  # the run goes on
    run.control.commands.put(["buffer", "roots", "shutdown"])
    qtbot.waitUntil(lambda: not run.thread.is_alive(), timeout=15_000)
    assert run.control.exit_code == 1  # the data are complete, but the GUI failed
    assert "the GUI ended unexpectedly" in run.control.gui_failure
    assert "the GUI failed (the GUI ended unexpectedly" in capsys.readouterr().err


# ----- pieces -----


def test_unavailable_reason(monkeypatch):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    if sys.platform in ("darwin", "win32"):
        pytest.skip("always a display")
    assert "DISPLAY" in _gui.unavailable_reason()
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert _gui.unavailable_reason() is None
    assert _gui.unavailable_reason(need_real_display=True) is not None
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert _gui.unavailable_reason() is not None
    monkeypatch.setenv("DISPLAY", ":0")
    assert _gui.unavailable_reason(need_real_display=True) is None


def test_default_mode_opens_the_gui_only_on_a_real_display(monkeypatch):
    from mimocorb2.__main__ import _has_display

    for var in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    if sys.platform not in ("darwin", "win32"):
        assert not _has_display()  # offscreen: nobody would see the window
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.setenv("DISPLAY", ":0")
    assert _has_display()


def test_valid_commands():
    assert link.valid_command(None)
    assert link.valid_command(["buffer", "roots", "pause"])
    assert link.valid_command(["buffer", ["raw"], "shutdown"])
    assert link.valid_command(["worker", "all", "shutdown"])
    assert not link.valid_command(["worker", "roots", "shutdown"])
    assert not link.valid_command(["buffer", "all", "explode"])
    assert not link.valid_command(["stats"])
    assert not link.valid_command("exit")


def test_layout_puts_the_flow_left_to_right():
    setup = {
        "buffers": {"raw": {}, "a": {}, "b": {}},
        "roots": ["raw"],
        "workers": {
            "src": {"sources": [], "sinks": ["raw"], "observes": []},
            "split": {"sources": ["raw"], "sinks": ["a", "b"], "observes": []},
            "show": {"sources": [], "sinks": [], "observes": ["a"]},
        },
    }
    pos = layout(setup)
    x = {n: p[0] for n, p in pos.items()}
    assert x[("w", "src")] < x[("b", "raw")] < x[("w", "split")] < x[("b", "a")] < x[("w", "show")]
    assert x[("b", "a")] == x[("b", "b")] and pos[("b", "a")] != pos[("b", "b")]


def test_link_never_blocks_the_control_when_the_gui_lags():
    (to_gui, from_gui), (gui_in, gui_out) = link.pipe_pair()
    commands = []
    gui = link.GuiLink(to_gui, from_gui, commands.append)
    endpoint = link.Endpoint(gui_in, gui_out)
    try:
        stats = {"buffers": {}, "workers": {}, "blob": "x" * 10_000}
        t0 = time.monotonic()
        for i in range(2000):  # nobody reads: the pipe fills up, the writer thread blocks
            gui.send_stats({**stats, "i": i}, [])
            gui.send_lines([("p_0", "p", "stdout", f"line {i}")] * 20)
        # by now the writer thread is stuck on the full pipe: these can only pile up
        for _ in range(3):
            gui.send_lines([("p_0", "p", "stdout", "more")] * link.MAX_BACKLOG_LINES)
        assert time.monotonic() - t0 < 10.0  # a blocked send would hang the test
        # the backlog stays bounded; the drops are reported to the GUI (checked below)
        assert len(gui._lines) <= link.MAX_BACKLOG_LINES
        endpoint.command(["buffer", "roots", "pause"])
        endpoint.command(["bogus"])
        endpoint.send({"type": "ready"})
        deadline = time.monotonic() + 5
        while not gui.ready.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert commands == [["buffer", "roots", "pause"]]
        received = []
        while time.monotonic() < deadline:
            received += endpoint.messages()
            newest = any(m["type"] == "stats" and m["stats"]["i"] == 1999 for m in received)
            drops = sum(m.get("dropped", 0) for m in received if m["type"] == "lines")
            if newest and drops:
                break
            time.sleep(0.02)
        kinds = [m["type"] for m in received]
        assert kinds.count("stats") <= 3  # coalesced: the newest statistics, not 2000
        assert sum(m.get("dropped", 0) for m in received if m["type"] == "lines") > 0
    finally:
        endpoint.close()
        gui.close()
    assert gui.gone.wait(2)


# ----- end to end: the CLI with the real GUI process -----


def run_cli(tmp_path: Path, mode: str, env_changes: dict, n_events: int = 400):
    import yaml

    setup = tmp_path / "setup.yaml"
    setup.write_text(yaml.safe_dump(make_setup(tmp_path, n_events=n_events)))
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env["MIMOCORB2_GUI_LINGER"] = "0.5"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mimocorb2", str(setup), "-c", mode],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    runs = sorted((tmp_path / "runs").glob("run_*"))
    return proc, runs[-1], time.monotonic() - t0


def test_cli_gui_stats_offscreen(tmp_path):
    proc, run_dir, elapsed = run_cli(
        tmp_path, "gui+stats", {"QT_QPA_PLATFORM": "offscreen", "DISPLAY": None}
    )
    assert proc.returncode == 0, proc.stderr
    assert "running in the terminal" not in proc.stderr
    gui_log = (run_dir / "logs" / "gui.log").read_text()
    assert "window shown (Qt platform offscreen)" in gui_log
    closed = re.search(r"window closed after (\d+) statistics updates", gui_log)
    assert closed and int(closed.group(1)) >= 2, gui_log
    assert (run_dir / "stats.csv").read_text().count("\n") >= 2
    assert elapsed < 30


def test_cli_gui_process_killed_the_run_goes_on(tmp_path):
    import signal

    import psutil
    import yaml

    setup = tmp_path / "setup.yaml"
    setup.write_text(yaml.safe_dump(make_setup(tmp_path, n_events=-1)))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "MIMOCORB2_GUI_LINGER": "0.5"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mimocorb2", str(setup), "-c", "gui"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        gui = []
        while not gui and time.monotonic() < deadline:
            time.sleep(0.1)
            logs = list((tmp_path / "runs").glob("run_*/logs/gui.log"))
            if logs and "window shown" in logs[0].read_text():
                gui = [
                    p
                    for p in psutil.Process(proc.pid).children()
                    if "mimocorb2._gui" in " ".join(p.cmdline())
                ]
        assert gui, "the GUI process did not show its window"
        gui[0].kill()
        time.sleep(1.0)
        assert proc.poll() is None  # the run goes on without its GUI
        proc.send_signal(signal.SIGINT)  # Ctrl-C: shut the roots down
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "the GUI ended unexpectedly" in err
    assert "the run continues in the terminal" in err
    assert "mimocorb2: the GUI failed (the GUI ended unexpectedly" in err
    assert proc.returncode == 1, err


def test_cli_gui_without_display_runs_in_the_terminal(tmp_path):
    proc, run_dir, _ = run_cli(
        tmp_path, "gui", {"QT_QPA_PLATFORM": None, "DISPLAY": None, "WAYLAND_DISPLAY": None}
    )
    assert proc.returncode == 0, proc.stderr
    assert "the GUI needs a display" in proc.stderr
    assert "running in the terminal instead" in proc.stderr
    assert "run finished" in proc.stderr
    assert not (run_dir / "logs" / "gui.log").exists()


def test_cli_gui_that_cannot_start_runs_in_the_terminal(tmp_path):
    proc, run_dir, _ = run_cli(
        tmp_path, "gui", {"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":987", "WAYLAND_DISPLAY": None}
    )
    assert proc.returncode == 1, proc.stderr  # the data are complete, but the GUI failed
    assert "mimocorb2: the GUI failed (the GUI could not start" in proc.stderr
    assert "the GUI could not start" in proc.stderr
    assert str(run_dir / "logs" / "gui.log") in proc.stderr  # where to read the details
    assert "the run continues in the terminal" in proc.stderr
    assert "run finished" in proc.stderr
