"""Reader groups (``delivery="every_worker"``) against competing readers and copy workers.

(a) One writer, one buffer. Compete: a single reader on a ``compete`` buffer. Groups: two
    reader groups of one reader each on an ``every_worker`` buffer; each group's rate is shown.
(b) Three consumers of one stream, each seeing every event. Groups: three reader groups on one
    ``every_worker`` buffer (1 writer + 3 readers). Copy chain (how it is done without groups):
    writer -> buffer A -> a copy process that copies every event into buffers B, C and D (as
    ``misc.copy`` does: per event, slot to slot bytewise, with the forwarding mark) -> one
    reader on each of B, C, D.

Each case runs for tiny events (1 x int64) and 64 KB events (8192 x int64). ``event`` mode
writes and reads one event per ``with`` block (as the worker templates do; a reader only
checks the event counter of the metadata, the data stay in the slot); ``batch`` mode uses
``write_batch`` / ``read_batch`` (the copy process then copies batches). Every process attaches
first, then all wait at a barrier; a consumer's rate is its events over the time from the
writer's start to its own end of stream. Printed: medians over the repetitions.

Run against an installed mimocorb2: ``python benches/python/groups_bench.py`` (``--quick`` for
a short run).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass

import numpy as np

from mimocorb2.mimo_buffer import BufferReader, BufferWriter, mimoBuffer

DTYPE = {"v": "<i8"}
BATCH = 1024
TIMEOUT = 60.0


@dataclass(frozen=True)
class Size:
    """One event size: its name, int64 elements per event, slots per buffer, events per run."""

    name: str
    length: int
    slots: int
    events: dict[str, int]


def _source(length: int, n: int) -> np.ndarray:
    data = np.zeros((n, length), dtype=np.dtype([("v", "<i8")]))
    data["v"][:, 0] = np.arange(n)
    return data


def writer(buf: mimoBuffer, n: int, mode: str, barrier: mp.Barrier, out: mp.Queue) -> None:
    """Writes ``n`` events, then ends the buffer."""
    w = BufferWriter(buf, timeout=TIMEOUT, stamp=True)
    chunk = min(BATCH, buf.slot_count) if mode == "batch" else 1
    src = _source(buf.data_length, chunk)
    barrier.wait()
    t0 = time.perf_counter()
    out.put(("start", t0))
    if mode == "batch":
        done = 0
        while done < n:
            k = min(chunk, n - done)
            w.write_batch(src[:k])
            done += k
    else:
        one = src[0]
        for _ in range(n):
            with w as (_m, d):
                d[...] = one
    w.send_flush_event()


def reader(
    buf: mimoBuffer, group: str | None, mode: str, barrier: mp.Barrier, out: mp.Queue
) -> None:
    """Reads to the end of the stream; reports (events, end time, counters in order)."""
    r = BufferReader(buf, timeout=TIMEOUT, group=group)
    barrier.wait()
    count = 0
    ordered = True
    if mode == "batch":
        while True:
            meta, _data = r.read_batch(BATCH)
            if meta is None:
                break
            c = meta["counter"]
            ordered &= int(c[0]) == count and int(c[-1]) == count + len(c) - 1
            count += len(c)
    else:
        while True:
            with r as (m, d):
                if d is None:
                    break
                ordered &= int(m["counter"][0]) == count
                count += 1
    out.put(("end", time.perf_counter(), count, ordered))


def copier(
    src: mimoBuffer, sinks: list[mimoBuffer], mode: str, barrier: mp.Barrier, out: mp.Queue
) -> None:
    """Copies every event of ``src`` into every sink, then ends the sinks (a copy worker)."""
    r = BufferReader(src, timeout=TIMEOUT)
    ws = [BufferWriter(s, timeout=TIMEOUT) for s in sinks]
    barrier.wait()
    if mode == "batch":
        while True:
            meta, data = r.read_batch(BATCH)
            if meta is None:
                break
            for w in ws:
                w.write_batch(data, meta)
    else:
        while True:
            with r as (m, d):
                if d is None:
                    break
                mb, db = m.view(np.uint8), d.view(np.uint8)
                marked = False
                for w in ws:
                    with w as (wm, wd):
                        wm.view(np.uint8)[:] = mb
                        wd.view(np.uint8)[:] = db
                        if not marked:
                            r.mark_forward(w)
                            marked = True
    for w in ws:
        w.send_flush_event()
    out.put(("copier", time.perf_counter()))


def run(case: str, size: Size, mode: str) -> tuple[list[float], int, bool]:
    """One run of ``case``; returns the consumers' rates, the process count and whether every
    consumer got every event in order."""
    ctx = mp.get_context("fork")
    n = size.events[mode]
    tag = f"{os.getpid()}_{time.monotonic_ns()}"

    def buffer(name: str, delivery: str) -> mimoBuffer:
        return mimoBuffer(f"gb_{name}_{tag}", size.slots, size.length, DTYPE, delivery=delivery)

    out = ctx.Queue()
    targets: list[tuple] = []
    consumers = 1
    if case == "compete-1":
        b = buffer("c", "compete")
        targets = [(writer, (b, n, mode)), (reader, (b, None, mode))]
    elif case.startswith("groups-"):
        k = int(case.split("-")[1])
        b = buffer("g", "every_worker")
        targets = [(writer, (b, n, mode))] + [(reader, (b, f"g{i}", mode)) for i in range(k)]
        consumers = k
    elif case == "copy-chain-3":
        a = buffer("a", "compete")
        sinks = [buffer(x, "compete") for x in "bcd"]
        targets = [(writer, (a, n, mode)), (copier, (a, sinks, mode))]
        targets += [(reader, (s, None, mode)) for s in sinks]
        consumers = len(sinks)
    else:
        raise ValueError(case)
    barrier = ctx.Barrier(len(targets))
    procs = [ctx.Process(target=f, args=(*args, barrier, out)) for f, args in targets]
    for p in procs:
        p.start()
    t_start = None
    ends = []
    ok = True
    deadline = time.monotonic() + 300
    copiers = len(targets) - 1 - consumers
    while t_start is None or len(ends) < consumers or copiers > 0:
        msg = out.get(timeout=max(1.0, deadline - time.monotonic()))
        if msg[0] == "start":
            t_start = msg[1]
        elif msg[0] == "copier":
            copiers -= 1
        else:
            ends.append(msg[1])
            ok &= msg[2] == n and msg[3]
    for p in procs:
        p.join(timeout=30)
        ok &= p.exitcode == 0
    return [n / (t - t_start) for t in ends], len(procs), ok


def median_rates(
    case: str, size: Size, mode: str, repeat: int
) -> tuple[list[float], float, int, bool]:
    """Median per consumer (sorted by rate) and median of the slowest consumer."""
    runs = []
    nproc = 0
    ok = True
    for _ in range(repeat):
        rates, nproc, good = run(case, size, mode)
        runs.append(sorted(rates))
        ok &= good
    per = [statistics.median(r[i] for r in runs) for i in range(len(runs[0]))]
    return per, statistics.median(r[0] for r in runs), nproc, ok


def fmt(rate: float) -> str:
    return f"{rate / 1e6:.3f} M" if rate >= 1e6 else f"{rate / 1e3:.1f} k"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer events (a smoke run)")
    a = ap.parse_args()
    scale = 10 if a.quick else 1
    sizes = [
        Size("1 x int64", 1, 1024, {"event": 200_000 // scale, "batch": 2_000_000 // scale}),
        Size("64 KB", 8192, 64, {"event": 20_000 // scale, "batch": 20_000 // scale}),
    ]
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"cpus {os.cpu_count()}, load average before: {load}; medians of {a.repeat} runs")
    header = f"{'event size':<10} {'mode':<6} {'case':<13} {'procs':>5}  events/s per consumer"
    for part, cases in (
        ("(a) one stream, 1 vs 2 consumers", ["compete-1", "groups-2"]),
        ("(b) three consumers of one stream", ["groups-3", "copy-chain-3"]),
    ):
        print(f"\n{part}\n{header}")
        for size in sizes:
            for mode in ("event", "batch"):
                for case in cases:
                    per, slowest, nproc, ok = median_rates(case, size, mode, a.repeat)
                    rates = ", ".join(fmt(r) for r in per)
                    flag = "" if ok else "  DATA-ERROR"
                    print(
                        f"{size.name:<10} {mode:<6} {case:<13} {nproc:>5}  {rates}"
                        f"  (slowest {fmt(slowest)}){flag}",
                        flush=True,
                    )
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"\nload average after: {load}")


if __name__ == "__main__":
    main()
