"""More processes than cores: the simple example's pipeline shape at full speed.

source → 2 filter processes → 3 processor processes → 1 sink (7 processes), with a source that
produces as fast as it can, run through the Control (headless). Prints the pipeline's events/s
next to the rate of the same work done in a single process (generate, filter, process, sum), so
the ratio shows what the hand-offs between processes cost when they outnumber the cores.

Usage::

    python benches/python/oversubscribed_bench.py [--events 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mimocorb2.control import Control

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "simple"


def pipeline_rate(n: int) -> float:
    """Events/s of the simple example with ``n`` events, run as fast as it goes."""
    with tempfile.TemporaryDirectory() as tmp:
        setup = {
            "Buffers": {
                "InputBuffer": {
                    "slot_count": 128,
                    "data_length": 500,
                    "data_dtype": {"ch1": "float32"},
                },
                "AcceptedPulses": {
                    "slot_count": 64,
                    "data_length": 500,
                    "data_dtype": {"ch1": "float32"},
                },
                "PulseHeights": {
                    "slot_count": 64,
                    "data_length": 1,
                    "data_dtype": {"height": "float32"},
                },
            },
            "Workers": {
                "input": {
                    "file": "functions.py",
                    "function": "simulate_pulses",
                    "config": {"number_of_events": n, "rate": 0},
                    "sinks": ["InputBuffer"],
                },
                "accept": {
                    "file": "functions.py",
                    "function": "filter_pulses",
                    "config": {"min_height": 0.2},
                    "number_of_processes": 2,
                    "sources": ["InputBuffer"],
                    "sinks": ["AcceptedPulses"],
                },
                "heights": {
                    "file": "functions.py",
                    "function": "pulse_heights",
                    "number_of_processes": 3,
                    "sources": ["AcceptedPulses"],
                    "sinks": ["PulseHeights"],
                },
                "summary": {
                    "file": "functions.py",
                    "function": "summarize",
                    "sources": ["PulseHeights"],
                },
            },
            "target_directory": tmp,
        }
        control = Control(setup, EXAMPLE, mode="stats")
        t0 = time.perf_counter()
        control()
        took = time.perf_counter() - t0
        summary = json.loads((control.run_dir / "run_summary.json").read_text())
        assert summary["buffers"]["InputBuffer"]["committed"] == n, summary
        return n / took


def single_process_rate(n: int) -> float:
    """Events/s of the same work (simulate, filter, pulse height, sum) in one process."""
    rng = np.random.default_rng()
    t = np.arange(500)
    shape = (np.exp(-np.clip(t - 50, 0, None) / 40.0) * (t >= 50)).astype(np.float32)
    noise = rng.normal(0, 0.01, (1024, t.size)).astype(np.float32)
    samples = np.zeros(500, dtype=np.float32)
    heights = rng.uniform(0.0, 1.0, n).astype(np.float32)
    picks = rng.integers(0, len(noise), n)
    total, accepted = 0.0, 0
    t0 = time.perf_counter()
    for i in range(n):
        np.multiply(shape, heights[i], out=samples)
        np.add(samples, noise[picks[i]], out=samples)
        if samples.max() > 0.2:
            total += float(samples.max())
            accepted += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    """Measures both rates ``--repeat`` times and prints medians and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    pipe = [pipeline_rate(args.events) for _ in range(args.repeat)]
    single = [single_process_rate(args.events) for _ in range(args.repeat)]
    p, s = statistics.median(pipe), statistics.median(single)
    print(
        json.dumps(
            {
                "cores": os.cpu_count(),
                "processes": 7,
                "events": args.events,
                "pipeline_events_per_s": round(p),
                "single_process_events_per_s": round(s),
                "pipeline_over_single": round(p / s, 3),
                "runs": [round(x) for x in pipe],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
