"""Prebuilt exporters (drain, histogram, csv) and misc.copy, run inside real Control runs."""

from __future__ import annotations

import csv as csvlib
import os
import stat
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import COLLECT_FUNCTION, collected, failure_text, run_control

from mimocorb2.control import Control
from mimocorb2.functions.exporters import CsvWriter
from mimocorb2.mimo_buffer import mimoBuffer

USER_FUNCTIONS = textwrap.dedent(
    '''
    import os
    import time
    from pathlib import Path

    import numpy as np

    from mimocorb2 import Exporter, Importer


    def rows(io):
        """mimoCoRB2 Function: events from config 'rows' {field: [values]}.

        Type
            Importer
        """
        importer = Importer(io)
        table = io["rows"]
        n = len(next(iter(table.values())))
        wait_file = io.get("wait_file")
        wait_after = int(io.get("wait_after", -1))
        event = importer.data_example.copy()

        def gen():
            for i in range(n):
                if i == wait_after:
                    # wait until the exporter has written what it got so far
                    path = Path(io.run_dir) / wait_file
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:
                        if io.get("wait_kind") == "npy":
                            try:
                                if int(np.load(path).sum()) >= int(io["wait_count"]):
                                    break
                            except Exception:
                                pass
                        elif path.exists():
                            lines = path.read_text().splitlines()
                            if len(lines) - 1 >= int(io["wait_count"]):
                                break
                        time.sleep(0.02)
                    Path(io.run_dir, "waited.txt").write_text(f"{time.monotonic() < deadline}")
                for field, values in table.items():
                    event[field] = values[i]
                yield event
            yield None

        importer(gen)

    '''
)
USER_FUNCTIONS += COLLECT_FUNCTION  # the shared 'collect' exporter (tests/helpers.py)


def buffer(fields: dict, slot_count: int = 16, data_length: int = 1) -> dict:
    return {"slot_count": slot_count, "data_length": data_length, "data_dtype": fields}


def user(tmp_path: Path, function: str, **kw) -> dict:
    path = tmp_path / "user_functions.py"
    if not path.exists():
        path.write_text(USER_FUNCTIONS)
    return {"file": "user_functions.py", "function": function, **kw}


def run(tmp_path: Path, buffers: dict, workers: dict) -> Control:
    setup = {"Buffers": buffers, "Workers": workers, "target_directory": str(tmp_path / "runs")}
    return run_control(setup, tmp_path)


# ----- histogram -----


def histogram_setup(tmp_path, n=100, hist_kw=None, extra_workers=None, source_cfg=None):
    buffers = {
        "heights": buffer({"h": "float64", "n": "int64"}),
        "passed": buffer({"h": "float64", "n": "int64"}),
    }
    rows = {"h": [float(i) for i in range(n)], "n": list(range(n))}
    workers = {
        "source": user(tmp_path, "rows", config={"rows": rows, **(source_cfg or {})}),
        "histogram": {
            "function": "exporters.histogram",
            "sources": ["heights"],
            "sinks": ["passed"],
            "config": {"bins": {"h": [10, 60, 5], "n": [0, 100, 3]}},
            **(hist_kw or {}),
        },
        "collect": user(tmp_path, "collect", sources=["passed"]),
    }
    workers["source"]["sinks"] = ["heights"]
    workers.update(extra_workers or {})
    return buffers, workers


def read_info(directory: Path) -> list[str]:
    return (directory / "info.csv").read_text().splitlines()


@pytest.fixture
def umask_022():
    """A known umask for the run (the workers inherit it): new files get mode 0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("processes", [1, 3])
def test_histogram_counts_under_overflow_and_pass_through(tmp_path, processes, umask_022):
    buffers, workers = histogram_setup(tmp_path, hist_kw={"number_of_processes": processes})
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 0, failure_text(control)
    hdir = control.run_dir / "Histograms_heights"
    h = np.load(hdir / "h.npy")
    n = np.load(hdir / "n.npy")
    assert h.dtype == np.int64 and n.dtype == np.int64
    # edges 10, 20, ..., 60: 10 values each, the last bin also holds 60 (== max)
    assert h.tolist() == [10, 10, 10, 10, 11]
    # edges 0, 33.3, 66.7, 100: 0..33, 34..66, 67..99
    assert n.tolist() == [34, 33, 33]
    assert read_info(hdir) == [
        "Channel,Min,Max,NBins,Underflow,Overflow",
        "h,10.0,60.0,5,10,39",
        "n,0.0,100.0,3,0,0",
    ]
    assert sorted(p.name for p in hdir.iterdir()) == ["h.npy", "info.csv", "n.npy"]
    # the mode of any new file (0o666 & ~umask), not the 0600 of a temporary file
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in hdir.iterdir()} == {
        "h.npy": "0o644",
        "info.csv": "0o644",
        "n.npy": "0o644",
    }
    data, _ = collected(control.run_dir, "collect")
    assert sorted(data["n"].tolist()) == list(range(100))


def test_two_histogram_exporters_of_one_buffer_merge(tmp_path):
    extra = {
        "histogram2": {
            "function": "exporters.histogram",
            "sources": ["heights"],
            "config": {"bins": {"h": [10, 60, 5]}, "update_interval": 0.05},
        }
    }
    buffers, workers = histogram_setup(tmp_path, n=2000, extra_workers=extra)
    workers["source"]["config"]["rows"] = {
        "h": [float(i % 100) for i in range(2000)],
        "n": [i % 100 for i in range(2000)],
    }
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 0, failure_text(control)
    hdir = control.run_dir / "Histograms_heights"
    # both readers compete; together they saw every event once
    assert np.load(hdir / "h.npy").tolist() == [200, 200, 200, 200, 220]
    info = read_info(hdir)
    assert "h,10.0,60.0,5,200,780" in info
    data, _ = collected(control.run_dir, "collect")
    n_rows = [line for line in info if line.startswith("n,")]
    assert n_rows == ["n,0.0,100.0,3,0,0"]
    # only the events of the first exporter were histogrammed for n (and passed on)
    assert int(np.load(hdir / "n.npy").sum()) == len(data)


def test_histogram_files_are_updated_during_the_run(tmp_path):
    cfg = {
        "wait_after": 50,
        "wait_file": "Histograms_heights/n.npy",
        "wait_kind": "npy",
        "wait_count": 50,
    }
    buffers, workers = histogram_setup(tmp_path, source_cfg=cfg)
    workers["histogram"]["config"]["update_interval"] = 0.1
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 0, failure_text(control)
    assert (control.run_dir / "waited.txt").read_text() == "True"
    assert np.load(control.run_dir / "Histograms_heights" / "n.npy").sum() == 100


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "needs the config key 'bins"),
        ({"bins": {"x": [0, 1, 2]}}, "does not have; use one of ['h', 'n']"),
        ({"bins": {"h": [1, 0, 2]}}, "finite min < max"),
        ({"bins": {"h": [0, 1, 0]}}, "positive integer number_of_bins"),
        ({"bins": {"h": [0, 1]}}, "must be [min, max, number_of_bins]"),
        ({"bins": {"h": [0, 1, 2]}, "update_interval": 0}, "'update_interval' must be a positive"),
    ],
)
def test_histogram_config_errors(tmp_path, config, message):
    buffers, workers = histogram_setup(tmp_path, hist_kw={"config": config})
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 1
    text = failure_text(control)
    assert "worker 'histogram'" in text and message in text


def test_histogram_needs_data_length_1(tmp_path):
    buffers = {"wave": buffer({"h": "float64"}, data_length=4)}
    workers = {
        "source": user(tmp_path, "rows", config={"rows": {"h": [1.0]}}, sinks=["wave"]),
        "histogram": {
            "function": "exporters.histogram",
            "sources": ["wave"],
            "config": {"bins": {"h": [0, 1, 2]}},
        },
    }
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 1
    assert "data_length 1" in failure_text(control)


# ----- csv -----

CSV_FIELDS = {"i": "int64", "f": "float64", "g": "float32", "u": "uint8", "b": "bool"}
BIG = 2**53 + 1


def csv_rows(n: int) -> dict:
    return {
        "i": [BIG + k for k in range(n)],
        "f": [k / 3 for k in range(n)],
        "g": [k / 10 for k in range(n)],
        "u": [k % 256 for k in range(n)],
        "b": [k % 2 == 0 for k in range(n)],
    }


def csv_setup(tmp_path, n, csv_kw=None, source_cfg=None):
    buffers = {"events": buffer(CSV_FIELDS), "passed": buffer(CSV_FIELDS)}
    workers = {
        "source": user(
            tmp_path,
            "rows",
            config={"rows": csv_rows(n), **(source_cfg or {})},
            sinks=["events"],
        ),
        "csv": {
            "function": "exporters.csv",
            "sources": ["events"],
            "sinks": ["passed"],
            **(csv_kw or {}),
        },
        "collect": user(tmp_path, "collect", sources=["passed"]),
    }
    return buffers, workers


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csvlib.reader(f))
    return rows[0], rows[1:]


@pytest.mark.parametrize("processes", [1, 2])
def test_csv_typed_columns(tmp_path, processes):
    n = 300
    buffers, workers = csv_setup(tmp_path, n, csv_kw={"number_of_processes": processes})
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 0, failure_text(control)
    text = (control.run_dir / "events.csv").read_text()
    assert text.count("counter,timestamp,deadtime") == 1
    header, rows = read_csv(control.run_dir / "events.csv")
    assert header == ["counter", "timestamp", "deadtime", "i", "f", "g", "u", "b"]
    assert len(rows) == n
    rows.sort(key=lambda r: int(r[0]))
    t0 = time.time()
    for k, (counter, ts, dt, i, f, g, u, b) in enumerate(rows):
        assert counter == str(k)  # an integer column, not "5.0"
        assert 0 < float(ts) <= t0 and 0.0 <= float(dt) <= 1.0
        assert i == str(BIG + k) and int(i) == BIG + k  # exact above 2**53
        assert float(f) == k / 3  # full precision
        assert g == str(np.float32(k / 10))  # shortest float32 text, e.g. 0.1
        assert u == str(k % 256)
        assert b == str(k % 2 == 0)
    data, _ = collected(control.run_dir, "collect")
    assert sorted(data["i"].tolist()) == [BIG + k for k in range(n)]


def test_csv_filename_and_incremental_save(tmp_path):
    cfg = {"wait_after": 40, "wait_file": "mine.csv", "wait_kind": "csv", "wait_count": 40}
    buffers, workers = csv_setup(
        tmp_path,
        100,
        csv_kw={"config": {"filename": "mine", "save_interval": 0.1}},
        source_cfg=cfg,
    )
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 0, failure_text(control)
    assert (control.run_dir / "waited.txt").read_text() == "True"
    assert not (control.run_dir / "events.csv").exists()
    _, rows = read_csv(control.run_dir / "mine.csv")
    assert [int(r[0]) for r in rows] == list(range(100))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"filename": "sub/x"}, "'filename' must be a plain file name"),
        ({"save_interval": "soon"}, "'save_interval' must be a positive number"),
    ],
)
def test_csv_config_errors(tmp_path, config, message):
    buffers, workers = csv_setup(tmp_path, 10, csv_kw={"config": config})
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 1
    text = failure_text(control)
    assert "worker 'csv'" in text and message in text


@pytest.mark.parametrize("field", ["counter", "timestamp", "deadtime"])
def test_csv_refuses_data_fields_named_like_metadata_columns(tmp_path, field):
    fields = {"x": "float64", field: "int64"}
    buffers = {"events": buffer(fields)}
    workers = {
        "source": user(
            tmp_path, "rows", config={"rows": {"x": [1.0, 2.0], field: [1, 2]}}, sinks=["events"]
        ),
        "csv": {"function": "exporters.csv", "sources": ["events"]},
    }
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 1
    assert [p["worker"] for p in control.failures()] == ["csv"]
    text = failure_text(control)
    assert f"cannot write the data field '{field}' of source 'events'" in text
    assert f"rename the field in the buffer's data_dtype (e.g. '{field}_value')" in text
    assert not (control.run_dir / "events.csv").exists()
    with pytest.raises(ValueError, match="name of a metadata column"):
        CsvWriter(tmp_path / "direct.csv", mimoBuffer.metadata_dtype, np.dtype([(field, "f8")]))
    assert not (tmp_path / "direct.csv").exists()


def test_csv_writer_core_formats_and_refuses_other_header(tmp_path):
    meta_dtype = mimoBuffer.metadata_dtype
    dtype = np.dtype([("x", "f8"), ("s", "U8"), ("n", "i2")])
    meta = np.zeros(3, dtype=meta_dtype)
    meta["counter"] = [0, 1, 2]
    meta["timestamp"] = 1.7e9 + 0.125
    data = np.zeros(3, dtype=dtype)
    data["x"] = [0.1, np.nan, -np.inf]
    data["s"] = ["a,b", 'q"t', "plain"]
    data["n"] = [-1, 0, 32767]
    path = tmp_path / "out.csv"
    writer = CsvWriter(path, meta_dtype, dtype)
    assert writer.write(meta, data) == 3
    writer.close()
    assert path.read_text().splitlines() == [
        "counter,timestamp,deadtime,x,s,n",
        '0,1700000000.125,0.0,0.1,"a,b",-1',
        '1,1700000000.125,0.0,nan,"q""t",0',
        "2,1700000000.125,0.0,-inf,plain,32767",
    ]
    # a second writer of the same columns appends without a second header
    again = CsvWriter(path, meta_dtype, dtype)
    again.write(meta[:1], data[:1])
    again.close()
    assert path.read_text().count("counter,") == 1
    assert len(path.read_text().splitlines()) == 5
    with pytest.raises(ValueError, match="other columns"):
        CsvWriter(path, meta_dtype, np.dtype([("y", "f8")]))
    with pytest.raises(ValueError, match="plain"):
        CsvWriter(tmp_path / "sub.csv", meta_dtype, np.dtype([("w", "f4", (3,))]))


# ----- drain and misc.copy -----


def test_drain_consumes_everything(tmp_path):
    n = 5000
    buffers = {"raw": buffer({"n": "int64"}, slot_count=8)}
    workers = {
        "source": user(tmp_path, "rows", config={"rows": {"n": list(range(n))}}, sinks=["raw"]),
        "drain": {"function": "exporters.drain", "sources": ["raw"]},
    }
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 0, failure_text(control)
    stats = control.get_stats()["buffers"]["raw"]
    assert stats["event_count"] == n


def test_drain_refuses_sinks(tmp_path):
    buffers = {"raw": buffer({"n": "int64"}), "out": buffer({"n": "int64"})}
    workers = {
        "source": user(tmp_path, "rows", config={"rows": {"n": [1, 2]}}, sinks=["raw"]),
        "drain": {"function": "exporters.drain", "sources": ["raw"], "sinks": ["out"]},
        "collect": user(tmp_path, "collect", sources=["out"]),
    }
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 1
    assert "exporters.drain has no sinks" in failure_text(control)


def test_misc_copy_duplicates_to_every_sink(tmp_path):
    n = 500
    fields = {"n": "int64", "x": "float32"}
    buffers = {"raw": buffer(fields), "a": buffer(fields), "b": buffer(fields)}
    rows = {"n": list(range(n)), "x": [k / 4 for k in range(n)]}
    workers = {
        "source": user(tmp_path, "rows", config={"rows": rows}, sinks=["raw"]),
        "copy": {
            "function": "misc.copy",
            "number_of_processes": 2,
            "sources": ["raw"],
            "sinks": ["a", "b"],
        },
        "collect_a": user(tmp_path, "collect", sources=["a"]),
        "collect_b": user(tmp_path, "collect", sources=["b"]),
    }
    control = run(tmp_path, buffers, workers)
    assert control.exit_code == 0, failure_text(control)
    for worker in ("collect_a", "collect_b"):
        data, counters = collected(control.run_dir, worker)
        order = np.argsort(counters)
        assert counters[order].tolist() == list(range(n))  # metadata copied unchanged
        assert data["n"][order].tolist() == list(range(n))
        assert data["x"][order].tolist() == [k / 4 for k in range(n)]
