"""A small data-acquisition chain through one mimocorb2 buffer, on a simulated source.

A source process simulates a detector: pulses arrive at random (Poisson) times, each one a
waveform of 256 samples with an exponential decay and noise. Two analysis processes compete for
the events and measure each pulse's height; an observer process looks at the newest waveform
from time to time, without taking events away. At the end the demo checks that every event was
analysed exactly once.

Run: ``python examples/buffer_demo.py [number_of_events]``
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time

import numpy as np

from mimocorb2.mimo_buffer import BufferObserver, BufferReader, BufferWriter, mimoBuffer

SAMPLES = 256
RATE_HZ = 20_000.0


def source(buf: mimoBuffer, n_events: int) -> None:
    """Simulated digitizer: writes ``n_events`` pulses, then flushes."""
    rng = np.random.default_rng(1)
    t = np.arange(SAMPLES)
    writer = BufferWriter(buf, stamp=True)
    next_t = time.perf_counter()
    for _ in range(n_events):
        next_t += rng.exponential(1.0 / RATE_HZ)
        while time.perf_counter() < next_t:
            pass
        height = rng.uniform(0.1, 1.0)
        with writer as (_metadata, data):
            pulse = height * np.exp(-np.clip(t - 40, 0, None) / 30.0) * (t >= 40)
            data["ch1"] = pulse + rng.normal(0.0, 0.01, SAMPLES)
    writer.send_flush_event()


def analyser(buf: mimoBuffer, results: mp.Queue) -> None:
    """Reads events until the end of the stream and records (counter, pulse height)."""
    reader = BufferReader(buf)
    counters, heights = [], []
    while True:
        with reader as (metadata, data):
            if data is None:
                break
            counters.append(int(metadata["counter"][0]))
            heights.append(float(data["ch1"].max()))
    results.put((np.array(counters), np.array(heights)))


def observer(buf: mimoBuffer, results: mp.Queue) -> None:
    """Looks at the newest waveform every 10 ms, as a live display would."""
    obs = BufferObserver(buf)
    seen = 0
    while True:
        with obs as (_metadata, data):
            if data is None:
                break
            seen += 1
        time.sleep(0.01)
    results.put(seen)


def main(n_events: int = 50_000) -> int:
    """Runs the demo and prints a summary; returns a process exit code."""
    ctx = mp.get_context("spawn")
    buf = mimoBuffer(
        "demo_waveforms", slot_count=64, data_length=SAMPLES, data_dtype={"ch1": "float32"}
    )
    results: mp.Queue = ctx.Queue()
    observed: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=analyser, args=(buf, results), name=f"analyser_{i}") for i in range(2)
    ]
    procs.append(ctx.Process(target=observer, args=(buf, observed), name="observer"))
    procs.append(ctx.Process(target=source, args=(buf, n_events), name="source"))
    t0 = time.time()
    for p in procs:
        p.start()
    parts = [results.get(timeout=120) for _ in range(2)]
    n_observed = observed.get(timeout=30)
    for p in procs:
        p.join(timeout=10)
    elapsed = time.time() - t0
    counters = np.concatenate([c for c, _ in parts])
    heights = np.concatenate([h for _, h in parts])
    stats = buf.get_stats()
    exactly_once = np.array_equal(np.sort(counters), np.arange(n_events))
    print(f"events written        {stats['event_count']}")
    print(f"events analysed       {len(counters)} (split {[len(c) for c, _ in parts]})")
    print(f"exactly once          {exactly_once}")
    print(f"mean pulse height     {heights.mean():.3f} (expected ~0.55)")
    print(f"observer looked at    {n_observed} waveforms")
    print(f"dead time (average)   {100 * stats['average_deadtime']:.2f} %")
    print(f"wall time             {elapsed:.2f} s")
    ok = exactly_once and all(p.exitcode == 0 for p in procs)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000))
