"""mimocorb2.worker_templates: a chain of templates in spawn processes over shared buffers."""

from __future__ import annotations

import functools
import multiprocessing as mp
import sys
import time
from pathlib import Path

import pytest
from template_test_helpers import WAIT_S

from mimocorb2.mimo_worker import BufferIO, run_worker
from mimocorb2.worker_templates import (
    Exporter,
    Filter,
    Importer,
    Processor,
)

# ----- a chain of spawn processes -----

N_CHAIN = 3000


def chain_importer(io):
    importer = Importer(io)
    n = io["n_events"]

    def ufunc():
        for i in range(n):
            data = importer.data_example.copy()
            data["x"] = i
            data["y"] = i / 2
            yield data
        yield None

    importer(ufunc)


def chain_filter(io):
    Filter(io)(lambda data: data["x"][0] % io["modulo"] == 0)


def crashing_filter(io):
    def ufunc(data):
        if data["x"][0] == io["crash_at"]:
            raise RuntimeError("filter crashed")
        return True

    Filter(io)(ufunc)


def chain_processor(io):
    out = io.data_out_examples[0].copy()

    def ufunc(data):
        out["v"] = data["x"][0] * 10.0
        out["x"] = data["x"][0]
        return [out]

    Processor(io)(ufunc)


def chain_exporter(results, io):
    got = []
    for data, metadata in Exporter(io):
        got.append((int(metadata["counter"][0]), int(data["x"][0]), float(data["v"][0])))
    results.put(got)


def chain_main(function, name, setup, buffers, setup_dir, results=None):
    """Process target: builds the BufferIO in the child, runs the worker, exits with its code."""
    if results is not None:
        function = functools.partial(function, results)
    io = BufferIO.from_setup(name, setup, setup_dir, setup_dir, buffers)
    sys.exit(run_worker(function, io))


class Pipeline:
    """Worker processes (spawn) over shared buffers; a results queue for the exporter."""

    def __init__(self, buffers, tmp_path):
        self.ctx = mp.get_context("spawn")
        self.buffers = buffers
        self.setup_dir = Path(tmp_path)
        self.results = self.ctx.Queue()
        self.procs = []

    def start(self, name, function, **setup):
        results = self.results if function is chain_exporter else None
        p = self.ctx.Process(
            target=chain_main,
            args=(function, name, setup, self.buffers, self.setup_dir, results),
            name=name,
        )
        p.start()
        self.procs.append(p)
        return p

    def join(self, timeout):
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
        alive = [p.name for p in self.procs if p.is_alive()]
        assert not alive, f"processes still alive: {alive}"

    def close(self):
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(WAIT_S)
        self.results.close()
        self.results.join_thread()


@pytest.mark.timeout(120)
def test_chain_in_spawn_processes(make_buffer, tmp_path):
    buffers = {
        "raw": make_buffer(64, prefix="raw"),
        "kept": make_buffer(64, prefix="kept"),
        "result": make_buffer(64, 1, {"x": "<i8", "v": "<f8"}, prefix="result"),
    }
    buffers["kept"].set_expected_writers(2)  # two filter processes
    pipe = Pipeline(buffers, tmp_path)
    try:
        pipe.start("export", chain_exporter, sources=["result"])
        pipe.start("process", chain_processor, sources=["kept"], sinks=["result"])
        for i in range(2):
            pipe.start(
                f"filter_{i}", chain_filter, sources=["raw"], sinks=["kept"], config={"modulo": 3}
            )
        pipe.start("import", chain_importer, sinks=["raw"], config={"n_events": N_CHAIN})
        got = pipe.results.get(timeout=90)
        pipe.join(30)
    finally:
        pipe.close()
    assert [p.exitcode for p in pipe.procs] == [0] * 5
    expected = list(range(0, N_CHAIN, 3))
    assert len(got) == len(expected)
    assert sorted(x for _, x, _ in got) == expected
    for counter, x, v in got:
        assert counter == x  # the importer's stamped counter travels with the event
        assert v == x * 10.0
    for b in buffers.values():
        assert b.flush_event_received
        assert not b.get_stats()["forced_shutdown"]


@pytest.mark.timeout(120)
def test_crashed_worker_drains_pipeline(make_buffer, tmp_path):
    """B4: a crashing filter ends its sinks, so downstream workers finish."""
    buffers = {
        "raw": make_buffer(16, prefix="raw"),
        "kept": make_buffer(16, prefix="kept"),
        "result": make_buffer(16, 1, {"x": "<i8", "v": "<f8"}, prefix="result"),
    }
    pipe = Pipeline(buffers, tmp_path)
    try:
        pipe.start("export", chain_exporter, sources=["result"])
        pipe.start("process", chain_processor, sources=["kept"], sinks=["result"])
        crasher = pipe.start(
            "filter", crashing_filter, sources=["raw"], sinks=["kept"], config={"crash_at": 50}
        )
        importer = pipe.start("import", chain_importer, sinks=["raw"], config={"n_events": 10**9})
        got = pipe.results.get(timeout=90)  # downstream ended although the filter crashed
        crasher.join(30)
        assert crasher.exitcode == 1
        assert importer.is_alive()  # blocked on its full sink: nobody reads it any more
        buffers["raw"].send_flush_event()  # what the control does: shut the roots down
        pipe.join(30)
    finally:
        pipe.close()
    assert [x for _, x, _ in got] == list(range(50))
    assert [p.exitcode for p in pipe.procs] == [0, 0, 1, 0]  # the importer stopped quietly
