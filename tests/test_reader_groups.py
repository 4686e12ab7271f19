"""Reader groups (issue 15): ``delivery: every_worker`` gives every reading worker every event."""

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest

from mimocorb2._setup import parse_setup
from mimocorb2.control import Control
from mimocorb2.exceptions import SetupValidationError
from mimocorb2.mimo_buffer import BufferReader, BufferWriter, mimoBuffer

WORKERS = Path(__file__).parent / "pipelines" / "workers.py"


def group_setup(tmp_path: Path, n_events: int = 3000, readers: int = 2, **buffer) -> dict:
    """source → raw (every_worker) → `readers` collecting workers (the first with 2 processes)."""
    workers = {
        "source": {
            "file": str(WORKERS),
            "function": "source",
            "config": {"n_events": n_events},
            "sinks": ["raw"],
        }
    }
    for i in range(readers):
        workers[f"collect{i}"] = {
            "file": str(WORKERS),
            "function": "collect",
            "sources": ["raw"],
            "number_of_processes": 2 if i == 0 else 1,
        }
    raw = {"slot_count": 16, "data_length": 1, "data_dtype": {"value": "int64"}}
    raw.update({"delivery": "every_worker", **buffer})
    return {
        "Buffers": {"raw": raw},
        "Workers": workers,
        "target_directory": str(tmp_path / "runs"),
    }


@pytest.mark.timeout(60)
def test_every_reading_worker_gets_every_event_once(tmp_path: Path) -> None:
    control = Control(group_setup(tmp_path), tmp_path, mode="stats")
    control()
    assert control.exit_code == 0
    run = control.run_dir
    # The processes of collect0 share (compete for) the events; collect1 gets all of them.
    per_pid = {p.name: np.load(p) for p in run.glob("collected_*.npy")}
    assert len(per_pid) == 3
    everything = sorted(np.concatenate(list(per_pid.values())).tolist())
    assert everything == sorted(list(range(3000)) * 2), "each event exactly once per worker"
    summary = json.loads((run / "run_summary.json").read_text())
    raw = summary["buffers"]["raw"]
    assert raw["committed"] == 3000
    assert raw["consumed"] == 6000
    assert set(raw["groups"]) == {"collect0", "collect1"}
    assert all(g["consumed"] == 3000 and g["lost"] == 0 for g in raw["groups"].values())
    assert summary["workers"]["collect0"]["read"] == 3000
    assert summary["workers"]["collect1"]["read"] == 3000
    assert summary["events_lost"] == 0


def test_delivery_is_validated(tmp_path: Path) -> None:
    with pytest.raises(SetupValidationError, match="delivery"):
        parse_setup(group_setup(tmp_path, delivery="everyone"), tmp_path, "test")


def test_at_most_16_reading_workers(tmp_path: Path) -> None:
    with pytest.raises(SetupValidationError, match="at most 16"):
        parse_setup(group_setup(tmp_path, readers=17), tmp_path, "test")


def _group_reader(buf: mimoBuffer, group: str, q: "mp.Queue[list[int]]") -> None:
    reader = BufferReader(buf, timeout=10, group=group)
    got = []
    while True:
        with reader as (_, data):
            if data is None:
                break
            got.append(int(data["x"][0]))
    q.put(got)


@pytest.mark.timeout(60)
def test_python_api_groups_across_processes() -> None:
    buf = mimoBuffer(f"groups-{os.getpid()}", 4, 1, {"x": "i8"}, delivery="every_worker")
    assert buf.delivery == "every_worker"
    # Create the groups before writing: a group receives the events committed after it exists.
    for g in ("hist", "csv"):
        buf._core.group_index(g)
    q: mp.Queue[list[int]] = mp.Queue()
    procs = [mp.Process(target=_group_reader, args=(buf, g, q)) for g in ("hist", "csv", "csv")]
    for p in procs:
        p.start()
    w = BufferWriter(buf)
    for i in range(500):
        with w as (_, data):
            data["x"] = i
    w.send_flush_event()
    results = [q.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    merged = sorted(v for r in results for v in r)
    assert merged == sorted(list(range(500)) * 2)
    assert list(range(500)) in results, "the one-reader group got every event in order"
    groups = buf.get_stats()["groups"]
    assert groups["hist"] == {"backlog": 0, "consumed": 500, "lost": 0, "overwritten": 0}
    assert groups["csv"]["consumed"] == 500


def test_competing_buffer_ignores_group_names() -> None:
    buf = mimoBuffer(f"compete-{os.getpid()}", 4, 1, {"x": "i8"})
    a = BufferReader(buf, timeout=1, group="a")
    b = BufferReader(buf, timeout=1, group="b")
    w = BufferWriter(buf)
    with w as (_, data):
        data["x"] = 1
    with w as (_, data):
        data["x"] = 2
    w.send_flush_event()
    assert "groups" not in buf.get_stats()
    with a as (_, d1), b as (_, d2):
        assert {int(d1["x"][0]), int(d2["x"][0])} == {1, 2}
    with a as (_, d):
        assert d is None
