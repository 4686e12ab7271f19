"""Plot windows as a user meets them: they stay open marked "run finished", histogram axes
carry the field and unit, an empty histogram is an empty 0..1 frame, legends sit under the
plots, and a Qt platform plugin that cannot load is explained.

Qt runs in child interpreters (offscreen), as in test_functions_plots.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from mimocorb2 import _gui, _qt_libs
from mimocorb2._qt import binding_problem

needs_qt = pytest.mark.skipif(
    binding_problem() is not None, reason=f"needs Qt and pyqtgraph: {binding_problem()}"
)


def run_child(code: str, **env: str) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=40,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", **env},
        check=False,
    )
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


STAY_OPEN = """
import json, sys, time
from mimocorb2._qt import QtCore, pg
from mimocorb2 import _plotting

stay = {"yes": True, "no": False, "default": None}[sys.argv[1]]
app = _plotting.application()
window = pg.PlotWidget(title="scope: event 7")
window.setWindowTitle("Oscilloscope: scope (waves)")
plot = window.getPlotItem()  # PlotWidget.close() lets go of it
t0 = time.monotonic()
closed_by_user = []

def user_closes():
    closed_by_user.append(window.windowTitle())
    window.close()

QtCore.QTimer.singleShot(900, user_closes)
how = _plotting.run_window(
    window, refresh=lambda: None, alive=lambda: time.monotonic() - t0 < 0.2,
    interval=0.05, stay_open=stay,
)
print("RESULT " + json.dumps({
    "how": how,
    "seconds": time.monotonic() - t0,
    "title_seen_by_user": closed_by_user[0] if closed_by_user else None,
    "plot_title": plot.titleLabel.text,
}))
"""


@needs_qt
def test_plot_window_stays_open_marked_run_finished_until_closed():
    result = run_child(STAY_OPEN.replace("sys.argv[1]", "'yes'"))
    assert result["how"] == "ended"
    assert result["seconds"] >= 0.85  # open until the user closed it, after the end (0.2 s)
    assert result["title_seen_by_user"] == "Oscilloscope: scope (waves) (run finished)"
    assert result["plot_title"] == "scope: event 7 (run finished)"


@needs_qt
@pytest.mark.parametrize(("how", "env"), [("no", {}), ("default", {})])
def test_plot_window_closes_at_the_end_when_nobody_can_see_it(how, env):
    # offscreen (the tests' platform): nobody could close it, so it closes by itself
    result = run_child(STAY_OPEN.replace("sys.argv[1]", repr(how)), **env)
    assert result["how"] == "ended" and result["seconds"] < 0.8
    assert result["title_seen_by_user"] is None


def test_stay_open_default(monkeypatch):
    from mimocorb2 import _plotting

    monkeypatch.delenv(_plotting.STAY_OPEN_ENV, raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert not _plotting.stay_open_default()
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert _plotting.stay_open_default()
    monkeypatch.setenv(_plotting.STAY_OPEN_ENV, "0")
    assert not _plotting.stay_open_default()


HISTOGRAM_AXES = """
import json
import numpy as np
from mimocorb2._qt import pg
from mimocorb2 import _plotting
from mimocorb2.functions.visualizers import _layout

app = _plotting.application()
window = pg.GraphicsLayoutWidget()
plots = _layout(window, ["energy", "width"], "step", {"energy": "keV"})
window.resize(600, 300)
window.show()
app.processEvents()
before = [p.plot.viewRange() for p in plots.values()]
edges = np.linspace(0.0, 400.0, 41)
plots["energy"].update(edges, np.zeros(40), "energy (0 entries)")
app.processEvents()
empty = plots["energy"].plot.viewRange()
counts = np.zeros(40)
counts[10] = 25
plots["energy"].update(edges, counts, "energy (25 entries)")
app.processEvents()
plots["energy"].plot.vb.updateAutoRange()
filled = plots["energy"].plot.viewRange()
print("RESULT " + json.dumps({
    "x_labels": [p.plot.getAxis("bottom").labelText for p in plots.values()],
    "y_label": plots["energy"].plot.getAxis("left").labelText,
    "before": before, "empty": empty, "filled": filled,
}))
"""


@needs_qt
def test_histogram_axes_carry_field_and_unit_and_empty_is_0_to_1():
    result = run_child(HISTOGRAM_AXES)
    assert result["x_labels"] == ["energy (keV)", "width"]
    assert result["y_label"] == "entries per bin"
    for x_range, y_range in result["before"]:  # nothing there yet: an empty 0..1 frame
        assert x_range == [0.0, 1.0] and y_range == [0.0, 1.0]
    x_range, y_range = result["empty"]
    assert x_range[0] <= 0.0 and x_range[1] >= 400.0 and x_range[1] < 420.0
    assert y_range == [0.0, 1.0]
    assert result["filled"][1][1] >= 25.0  # autoscaled to the data once there is some


LEGEND = """
import json
import numpy as np
from mimocorb2._qt import pg
from mimocorb2 import _plotting

app = _plotting.application()
window = pg.PlotWidget()
plot = window.getPlotItem()
legend = _plotting.legend_below(plot, 4)
for i in range(4):
    plot.plot(np.arange(100), np.sin(np.arange(100) / 10 + i), name=f"ch{i}")
window.resize(700, 400)
window.show()
for _ in range(3):
    app.processEvents()
view = plot.vb.sceneBoundingRect()
box = legend.sceneBoundingRect()
print("RESULT " + json.dumps({
    "entries": len(legend.items), "overlap": view.intersects(box), "height": box.height(),
    "below": box.top() >= view.bottom(),
}))
"""


@needs_qt
def test_legend_sits_under_the_plot_not_on_the_traces():
    result = run_child(LEGEND)
    assert result == {"entries": 4, "overlap": False, "height": result["height"], "below": True}
    assert result["height"] > 0


LDD = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibxcb-icccm.so.4 => not found
\tlibxkbcommon-x11.so.0 => not found
\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007f)
\tlibxcb-icccm.so.4 => not found
"""


def test_platform_plugin_hint_names_libraries_and_the_install_command():
    assert _qt_libs.missing_libraries("xcb", LDD) == ["libxcb-icccm.so.4", "libxkbcommon-x11.so.0"]
    assert _qt_libs.platform_plugin_hint("xcb", LDD) == (
        "Qt's 'xcb' platform plugin needs system libraries that are missing: "
        "libxcb-icccm.so.4, libxkbcommon-x11.so.0; on Debian/Ubuntu install them with: "
        "sudo apt-get install libxcb-icccm4 libxkbcommon-x11-0"
    )
    assert _qt_libs.platform_plugin_hint("xcb", "\tlibGL.so.1 => /lib/libGL.so.1\n") is None
    assert _qt_libs.debian_package("libGL.so.1") == "libgl1"
    assert _qt_libs.debian_package("libgthread-2.0.so.0") == "libglib2.0-0"


def test_gui_failure_message_names_the_missing_libraries(tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "gui.log").write_text(
        'qt.qpa.plugin: Could not load the Qt platform plugin "xcb" in "" even though it was '
        "found.\nThis application failed to start because no Qt platform plugin could be "
        "initialized.\n"
    )
    monkeypatch.setattr(
        _qt_libs, "missing_libraries", lambda platform, out=None: ["libxcb-icccm.so.4"]
    )

    text = _gui.gui_log_tail(tmp_path)
    assert "missing: libxcb-icccm.so.4" in text
    assert "sudo apt-get install libxcb-icccm4" in text
    assert 'Could not load the Qt platform plugin "xcb"' in text


@needs_qt
@pytest.mark.skipif(not _qt_libs.missing_libraries("xcb"), reason="the xcb libraries are here")
def test_gui_on_a_machine_without_the_xcb_libraries(tmp_path):
    """Where Qt's xcb plugin cannot load (as on this CI image), the run says what to install."""
    setup = tmp_path / "setup.yaml"
    setup.write_text(
        "Buffers:\n  raw: {slot_count: 4, data_length: 1, data_dtype: {value: int64}}\n"
        f"Workers:\n  src:\n    file: {os.path.dirname(__file__)}/pipelines/workers.py\n"
        "    function: source\n    config: {n_events: 1500, sleep: 0.002}\n    sinks: [raw]\n"
        "  out: {function: exporters.drain, sources: [raw]}\n"
        f"target_directory: {tmp_path / 'runs'}\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "DISPLAY": ":97"}
    env.pop("WAYLAND_DISPLAY", None)
    r = subprocess.run(
        [sys.executable, "-m", "mimocorb2", str(setup), "-c", "gui"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=40,
        env=env,
        check=False,
    )
    assert "platform plugin needs system libraries that are missing" in r.stderr, r.stderr
    assert "sudo apt-get install" in r.stderr
