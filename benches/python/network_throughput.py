"""Throughput of network.sender -> network.receiver over loopback, against bare pyzmq PUSH/PULL.

Usage: python benches/python/network_throughput.py [--repeat 5]

Each case runs in fresh processes: a feeder fills the sender's source buffer as fast as it can,
the sender and receiver run as workers (hand-made BufferIO, no Control), and a drain empties the
receiver's sink and times the stream (first to last event). The bare pyzmq case sends messages
of the same size from one process to another. Prints medians over ``--repeat`` runs.
"""

import argparse
import multiprocessing as mp
import socket
import statistics
import tempfile
import time

import numpy as np

from mimocorb2.functions import network
from mimocorb2.mimo_buffer import BufferReader, BufferWriter, mimoBuffer
from mimocorb2.mimo_worker import BufferIO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_push(address: str, size: int, n: int) -> None:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.bind(address)
    msg = np.ones(size, np.uint8)
    for _ in range(n + 1):
        s.send(msg, copy=size < 65536)
    s.close(linger=-1)
    ctx.term()


def bare_pull(address: str, n: int, out: mp.Queue) -> None:
    import zmq

    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.connect(address)
    s.recv()  # the first message starts the clock
    t0 = time.perf_counter()
    for _ in range(n):
        s.recv(copy=False)
    out.put(time.perf_counter() - t0)
    s.close()
    ctx.term()


def bare(size: int, n: int) -> float:
    """Bytes/s of bare PUSH/PULL of ``size``-byte messages."""
    address = f"tcp://127.0.0.1:{free_port()}"
    q: mp.Queue = mp.Queue()
    procs = [
        mp.Process(target=bare_pull, args=(address, n, q)),
        mp.Process(target=bare_push, args=(address, size, n)),
    ]
    for p in procs:
        p.start()
    dt = q.get(timeout=120)
    for p in procs:
        p.join(30)
    return size * n / dt


def feed(buf: mimoBuffer, n: int) -> None:
    w = BufferWriter(buf)
    chunk = max(1, min(4096, (1 << 22) // buf.slot_byte_size))
    data = np.zeros((chunk, buf.data_length), buf.data_dtype)
    done = 0
    while done < n:
        k = min(chunk, n - done)
        w.write_batch(data[:k])
        done += k
    w.send_flush_event()


def worker(function, name: str, sources, sinks, config: dict, run_dir: str) -> None:
    io = BufferIO(name, sources, sinks, [], config, run_dir, run_dir)
    function(io)


def drain(buf: mimoBuffer, out: mp.Queue) -> None:
    r = BufferReader(buf)
    chunk = max(1, min(4096, (1 << 22) // buf.slot_byte_size))
    n = 0
    t0 = None
    while True:
        _, data = r.read_batch(chunk)
        if data is None:
            break
        if t0 is None:
            t0 = time.perf_counter()
            n0 = len(data)
        n += len(data)
    out.put((n - n0, time.perf_counter() - t0))


def bridged(data_length: int, dtype: dict, n: int, pattern: str) -> tuple[float, int]:
    """Events/s through sender -> receiver, and the events that arrived."""
    src = mimoBuffer("src", 256, data_length, dtype)
    sink = mimoBuffer("sink", 256, data_length, dtype)
    config = {"address": f"tcp://127.0.0.1:{free_port()}", "pattern": pattern}
    q: mp.Queue = mp.Queue()
    with tempfile.TemporaryDirectory() as run_dir:
        procs = [
            mp.Process(target=drain, args=(sink, q)),
            mp.Process(
                target=worker, args=(network.receiver, "receive", [], [sink], config, run_dir)
            ),
            mp.Process(target=worker, args=(network.sender, "send", [src], [], config, run_dir)),
        ]
        for p in procs:
            p.start()
        time.sleep(0.5)  # the receiver is connected before the first event
        feeder = mp.Process(target=feed, args=(src, n))
        feeder.start()
        got, dt = q.get(timeout=300)
        for p in [*procs, feeder]:
            p.join(30)
    return got / dt, got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    mp.set_start_method("fork")
    big = 16384  # float32 samples: 64 KiB of data per event
    slot = big * 4 + 24
    n_big, n_tiny = 20000, 1_000_000
    rows = {}
    for _ in range(args.repeat):
        rows.setdefault("bare PUSH/PULL, 64 KiB messages (GB/s)", []).append(
            bare(slot, n_big) / 1e9
        )
        rate, _ = bridged(big, {"x": "float32"}, n_big, "push")
        rows.setdefault("sender->receiver push, 64 KiB events (GB/s)", []).append(rate * slot / 1e9)
        rate, _ = bridged(1, {"value": "int64"}, n_tiny, "push")
        rows.setdefault("sender->receiver push, 8-byte events (k events/s)", []).append(rate / 1e3)
        rate, got = bridged(1, {"value": "int64"}, n_tiny, "publish")
        rows.setdefault("sender->receiver publish, 8-byte events (k events/s)", []).append(
            rate / 1e3
        )
        rows.setdefault("publish: fraction delivered", []).append(got / n_tiny)
    for name, values in rows.items():
        shown = ", ".join(f"{v:.3g}" for v in values)
        print(f"{name:55s} median {statistics.median(values):.3g}  ({shown})")


if __name__ == "__main__":
    main()
