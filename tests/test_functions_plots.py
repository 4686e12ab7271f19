"""The plotting functions: observers.oscilloscope, visualizers.histogram and visualizers.csv.

The workers run as separate processes of a real run (Control). They inherit this process's
environment, so ``QT_QPA_PLATFORM=offscreen`` set before creating the Control makes them
really build and render their windows; the ``screenshot`` config key saves a PNG that is
checked here. Qt is never imported into the pytest process itself (image checks run in a
child interpreter).

The plotting helpers in-process and the window loop are in test_plotting_helpers.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from plot_test_helpers import needs_qt

from mimocorb2.control import Control

# ----- user functions of the test runs (written to a file in tmp_path) -----

USER_FUNCTIONS = '''
import os
import time
from pathlib import Path

import numpy as np

from mimocorb2 import Exporter, Importer


def _wait_for_window(io, worker, timeout=15.0):
    """Waits until the plotting worker logged that its window is open (bounded)."""
    if os.environ.get("MIMOCORB2_NO_DISPLAY_NOTED") == "1":
        return  # no display: the control said so, the plot workers skip themselves quietly
    log = Path(io.run_dir) / "logs" / f"{worker}.log"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            text = log.read_text()
        except OSError:
            text = ""
        if any(s in text for s in ("window open", "no display", "Traceback")):
            return
        time.sleep(0.05)


def waves(io):
    """Paced sine/cosine waveforms, for `seconds` after the window of `wait_for` opened."""
    importer = Importer(io)
    ev = importer.data_example.copy()
    x = np.arange(len(ev))
    wait_for = io.get("wait_for")
    seconds = float(io.get("seconds", 1.0))

    def gen():
        if wait_for:
            _wait_for_window(io, wait_for)
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            ev["ch1"] = 100.0 * np.sin(2 * np.pi * (x + i) / len(ev) * 2)
            ev["ch2"] = 50.0 * np.cos(2 * np.pi * (x + i) / len(ev) * 3)
            time.sleep(0.02)
            yield ev
            i += 1
        yield None

    importer(gen)


def numbers(io):
    """Values 0..n-1, after the window of `wait_for` opened; paced if `sleep` is set."""
    importer = Importer(io)
    ev = importer.data_example.copy()
    n = int(io.get("n_events", 100))
    sleep = float(io.get("sleep", 0.0))
    wait_for = io.get("wait_for")
    field = ev.dtype.names[0]

    def gen():
        if wait_for:
            _wait_for_window(io, wait_for)
        for i in range(n):
            ev[field] = i
            if sleep:
                time.sleep(sleep)
            yield ev
        yield None

    importer(gen)


def collect(io):
    """Saves the received values in order."""
    values = [d[d.dtype.names[0]][0] for d, _m in Exporter(io)]
    np.save(Path(io.run_dir) / "collected.npy", np.array(values))


def _replace(path, write):
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def hist_writer(io):
    """Writes a known histogram like exporters.histogram (before any event), then drains."""
    exporter = Exporter(io)
    source = io.buffer_names_in[0]
    directory = Path(io.run_dir) / f"Histograms_{source}"
    directory.mkdir(exist_ok=True)
    counts = np.array([1, 3, 6, 10, 15, 21, 15, 10, 6, 3], dtype=np.int64)
    _replace(directory / "x.npy", lambda p: np.save(open(p, "wb"), counts))
    _replace(
        directory / "info.csv",
        lambda p: p.write_text("Channel,Min,Max,NBins,Underflow,Overflow\\nx,0.0,10.0,10,2,1\\n"),
    )
    for _ in exporter:
        pass


def late_hist_writer(io):
    """Like exporters.histogram with a slow last write: the counts of all events only arrive
    `delay` s after the buffer ended (until then the files hold an empty histogram)."""
    exporter = Exporter(io)
    directory = Path(io.run_dir) / f"Histograms_{io.buffer_names_in[0]}"
    directory.mkdir(exist_ok=True)

    def write(counts, overflow):
        def save(p):
            with open(p, "wb") as f:
                np.save(f, counts)

        _replace(directory / "x.npy", save)
        _replace(
            directory / "info.csv",
            lambda p: p.write_text(
                f"Channel,Min,Max,NBins,Underflow,Overflow\\nx,0.0,50.0,10,0,{overflow}\\n"
            ),
        )

    write(np.zeros(10, dtype=np.int64), 0)
    values = np.array([d["x"][0] for d, _m in exporter])
    time.sleep(float(io.get("delay", 0.5)))
    counts = np.histogram(values, bins=10, range=(0.0, 50.0))[0].astype(np.int64)
    write(counts, int(np.count_nonzero(values > 50.0)))


def csv_writer(io):
    """Writes the events like exporters.csv: rewritten atomically every 0.1 s."""
    exporter = Exporter(io)
    path = Path(io.run_dir) / (io.get("filename", io.buffer_names_in[0]) + ".csv")
    fields = list(exporter.data_example.dtype.names)
    lines = ["counter,timestamp,deadtime," + ",".join(fields)]
    last = 0.0
    for data, meta in exporter:
        m = meta[0]
        row = [str(int(m["counter"])), repr(float(m["timestamp"])), repr(float(m["deadtime"]))]
        row += [repr(float(data[f][0])) for f in fields]
        lines.append(",".join(row))
        if time.monotonic() - last > 0.1:
            last = time.monotonic()
            _replace(path, lambda p: p.write_text("\\n".join(lines) + "\\n"))
    _replace(path, lambda p: p.write_text("\\n".join(lines) + "\\n"))
'''

# Runs in a child interpreter: loads a PNG with Qt and reports simple statistics as JSON.
IMAGE_STATS = """
import json, sys
import numpy as np
from mimocorb2._qt import QtGui, pg
img = QtGui.QImage(sys.argv[1])
if img.isNull():
    print(json.dumps({"ok": False}))
    sys.exit(0)
img = img.convertToFormat(QtGui.QImage.Format.Format_RGB32)
w, h = img.width(), img.height()
a = pg.functions.ndarray_from_qimage(img)[..., :3]  # B, G, R (every binding)
rgb = a[..., ::-1].astype(int)
out = {"ok": True, "w": w, "h": h, "std": float(rgb.std()), "colors": {}}
for name in sys.argv[2:]:
    r, g, b = int(name[1:3], 16), int(name[3:5], 16), int(name[5:7], 16)
    mask = (abs(rgb[..., 0] - r) < 40) & (abs(rgb[..., 1] - g) < 40) & (abs(rgb[..., 2] - b) < 40)
    rows = np.nonzero(mask.any(axis=1))[0]
    out["colors"][name] = {
        "count": int(mask.sum()),
        "top": int(rows.min()) if rows.size else -1,
        "bottom": int(rows.max()) if rows.size else -1,
        # the rows, to tell a curve from its legend sample under the plot
        "rows": [int(r) for r in rows],
    }
print(json.dumps(out))
"""


def image_stats(path: Path, *colors: str) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", IMAGE_STATS, str(path), *colors],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


# ----- helpers -----


@pytest.fixture
def offscreen(monkeypatch):
    """Worker processes (started by the control) inherit this environment."""
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


@pytest.fixture
def headless(monkeypatch):
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def user_file(tmp_path: Path) -> str:
    path = tmp_path / "plot_workers.py"
    if not path.exists():
        path.write_text(USER_FUNCTIONS)
    return str(path)


def run(tmp_path: Path, buffers: dict, workers: dict, limit: float = 45.0) -> Control:
    setup = {"Buffers": buffers, "Workers": workers, "target_directory": str(tmp_path / "runs")}
    control = Control(setup, tmp_path, mode="stats")
    t0 = time.monotonic()
    control()
    assert time.monotonic() - t0 < limit, "the run did not end by itself in time"
    return control


def log_of(control: Control, worker: str) -> str:
    return (control.run_dir / "logs" / f"{worker}.log").read_text()


def waves_setup(tmp_path: Path, scope_config: dict, seconds: float = 1.0):
    buffers = {
        "waves": {
            "slot_count": 16,
            "data_length": 500,
            "data_dtype": {"ch1": "float32", "ch2": "float32"},
        }
    }
    workers = {
        "source": {
            "file": user_file(tmp_path),
            "function": "waves",
            "sinks": ["waves"],
            "config": {"wait_for": "scope", "seconds": seconds},
        },
        "drain": {"function": "exporters.drain", "sources": ["waves"]},
        "scope": {
            "function": "observers.oscilloscope",
            "observes": ["waves"],
            "config": scope_config,
        },
    }
    return buffers, workers


RED, GREEN, BLUE = "#ff0000", "#00ff00", "#1f77b4"


# ----- observers.oscilloscope -----


@needs_qt
def test_oscilloscope_draws_waveforms_and_ends_with_the_buffer(tmp_path, offscreen):
    shot = tmp_path / "scope.png"
    config = {
        "update_interval": 0.1,
        "colors": [RED, GREEN],
        "ylim": [-2.0, 2.0],
        "y_scaling": [0.01, 0.0, "V"],  # 100 * 0.01: ch1 spans half of the y range
        "t_scaling": [0.5, 0, "ns"],
        "trigger_level": 50,
        "screenshot": str(shot),
    }
    control = run(tmp_path, *waves_setup(tmp_path, config))
    assert control.exit_code == 0, control.failures()
    log = log_of(control, "scope")
    assert "window open: Oscilloscope: scope (waves)" in log
    assert shot.exists()
    stats = image_stats(shot, RED, GREEN)
    assert stats["ok"] and stats["std"] > 5
    red = stats["colors"][RED]
    assert red["count"] > 300, stats  # the ch1 curve is drawn
    assert stats["colors"][GREEN]["count"] > 200, stats
    # the legend sits under the x-axis (the bottom rows), not on the traces: its red sample
    # is the only red there, separated from the curve by the axis
    legend_rows = [r for r in red["rows"] if r > 0.9 * stats["h"]]
    curve_rows = [r for r in red["rows"] if r <= 0.9 * stats["h"]]
    assert 0 < len(legend_rows) <= 3, red
    # y_scaling applied: ch1 reaches -1 V, three quarters down the [-2, 2] V axis (unscaled,
    # -100, it would run to the bottom of the plot)
    assert 0.55 < max(curve_rows) / stats["h"] < 0.75, stats


@needs_qt
def test_oscilloscope_only_selected_channels(tmp_path, offscreen):
    shot = tmp_path / "scope.png"
    config = {
        "update_interval": 0.1,
        "channels": ["ch2"],
        "colors": {"ch2": RED},
        "screenshot": str(shot),
    }
    control = run(tmp_path, *waves_setup(tmp_path, config, seconds=0.6))
    assert control.exit_code == 0, control.failures()
    stats = image_stats(shot, RED, GREEN)
    assert stats["colors"][RED]["count"] > 300, stats
    assert stats["colors"][GREEN]["count"] == 0, stats


def test_oscilloscope_bad_channel_fails_the_worker_clearly(tmp_path, offscreen):
    control = run(tmp_path, *waves_setup(tmp_path, {"channels": ["nope"]}, seconds=0.2))
    assert control.exit_code == 1
    assert [p["worker"] for p in control.failures()] == ["scope"]
    assert "'nope'" in log_of(control, "scope")


@needs_qt
def test_oscilloscope_does_not_slow_or_disturb_the_pipeline(tmp_path, offscreen):
    n = 20000
    buffers = {"raw": {"slot_count": 64, "data_length": 1, "data_dtype": {"value": "int64"}}}
    workers = {
        "source": {
            "file": user_file(tmp_path),
            "function": "numbers",
            "sinks": ["raw"],
            "config": {"n_events": n, "wait_for": "scope"},
        },
        "sink": {"file": user_file(tmp_path), "function": "collect", "sources": ["raw"]},
        "scope": {
            "function": "observers.oscilloscope",
            "observes": ["raw"],
            "config": {"update_interval": 0.02},
        },
    }
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 0, control.failures()
    assert "window open" in log_of(control, "scope")
    values = np.load(control.run_dir / "collected.npy")
    assert np.array_equal(values, np.arange(n))
    assert control.get_stats()["buffers"]["raw"]["event_count"] == n


# ----- visualizers -----


def params_setup(tmp_path: Path, exporter: str, visualizer: str, config: dict, n: int = 60):
    buffers = {"params": {"slot_count": 16, "data_length": 1, "data_dtype": {"x": "float64"}}}
    workers = {
        "source": {
            "file": user_file(tmp_path),
            "function": "numbers",
            "sinks": ["params"],
            "config": {"n_events": n, "sleep": 0.01, "wait_for": "show"},
        },
        "export": {"file": user_file(tmp_path), "function": exporter, "sources": ["params"]},
        "show": {"function": visualizer, "observes": ["params"], "config": config},
    }
    return buffers, workers


@needs_qt
def test_histogram_visualizer_shows_the_exporter_files(tmp_path, offscreen):
    shot = tmp_path / "hist.png"
    config = {"update_interval": 0.1, "plot_type": "bar", "screenshot": str(shot)}
    control = run(tmp_path, *params_setup(tmp_path, "hist_writer", "visualizers.histogram", config))
    assert control.exit_code == 0, control.failures()
    log = log_of(control, "show")
    assert "x (90 entries, 2 underflow, 1 overflow)" in log
    stats = image_stats(shot, BLUE)
    assert stats["ok"] and stats["std"] > 5
    assert stats["colors"][BLUE]["count"] > 2000, stats  # the bars


@needs_qt
def test_histogram_visualizer_shows_the_exporters_final_write(tmp_path, offscreen):
    # the exporter writes its final counts 0.5 s after the buffer ended: the window waits for
    # them, and its last view (log and screenshot) shows the totals, not the empty histogram
    shot = tmp_path / "hist.png"
    config = {"update_interval": 0.1, "plot_type": "bar", "screenshot": str(shot)}
    setup = params_setup(tmp_path, "late_hist_writer", "visualizers.histogram", config)
    control = run(tmp_path, *setup)
    assert control.exit_code == 0, control.failures()
    final = log_of(control, "show").splitlines()[-1]
    assert "buffer ended" in final and final.endswith("x (51 entries, 9 overflow)"), final
    assert image_stats(shot, BLUE)["colors"][BLUE]["count"] > 2000  # the bars of the totals


@needs_qt
@pytest.mark.parametrize("plot_type", ["line", "step", "stepfilled"])
def test_histogram_visualizer_plot_types(tmp_path, offscreen, plot_type):
    shot = tmp_path / "hist.png"
    config = {"update_interval": 0.1, "plot_type": plot_type, "screenshot": str(shot)}
    setup = params_setup(tmp_path, "hist_writer", "visualizers.histogram", config, n=20)
    control = run(tmp_path, *setup)
    assert control.exit_code == 0, control.failures()
    assert image_stats(shot, BLUE)["colors"][BLUE]["count"] > 100


@needs_qt
def test_histogram_visualizer_without_files_waits_and_ends(tmp_path, offscreen):
    shot = tmp_path / "hist.png"
    config = {"update_interval": 0.05, "screenshot": str(shot)}
    control = run(tmp_path, *params_setup(tmp_path, "collect", "visualizers.histogram", config))
    assert control.exit_code == 0, control.failures()
    assert "never appeared" in log_of(control, "show")
    assert image_stats(shot)["std"] > 1  # the waiting message


@needs_qt
def test_csv_visualizer_histograms_the_csv_file(tmp_path, offscreen):
    shot = tmp_path / "csv.png"
    config = {
        "update_interval": 0.1,
        "bins": {"x": [0, 60, 12], "counter": [0, 30, 3], "unknown": [0, 1, 2]},
        "histtype": "bar",  # the documented alias of plot_type
        "screenshot": str(shot),
    }
    control = run(tmp_path, *params_setup(tmp_path, "csv_writer", "visualizers.csv", config))
    assert control.exit_code == 0, control.failures()
    log = log_of(control, "show")
    assert "channel 'unknown'" in log  # reported, not fatal
    line = next(ln for ln in log.splitlines() if "visualizers.csv show (buffer ended)" in ln)
    entries = int(line.split("x (")[1].split(" entries")[0])
    assert 0 < entries <= 60
    stats = image_stats(shot, BLUE)
    assert stats["colors"][BLUE]["count"] > 1000, stats


def test_visualizers_reject_bad_config(tmp_path, offscreen):
    config = {"bins": {"x": [0, 60, 12]}, "plot_type": "pie"}
    control = run(tmp_path, *params_setup(tmp_path, "csv_writer", "visualizers.csv", config))
    assert control.exit_code == 1
    assert "plot_type" in log_of(control, "show")


# ----- no display -----


def test_without_display_the_plots_are_skipped_and_the_run_completes(tmp_path, headless, capfd):
    buffers, workers = waves_setup(tmp_path, {"update_interval": 0.1}, seconds=0.3)
    buffers["params"] = {"slot_count": 8, "data_length": 1, "data_dtype": {"x": "float64"}}
    workers["params_source"] = {
        "file": user_file(tmp_path),
        "function": "numbers",
        "sinks": ["params"],
        "config": {"n_events": 20},
    }
    workers["params_csv"] = {
        "file": user_file(tmp_path),
        "function": "csv_writer",
        "sources": ["params"],
    }
    workers["hist"] = {"function": "visualizers.histogram", "observes": ["params"]}
    workers["csv"] = {
        "function": "visualizers.csv",
        "observes": ["params"],
        "config": {"bins": {"x": [0, 20, 4]}},
    }
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 0, control.failures()
    out, err = capfd.readouterr()
    # one note per run, from the control, naming every plot worker; not one per worker
    assert (out + err).count("no display") == 1, out + err
    assert "no display: the plot workers scope, hist, csv are skipped" in err
    for worker in ("scope", "hist", "csv"):
        log = log_of(control, worker)
        assert "no display" not in log, log
        assert "window open" not in log
