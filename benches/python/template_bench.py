"""Importer -> Exporter throughput through the worker templates, run by a real Control.

The importer yields one preallocated event per iteration; the exporter iterates the
``(data, metadata)`` pairs and counts them. Reports events/s (from the buffer's first commit to
the end of the run) for tiny (16 B) and 64 KB events, median of repeated runs, and the control
start-up time (setup parse to all workers running) for a 6-buffer, 13-process setup.

Run against an installed (release) mimocorb2: ``python benches/python/template_bench.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

FUNCS = '''
import time
from pathlib import Path
from mimocorb2 import Importer, Exporter

def source(io):
    """mimoCoRB2 Function: bench source.

    Type
        Importer
    """
    imp = Importer(io)
    n = int(io["n"])
    ev = imp.data_example.copy()
    def gen():
        for _ in range(n):
            yield ev
        yield None
    imp(gen)

def sink(io):
    """mimoCoRB2 Function: bench sink.

    Type
        Exporter
    """
    n = 0
    t0 = None
    for data, meta in Exporter(io):
        if t0 is None:
            t0 = time.perf_counter()
        n += 1
    t1 = time.perf_counter()
    Path(io.run_dir, "rate.txt").write_text(f"{n} {t1 - t0}")

def idle(io):
    """mimoCoRB2 Function: waits for the end.

    Type
        Exporter
    """
    for _ in Exporter(io):
        pass
'''

SHAPES = {
    "tiny": ({"a": "f4", "b": "f4", "c": "f4", "d": "f4"}, 1, 500_000),
    "64KB": ({"IN1": "i2", "IN2": "i2"}, 16384, 50_000),
}


def pipeline_setup(funcs: Path, target: Path, dtype: dict, length: int, n: int) -> dict:
    return {
        "Buffers": {"b": {"slot_count": 128, "data_length": length, "data_dtype": dtype}},
        "Workers": {
            "src": {"file": str(funcs), "function": "source", "config": {"n": n}, "sinks": ["b"]},
            "dst": {"file": str(funcs), "function": "sink", "sources": ["b"]},
        },
        "target_directory": str(target),
    }


def startup_setup(funcs: Path, target: Path) -> dict:
    dt = {"x": "f4"}
    bufs = {f"b{i}": {"slot_count": 16, "data_length": 10, "data_dtype": dt} for i in range(6)}
    workers = {
        "src": {"file": str(funcs), "function": "source", "config": {"n": 10**9}, "sinks": ["b0"]}
    }
    # a chain b0 -> b1 -> ... -> b5 of idle exporters with pass-through sinks, 13 processes
    for i in range(5):
        workers[f"w{i}"] = {
            "file": str(funcs),
            "function": "idle",
            "number_of_processes": 2 if i < 2 else 3 if i == 2 else 2,
            "sources": [f"b{i}"],
            "sinks": [f"b{i + 1}"],
        }
    workers["end"] = {"file": str(funcs), "function": "idle", "sources": ["b5"]}
    return {"Buffers": bufs, "Workers": workers, "target_directory": str(target)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from mimocorb2.control import Control

    with tempfile.TemporaryDirectory() as tmp:
        funcs = Path(tmp) / "bench_funcs.py"
        funcs.write_text(FUNCS)
        for shape, (dtype, length, n) in SHAPES.items():
            rates = []
            for _ in range(args.repeat):
                c = Control(pipeline_setup(funcs, Path(tmp), dtype, length, n), tmp, "stats")
                c()
                count, dt = (Path(c.run_dir) / "rate.txt").read_text().split()
                rates.append(int(count) / float(dt))
            print(
                f"importer->exporter {shape:5s}: median {statistics.median(rates):10.0f} ev/s"
                f"  runs {[round(r) for r in rates]}",
                flush=True,
            )
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            c = Control(startup_setup(funcs, Path(tmp)), tmp, "stats")
            c.start_workers()
            while True:
                procs = c.supervisor.poll()
                # a process counts as running once its buffers are attached and it waits:
                # we take "all processes alive and their log shows no start-up error"
                if all(p["alive"] for p in procs) and _all_ready(c):
                    break
                time.sleep(0.005)
            times.append(time.perf_counter() - t0)
            for b in c.buffers.values():
                b.send_flush_event()
            c.supervisor.terminate(None, 5.0)
        n_proc = sum(w.number_of_processes for w in c.setup.workers.values())
        print(
            f"start-up (6 buffers, {n_proc} processes): median {statistics.median(times):.2f} s"
            f"  runs {[round(t, 2) for t in times]}"
        )


def _all_ready(control) -> bool:
    """Every writing process has registered (its buffers are attached and its function runs)
    and events have reached the last buffer."""
    with_sinks = sum(w.number_of_processes for w in control.setup.workers.values() if w.sinks)
    registered = sum(b.get_stats()["active_writers"] for b in control.buffers.values())
    last = control.buffers["b5"].get_stats()["event_count"]
    return registered >= with_sinks and last > 0


if __name__ == "__main__":
    main()
