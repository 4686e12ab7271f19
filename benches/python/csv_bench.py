"""Throughput of the ``exporters.csv`` writer.

1. Writer core (no buffers): ``CsvWriter.write`` formats and appends batches of rows
   (counter, timestamp, deadtime + 4 data fields: int64, float64, float32, uint8) to a file.
   Rows/s per repetition and the median.
2. Pipeline (``--pipeline``): a real Control run, an importer (one event per yield) feeding
   ``exporters.csv``; rows/s from the first event's timestamp to the last write of the file.
   This is bounded by the importer template, not by the writer.

Run against an installed (release) mimocorb2: ``python benches/python/csv_bench.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mimocorb2.functions.exporters import CsvWriter
from mimocorb2.mimo_buffer import mimoBuffer

DTYPE = np.dtype([("n", "<i8"), ("x", "<f8"), ("y", "<f4"), ("u", "u1")])

FUNCS = '''
from mimocorb2 import Importer

def source(io):
    """mimoCoRB2 Function: bench source.

    Type
        Importer
    """
    imp = Importer(io)
    n = int(io["n"])
    ev = imp.data_example.copy()
    def gen():
        for i in range(n):
            ev["n"] = i
            ev["x"] = i * 0.1
            yield ev
        yield None
    imp(gen)
'''


def make_batch(rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    meta = np.zeros(rows, dtype=mimoBuffer.metadata_dtype)
    meta["counter"] = np.arange(rows)
    meta["timestamp"] = 1.7e9 + np.cumsum(rng.exponential(1e-5, rows))
    meta["deadtime"] = rng.random(rows)
    data = np.zeros(rows, dtype=DTYPE)
    data["n"] = rng.integers(-(2**62), 2**62, rows)
    data["x"] = rng.normal(size=rows)
    data["y"] = rng.random(rows).astype(np.float32)
    data["u"] = rng.integers(0, 256, rows)
    return meta, data


def bench_core(rows: int, batch: int, repeat: int) -> None:
    meta, data = make_batch(rows)
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeat):
            path = Path(tmp) / f"out_{r}.csv"
            t0 = time.perf_counter()
            writer = CsvWriter(path, meta.dtype, DTYPE)
            for i in range(0, rows, batch):
                writer.write(meta[i : i + batch], data[i : i + batch])
            writer.close()
            rates.append(rows / (time.perf_counter() - t0))
            size = path.stat().st_size
    print(
        f"csv writer core ({rows} rows, batches of {batch}, {size / rows:.0f} B/row): "
        f"median {statistics.median(rates):10.0f} rows/s  runs {[round(x) for x in rates]}",
        flush=True,
    )


def bench_pipeline(n: int, repeat: int) -> None:
    from mimocorb2.control import Control

    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        funcs = Path(tmp) / "bench_funcs.py"
        funcs.write_text(FUNCS)
        for _ in range(repeat):
            setup = {
                "Buffers": {
                    "b": {
                        "slot_count": 1024,
                        "data_length": 1,
                        "data_dtype": {"n": "i8", "x": "f8", "y": "f4", "u": "u1"},
                    }
                },
                "Workers": {
                    "src": {
                        "file": str(funcs),
                        "function": "source",
                        "config": {"n": n},
                        "sinks": ["b"],
                    },
                    "csv": {"function": "exporters.csv", "sources": ["b"]},
                },
                "target_directory": str(Path(tmp) / "runs"),
            }
            c = Control(setup, tmp, "stats")
            c()
            path = Path(c.run_dir) / "b.csv"
            with path.open() as f:
                f.readline()
                first = float(f.readline().split(",")[1])
            rows = sum(1 for _ in path.open()) - 1
            assert rows == n, rows
            rates.append(n / (path.stat().st_mtime - first))
    print(
        f"importer -> exporters.csv ({n} rows): median {statistics.median(rates):10.0f} rows/s"
        f"  runs {[round(x) for x in rates]}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pipeline", action="store_true", help="also run the Control pipeline")
    ap.add_argument("--pipeline-rows", type=int, default=300_000)
    args = ap.parse_args()
    bench_core(args.rows, args.batch, args.repeat)
    if args.pipeline:
        bench_pipeline(args.pipeline_rows, args.repeat)


if __name__ == "__main__":
    main()
