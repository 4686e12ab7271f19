"""Throughput of the batch interface: 1 writer process -> 1 buffer -> 1 reader process.

Tiny events (4 x float32, 16 bytes) are written with ``BufferWriter.write_batch`` and read with
``BufferReader.read_batch``. Prints events/s per repetition and the median.

Run against an installed (release) mimocorb2: ``python benches/python/batch_bench.py``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time

import numpy as np

from mimocorb2.mimo_buffer import BufferReader, BufferWriter, mimoBuffer

DTYPE = np.dtype([("ch1", "<f4"), ("ch2", "<f4"), ("ch3", "<f4"), ("ch4", "<f4")])


def writer(buf: mimoBuffer, n: int, batch: int, start: mp.Event) -> None:
    w = BufferWriter(buf)
    data = np.zeros(batch, dtype=DTYPE)
    data["ch1"] = np.arange(batch)
    start.wait()
    done = 0
    while done < n:
        k = min(batch, n - done)
        w.write_batch(data[:k])
        done += k
    w.send_flush_event()


def reader(buf: mimoBuffer, batch: int, start: mp.Event, out: mp.Queue) -> None:
    r = BufferReader(buf)
    start.wait()
    t0 = time.perf_counter()
    count = 0
    last = -1
    ordered = True
    while True:
        meta, _data = r.read_batch(batch)
        if meta is None:
            break
        c = meta["counter"]
        ordered &= bool(c[0] > last) and bool(np.all(np.diff(c) == 1))
        last = int(c[-1])
        count += len(c)
    out.put((count, time.perf_counter() - t0, ordered))


def run(n: int, batch: int, slots: int) -> tuple[float, bool]:
    ctx = mp.get_context("fork")
    buf = mimoBuffer(f"batch_bench_{time.time_ns()}", slots, 1, DTYPE)
    start = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=reader, args=(buf, batch, start, out)),
        ctx.Process(target=writer, args=(buf, n, batch, start)),
    ]
    for p in procs:
        p.start()
    time.sleep(0.2)
    start.set()
    count, elapsed, ordered = out.get(timeout=120)
    for p in procs:
        p.join(timeout=10)
    return count / elapsed, ordered and count == n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--slots", type=int, default=8192)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    rates = []
    for _ in range(a.repeat):
        rate, ok = run(a.events, a.batch, a.slots)
        rates.append(rate)
        print(f"{rate / 1e6:8.2f} M events/s  {'ok' if ok else 'DATA-ERROR'}", flush=True)
    print(f"median {statistics.median(rates) / 1e6:.2f} M events/s (batch {a.batch})")


if __name__ == "__main__":
    main()
