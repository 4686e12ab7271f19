"""mimocorb2.functions.data: export, simulate_importer, clocked_importer; the mimo_files example."""

from __future__ import annotations

import math
import os
import pickle
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2.control import Control
from mimocorb2.functions import data as data_functions
from mimocorb2.mimo_buffer import BufferReader, mimoBuffer
from mimocorb2.mimo_file import MimoReader, MimoWriter
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import SetupError

EXAMPLE = Path(__file__).parent.parent / "examples" / "mimo_files"
DTYPE = {"a": "float32", "b": "int16"}
NP_DTYPE = np.dtype([("a", "<f4"), ("b", "<i2")])
LENGTH = 4
WAIT_S = 10.0

WORKERS = '''
import os
from pathlib import Path

import numpy as np

from mimocorb2 import BufferIO, Exporter, Importer


def source(buffer_io: BufferIO):
    """mimoCoRB2 Function: numbered events.

    Type
        Importer
    """
    importer = Importer(buffer_io)
    n = int(buffer_io.get("n_events", 100))
    event = importer.data_example.copy()

    def gen():
        for i in range(n):
            event["a"] = i + np.arange(event.size) / 10
            event["b"] = i
            yield event
        yield None

    importer(gen)


def collect(buffer_io: BufferIO):
    """mimoCoRB2 Function: saves copies of every event to the run directory.

    Type
        Exporter
    """
    exporter = Exporter(buffer_io)
    empty = np.zeros((0, exporter.data_example.size), exporter.data_example.dtype)
    data, meta = [], []
    for d, m in exporter:
        data.append(d.copy())
        meta.append(m.copy())
    np.savez(
        Path(buffer_io.run_dir) / f"{buffer_io.name}_{os.getpid()}.npz",
        data=np.array(data) if data else empty,
        meta=np.concatenate(meta) if meta else exporter.metadata_example[:0],
    )
'''


@pytest.fixture
def workers(tmp_path) -> Path:
    path = tmp_path / "workers.py"
    path.write_text(WORKERS)
    return path


def buffer_setup(length: int = LENGTH, dtype=None, slots: int = 32) -> dict:
    return {"slot_count": slots, "data_length": length, "data_dtype": dtype or DTYPE}


def run(setup: dict, setup_dir: Path) -> Control:
    setup.setdefault("target_directory", str(setup_dir / "runs"))
    control = Control(setup, setup_dir, mode="stats")
    control()
    return control


def collected(run_dir: Path, worker: str) -> tuple[np.ndarray, np.ndarray]:
    (path,) = run_dir.glob(f"{worker}_*.npz")
    with np.load(path) as f:
        return f["data"], f["meta"]


def make_file(path: Path, n: int, spacing: float, dtype=NP_DTYPE, length=LENGTH) -> np.ndarray:
    """A .mimo file of n events with timestamps ``spacing`` apart; returns the data."""
    data = np.zeros((n, length), dtype)
    data["a"] = np.arange(n)[:, None] + np.arange(length) / 10
    data["b"] = np.arange(n)[:, None]
    meta = np.zeros(n, METADATA_DTYPE)
    meta["counter"] = np.arange(n)
    meta["timestamp"] = 1_700_000_000.0 + spacing * np.arange(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    with MimoWriter(path, dtype, length, source="original") as w:
        w.write_many(data, meta)
    return data


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with MimoReader(path) as r:
        assert r.clean
        return r.read_all()


# ----- data.export -----


def test_export_writes_the_source_buffer_and_passes_events_on(tmp_path, workers):
    n = 300
    setup = {
        "Buffers": {"raw": buffer_setup(), "copy": buffer_setup()},
        "Workers": {
            "source": {
                "file": str(workers),
                "function": "source",
                "config": {"n_events": n},
                "sinks": ["raw"],
            },
            "export": {
                "function": "data.export",
                "config": {"flush_interval": 0.05},
                "sources": ["raw"],
                "sinks": ["copy"],
            },
            "collect": {"file": str(workers), "function": "collect", "sources": ["copy"]},
        },
    }
    control = run(setup, tmp_path)
    assert control.exit_code == 0
    assert [p.name for p in control.run_dir.glob("*.mimo")] == ["raw.mimo"]
    with MimoReader(control.run_dir / "raw.mimo") as r:
        assert r.clean and len(r) == n
        assert r.header["source"] == "raw" and r.header["attrs"]["worker"] == "export"
        assert r.data_dtype == NP_DTYPE and r.data_length == LENGTH
        data, meta = r.read_all()
    assert np.array_equal(data["b"][:, 0], np.arange(n))
    assert np.array_equal(meta["counter"], np.arange(n))
    passed, passed_meta = collected(control.run_dir, "collect")
    assert np.array_equal(passed, data) and np.array_equal(passed_meta, meta)


def test_export_with_three_processes_writes_three_intact_files(tmp_path, workers):
    n = 3000
    setup = {
        "Buffers": {"raw": buffer_setup(slots=16)},
        "Workers": {
            "source": {
                "file": str(workers),
                "function": "source",
                "config": {"n_events": n},
                "sinks": ["raw"],
            },
            "export": {"function": "data.export", "number_of_processes": 3, "sources": ["raw"]},
        },
    }
    control = run(setup, tmp_path)
    assert control.exit_code == 0
    files = sorted(p.name for p in control.run_dir.glob("*.mimo"))
    assert files == ["raw.mimo", "raw_2.mimo", "raw_3.mimo"]
    values, pids = [], set()
    for name in files:
        with MimoReader(control.run_dir / name) as r:
            assert r.clean and r.truncated_bytes == 0
            pids.add(r.header["attrs"]["pid"])
            data, meta = r.read_all()
        b = data["b"][:, 0]
        assert np.array_equal(data["a"], b[:, None] + np.arange(LENGTH, dtype=np.float32) / 10)
        assert np.array_equal(meta["counter"], b)  # each record intact: data matches metadata
        assert np.all(np.diff(b) > 0)  # each process sees its events in order
        values.append(b)
    assert len(pids) == 3
    assert np.array_equal(np.sort(np.concatenate(values)), np.arange(n))  # none lost or doubled


def test_export_rejects_a_bad_flush_interval(tmp_path, workers):
    setup = {
        "Buffers": {"raw": buffer_setup()},
        "Workers": {
            "source": {  # fewer events than slots: the source ends without a reader
                "file": str(workers),
                "function": "source",
                "config": {"n_events": 10},
                "sinks": ["raw"],
            },
            "export": {
                "function": "data.export",
                "config": {"flush_interval": -1},
                "sources": ["raw"],
            },
        },
    }
    control = run(setup, tmp_path)
    assert control.exit_code == 1
    assert [p["worker"] for p in control.failures()] == ["export"]
    log = (control.run_dir / "logs" / "export.log").read_text()
    assert "'flush_interval' must be a number > 0" in log
    assert not list(control.run_dir.glob("*.mimo"))


# ----- importers in runs -----


def replay_setup(workers: Path, function: str, config: dict, dtype=None, length=LENGTH) -> dict:
    return {
        "Buffers": {"replayed": buffer_setup(length, dtype)},
        "Workers": {
            "replay": {"function": function, "config": config, "sinks": ["replayed"]},
            "collect": {"file": str(workers), "function": "collect", "sources": ["replayed"]},
        },
    }


def test_simulate_importer_keeps_the_original_spacing(tmp_path, workers):
    original = make_file(tmp_path / "data" / "in.mimo", 40, spacing=0.01)
    setup = replay_setup(workers, "data.simulate_importer", {"filename": "data/in.mimo"})
    control = run(setup, tmp_path)  # the file name is relative to the setup directory
    assert control.exit_code == 0
    data, meta = collected(control.run_dir, "collect")
    assert np.array_equal(data, original)
    assert np.array_equal(meta["counter"], np.arange(40))
    span = meta["timestamp"][-1] - meta["timestamp"][0]
    assert span >= 0.39 - 0.02  # never earlier than the original schedule


@pytest.mark.parametrize("distribution", ["uniform", "poisson"])
def test_clocked_importer_replays_every_event(tmp_path, workers, distribution):
    original = make_file(tmp_path / "in.mimo", 40, spacing=5.0)  # original spacing is ignored
    config = {"filename": str(tmp_path / "in.mimo"), "rate": 400, "distribution": distribution}
    control = run(replay_setup(workers, "data.clocked_importer", config), tmp_path)
    assert control.exit_code == 0
    data, meta = collected(control.run_dir, "collect")
    assert np.array_equal(data, original)
    span = meta["timestamp"][-1] - meta["timestamp"][0]
    assert span < 20  # not the file's 195 s
    if distribution == "uniform":
        assert span >= 39 / 400 - 0.01


def test_importer_with_a_file_that_does_not_fit_the_sink_fails_clearly(tmp_path, workers):
    make_file(tmp_path / "in.mimo", 5, spacing=0.001)
    setup = replay_setup(
        workers, "data.simulate_importer", {"filename": "in.mimo"}, dtype={"a": "float64"}
    )
    control = run(setup, tmp_path)
    assert control.exit_code == 1
    assert [p["worker"] for p in control.failures()] == ["replay"]
    log = (control.run_dir / "logs" / "replay.log").read_text()
    assert "SetupError" in log and "do not fit sink 'replayed'" in log
    data, _ = collected(control.run_dir, "collect")  # the pipeline still ended
    assert len(data) == 0


# ----- importers in one process -----


@pytest.fixture
def sink(unique_name):
    return mimoBuffer(unique_name("replay"), 64, LENGTH, DTYPE)


def importer_io(buf: mimoBuffer, tmp_path: Path, config: dict) -> BufferIO:
    return BufferIO("replay", [], [buf], [], config, tmp_path, tmp_path)


def drain(buf: mimoBuffer) -> tuple[np.ndarray, np.ndarray]:
    reader = BufferReader(buf, timeout=WAIT_S)
    data, meta = [], []
    while True:
        with reader as (m, d):
            if d is None:
                break
            data.append(d.copy())
            meta.append(m.copy())
    return np.array(data), np.concatenate(meta)


def test_simulate_importer_in_process(tmp_path, sink):
    original = make_file(tmp_path / "in.mimo", 20, spacing=0.005)
    io = importer_io(sink, tmp_path, {"filename": "in.mimo"})
    data_functions.simulate_importer(io)
    data, meta = drain(sink)
    assert np.array_equal(data, original)
    assert meta["timestamp"][-1] - meta["timestamp"][0] >= 19 * 0.005 - 0.01


def test_importer_stops_waiting_when_its_sink_is_shut_down(tmp_path, sink):
    make_file(tmp_path / "slow.mimo", 3, spacing=100.0)  # the 2nd event is due after 100 s
    io = importer_io(sink, tmp_path, {"filename": "slow.mimo"})
    worker = threading.Thread(target=data_functions.simulate_importer, args=(io,), daemon=True)
    worker.start()
    time.sleep(0.3)
    sink.send_flush_event()
    worker.join(timeout=5)
    assert not worker.is_alive()
    data, _ = drain(sink)
    assert len(data) == 1


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({}, "'rate' is missing"),
        ({"rate": 0}, "'rate' must be a number > 0"),
        ({"rate": -5}, "'rate' must be a number > 0"),
        ({"rate": "fast"}, "'rate' must be a number > 0"),
        ({"rate": True}, "'rate' must be a number > 0"),
        ({"rate": math.inf}, "'rate' must be a number > 0"),
        ({"rate": 10, "distribution": "gauss"}, "'distribution' must be one of uniform, poisson"),
        ({"rate": 10, "distribution": 3}, "'distribution' must be one of"),
        ({"rate": 10, "seed": "x"}, "'seed' must be an integer"),
        ({"rate": 10, "filename": None}, "'filename' is missing"),
        ({"rate": 10, "filename": "nothing.mimo"}, "no file"),
    ],
)
def test_clocked_importer_config_errors(tmp_path, sink, config, words):
    make_file(tmp_path / "in.mimo", 3, spacing=0.001)
    config = {"filename": "in.mimo", **config}
    if config["filename"] is None:
        del config["filename"]
    with pytest.raises(SetupError) as e:
        data_functions.clocked_importer(importer_io(sink, tmp_path, config))
    assert words in str(e.value) and "worker 'replay'" in str(e.value)


def test_importer_file_errors(tmp_path, sink):
    make_file(tmp_path / "long.mimo", 3, 0.001, length=LENGTH + 1)
    make_file(tmp_path / "other.mimo", 3, 0.001, dtype=np.dtype([("a", "<f8"), ("b", "<i2")]))
    (tmp_path / "junk.mimo").write_bytes(b"this is not a mimo file at all")
    with open(tmp_path / "ref.mimo", "wb") as f:
        pickle.dump({"data_dtype": NP_DTYPE, "data_length": LENGTH}, f)
    cases = {
        "long.mimo": "do not fit sink",
        "other.mimo": "do not fit sink",
        "junk.mimo": "not a mimocorb2 .mimo file",
        "ref.mimo": "trust=True",
    }
    for name, words in cases.items():
        with pytest.raises(SetupError) as e:
            data_functions.simulate_importer(importer_io(sink, tmp_path, {"filename": name}))
        assert words in str(e.value) and name in str(e.value), name


def test_filename_resolution(tmp_path, monkeypatch):
    def io(value):
        return SimpleNamespace(name="w", setup_dir=tmp_path / "setup", get=lambda k: value)

    (tmp_path / "setup").mkdir()
    make_file(tmp_path / "setup" / "rel.mimo", 1, 0.0)
    resolve = data_functions._resolve_filename
    assert resolve("w", io("rel.mimo")) == tmp_path / "setup" / "rel.mimo"
    monkeypatch.setenv("HOME", str(tmp_path))
    make_file(tmp_path / "home.mimo", 1, 0.0)
    assert resolve("w", io("~/home.mimo")) == tmp_path / "home.mimo"
    assert resolve("w", io(str(tmp_path / "home.mimo"))) == tmp_path / "home.mimo"
    old = tmp_path / "setup" / "target" / "run_1" / "w.mimo"
    new = tmp_path / "setup" / "target" / "run_2" / "w.mimo"
    make_file(new, 1, 0.0)
    make_file(old, 1, 0.0)
    os.utime(new, (1_000_000, 1_000_000))  # old is newer, although its name sorts first
    assert resolve("w", io("target/run_*/w.mimo")) == old
    with pytest.raises(SetupError, match="no file"):
        resolve("w", io("target/none_*/w.mimo"))
    with pytest.raises(SetupError, match="must be a path"):
        resolve("w", io(42))


# ----- waiting times -----


def test_poisson_waiting_times_are_exponential():
    rate = 250.0
    rng = np.random.default_rng(12345)
    waits = data_functions._waiting_times(rate, "poisson", 200_000, rng)
    mean = waits.mean()
    assert mean == pytest.approx(1 / rate, rel=0.01)
    assert waits.std() / mean == pytest.approx(1.0, abs=0.02)  # coefficient of variation 1
    assert np.mean(waits > mean) == pytest.approx(math.exp(-1), abs=0.005)  # memoryless tail
    assert np.mean(waits > 3 * mean) == pytest.approx(math.exp(-3), abs=0.003)
    assert np.all(waits > 0) and len(np.unique(waits)) == len(waits)  # not integer counts (B14)


def test_uniform_waiting_times_are_fixed():
    waits = data_functions._waiting_times(40.0, "uniform", 10, np.random.default_rng())
    assert np.array_equal(waits, np.full(10, 0.025))


# ----- the mimo_files example -----


def test_mimo_files_example_end_to_end(tmp_path):
    example = tmp_path / "mimo_files"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("target", "__pycache__"))
    write = Control.from_setup_file(example / "write_setup.yaml", mode="stats")
    write()
    assert write.exit_code == 0
    path = write.run_dir / "waveforms.mimo"
    assert write.run_dir.parent == example / "target"
    with MimoReader(path) as r:
        assert r.clean and len(r) == 500 and r.header["source"] == "waveforms"
        assert r.data_length == 256 and r.data_dtype.names == ("ch1", "ch2")
        data, meta = r.read_all()
    assert np.array_equal(meta["counter"], np.arange(500))
    assert 0.1 < float(data["ch1"].max(axis=1).mean()) < 1.1
    read_run = Control.from_setup_file(example / "read_setup.yaml", mode="stats")
    read_run()
    assert read_run.exit_code == 0
    for worker in ("check_replay", "check_clocked"):
        log = (read_run.run_dir / "logs" / f"{worker}.log").read_text()
        assert f"{worker}: 500 of 500 events replayed from waveforms.mimo, 500 identical" in log
    assert not list(read_run.run_dir.glob("*.mimo"))
