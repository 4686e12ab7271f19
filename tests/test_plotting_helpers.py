"""The plotting helpers of mimocorb2._plotting and the plot functions' configs, in-process
(no Qt in pytest), and the window loop itself in a child interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from plot_test_helpers import needs_qt

# ----- helpers in-process (no Qt) -----


def test_importing_the_function_modules_does_not_load_qt():
    code = (
        "import sys, mimocorb2.functions.observers, mimocorb2.functions.visualizers\n"
        "print([m for m in sys.modules if m.startswith(('PyQt', 'PySide', 'pyqtgraph'))])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_display_detection(monkeypatch):
    from mimocorb2._plotting import _environment_problem

    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    assert "DISPLAY" in _environment_problem()
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert _environment_problem() is not None
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert _environment_problem() is None
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb;offscreen:fontengine=freetype")
    assert _environment_problem() is None
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert _environment_problem() is None


@needs_qt
def test_display_probe_reports_a_failing_qt(monkeypatch):
    from mimocorb2 import _plotting

    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setenv("DISPLAY", ":4242")  # no such X server: Qt would abort the process
    monkeypatch.setattr(_plotting, "_probe_result", {})
    problem = _plotting.display_problem()
    assert problem is not None and "Qt cannot start a window" in problem
    # a probe whose imports fail (exit code 3) is reported as missing packages
    monkeypatch.setattr(_plotting, "_PROBE", "import sys; sys.exit(3)")
    monkeypatch.setattr(_plotting, "_probe_result", {})
    assert "pip install PyQt5 pyqtgraph" in _plotting.display_problem()


def test_grid_shape():
    from mimocorb2 import _plotting

    shapes = [_plotting.grid_shape(n) for n in (1, 2, 3, 4, 5, 9, 10)]
    assert shapes == [(1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (3, 3), (3, 4)]


class FakeIO:
    name = "w"

    def __init__(self, **config):
        self.config = config

    def get(self, key, default=None):
        return self.config.get(key, default)


def test_oscilloscope_config_values():
    from mimocorb2.functions.observers import _triple, _ylim

    default = (1.0, 0.0, "Value")
    assert _triple(FakeIO(), "y_scaling", default) == default
    assert _triple(FakeIO(y_scaling=[0.5]), "y_scaling", default) == (0.5, 0.0, "Value")
    assert _triple(FakeIO(y_scaling=(2, 1, "mV")), "y_scaling", default) == (2.0, 1.0, "mV")
    for bad in ("mV", [1, 2, "x", 4], ["a", 0, "V"]):
        with pytest.raises(ValueError, match="y_scaling"):
            _triple(FakeIO(y_scaling=bad), "y_scaling", default)
    assert _ylim(FakeIO()) is None
    assert _ylim(FakeIO(ylim=[-1, 2])) == (-1.0, 2.0)
    for bad in ([2, 1], [1], "ab"):
        with pytest.raises(ValueError, match="ylim"):
            _ylim(FakeIO(ylim=bad))


def test_update_interval_must_be_positive():
    from mimocorb2 import _plotting

    assert _plotting.interval_config(FakeIO()) == 1.0
    assert _plotting.interval_config(FakeIO(update_interval=0.25)) == 0.25
    assert _plotting.interval_config(FakeIO(update_interval=None)) == 1.0
    for bad in (0, -1, "soon", float("inf")):
        with pytest.raises(ValueError, match="update_interval"):
            _plotting.interval_config(FakeIO(update_interval=bad))


def test_csv_tail_reads_only_new_complete_rows(tmp_path):
    from mimocorb2.functions.visualizers import _CsvTail

    path = tmp_path / "data.csv"
    tail = _CsvTail(path, ["x", "counter", "missing"])
    assert tail.read() is None  # not there yet
    path.write_text("counter,timestamp,deadtime,x\n0,1.5,0.1,10.0\n1,1.6,0.1,11.0\n2,1.7")
    restarted, cols = tail.read()
    assert restarted and list(cols) == ["x", "counter"]
    assert cols["x"].tolist() == [10.0, 11.0] and cols["counter"].tolist() == [0.0, 1.0]
    path.write_text(path.read_text() + ",0.1,12.0\n3,1.8,0.1,13.0\n")  # the row completed
    restarted, cols = tail.read()
    assert not restarted and cols["x"].tolist() == [12.0, 13.0]
    restarted, cols = tail.read()
    assert not restarted and cols["x"].size == 0
    tmp = tmp_path / "new.csv"  # replaced by a different file: read again from the start
    tmp.write_text("counter,timestamp,deadtime,x\n0,9.0,0.0,99.0\n1,9.1,0.0,98.0\n2,9.2,0,97\n")
    os.replace(tmp, path)
    restarted, cols = tail.read()
    assert restarted and cols["x"].tolist() == [99.0, 98.0, 97.0]
    path.write_text(path.read_text() + "bad,line\n4,9.4,0.0,96.0\n")
    restarted, cols = tail.read()
    assert not restarted and cols["x"].tolist() == [96.0]


def test_histogram_files_are_read_tolerantly(tmp_path):
    from mimocorb2.functions.visualizers import _HistogramFiles

    files = _HistogramFiles(tmp_path)
    assert files.info() is None
    (tmp_path / "info.csv").write_text("Channel,Min\n")  # partial
    assert files.info() is None
    (tmp_path / "info.csv").write_text(
        "Channel,Min,Max,NBins,Underflow,Overflow\na,0.0,1.0,4,0,3\nb,-1,1,2,,\n"
    )
    info = files.info()
    assert [(r["channel"], r["nbins"], r["overflow"]) for r in info] == [
        ("a", 4, 3),
        ("b", 2, None),
    ]
    assert files.counts("a") is None
    (tmp_path / "a.npy").write_bytes(b"\x93NUMPY garbage")
    assert files.counts("a") is None
    np.save(tmp_path / "a.npy", np.array([1, 2, 3, 4]))
    assert files.counts("a").tolist() == [1, 2, 3, 4]
    assert files.counts("a") is None  # unchanged: not loaded again
    assert files.counts("a", force=True).tolist() == [1, 2, 3, 4]


def test_histogram_files_are_read_under_the_exporter_lock(tmp_path):
    from mimocorb2.functions.exporters import _HistogramFiles as ExporterFiles
    from mimocorb2.functions.visualizers import _HistogramFiles

    writer = ExporterFiles(tmp_path)
    writer.save("a", np.array([1, 2, 3, 4]))
    writer.write_info({"a": [0.0, 1.0, 4, 0, 0]})
    files = _HistogramFiles(tmp_path)
    result = []
    try:
        with writer.lock():  # an update in progress: npy written, info.csv not yet
            writer.save("a", np.array([5, 6, 7, 8]))
            reader = threading.Thread(target=lambda: result.append(files.read(None)))
            reader.start()
            reader.join(0.3)
            assert result == []  # the reader waits for the end of the update
            writer.write_info({"a": [0.0, 1.0, 4, 2, 1]})
        reader.join(10)
    finally:
        writer.close()
    info, counts = result[0]
    assert (info[0]["underflow"], info[0]["overflow"]) == (2, 1)
    assert counts["a"].tolist() == [5, 6, 7, 8]
    assert files.read(["a"]) == (info, {})  # nothing changed since


# ----- the window loop itself (in a child interpreter: Qt stays out of pytest) -----

WINDOW_LOOP = textwrap.dedent(
    """
    import logging, sys
    from mimocorb2._qt import QtCore, QtWidgets, pg
    from mimocorb2 import _plotting

    logging.basicConfig(level=logging.INFO)
    app = _plotting.application()
    mode = sys.argv[1]
    window = pg.PlotWidget()
    calls = []

    def refresh():
        calls.append(1)
        if mode == "raise" and len(calls) == 3:
            raise RuntimeError("refresh failed")

    if mode == "close":
        # as the window manager closes it (pyqtgraph's close() override is not involved)
        QtCore.QTimer.singleShot(300, lambda: QtWidgets.QWidget.close(window))
    alive = (lambda: len(calls) < 5) if mode == "end" else (lambda: True)
    try:
        how = _plotting.run_window(
            window, refresh=refresh, alive=alive, interval=0.05, screenshot=sys.argv[2]
        )
    except RuntimeError as e:
        how = f"raised {e}"
    print("RESULT", how, len(calls) >= 2)
    """
)


@needs_qt
@pytest.mark.parametrize(
    ("mode", "expected"),
    [("close", "closed"), ("end", "ended"), ("raise", "raised refresh failed")],
)
def test_run_window_ends_on_close_end_and_error(tmp_path, mode, expected):
    shot = tmp_path / "w.png"
    r = subprocess.run(
        [sys.executable, "-c", WINDOW_LOOP, mode, str(shot)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert f"RESULT {expected} True" in r.stdout
    assert shot.exists()
