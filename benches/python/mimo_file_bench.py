"""Write and read speed of ``.mimo`` files (mimocorb2.mimo_file).

Writes ``--events`` events of ``--event-kib`` KiB (two float32 channels, 64 KiB by default)
event by event with ``MimoWriter.write`` (as ``data.export`` does) and in one batch with
``write_many``, then reads the file with ``read_all`` and by iteration. Prints GB/s of each
repetition and the median of ``--repeat`` (5) repetitions. The file lives in ``--dir``
(default: a temporary directory); the numbers include the page cache, not the disk, unless the
file is larger than the free memory.

Run: ``python benches/python/mimo_file_bench.py [--events 2000] [--event-kib 64]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2.mimo_file import MimoReader, MimoWriter

DTYPE = np.dtype([("ch1", "<f4"), ("ch2", "<f4")])


def make_events(n_events: int, event_kib: int) -> tuple[np.ndarray, np.ndarray]:
    length = event_kib * 1024 // DTYPE.itemsize
    rng = np.random.default_rng(1)
    data = np.zeros((n_events, length), dtype=DTYPE)
    data["ch1"] = rng.normal(size=(n_events, length)).astype(np.float32)
    data["ch2"] = np.arange(length, dtype=np.float32)
    metadata = np.zeros(n_events, dtype=METADATA_DTYPE)
    metadata["counter"] = np.arange(n_events)
    metadata["timestamp"] = time.time() + np.arange(n_events) * 1e-3
    return data, metadata


def write_events(path: Path, data: np.ndarray, metadata: np.ndarray) -> None:
    with MimoWriter(path, DTYPE, data.shape[1], source="bench") as w:
        for i in range(len(data)):
            w.write(data[i], metadata[i : i + 1])


def write_batch(path: Path, data: np.ndarray, metadata: np.ndarray) -> None:
    with MimoWriter(path, DTYPE, data.shape[1], source="bench") as w:
        w.write_many(data, metadata)


def read_all(path: Path, n: int) -> None:
    with MimoReader(path) as r:
        data, _metadata = r.read_all()
        assert len(data) == n


def read_iter(path: Path, n: int) -> None:
    with MimoReader(path) as r:
        count = sum(1 for _ in r)
        assert count == n


def measure(
    repeat: int, nbytes: int, action: Callable[[], None], remove: Path | None = None
) -> list[float]:
    rates = []
    for _ in range(repeat):
        if remove is not None:
            remove.unlink(missing_ok=True)  # replacing a file frees its pages: not timed
        t0 = time.perf_counter()
        action()
        rates.append(nbytes / (time.perf_counter() - t0) / 1e9)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--event-kib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    data, metadata = make_events(args.events, args.event_kib)
    nbytes = data.nbytes + metadata.nbytes
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "bench.mimo"
        print(
            f"{args.events} events of {data.shape[1] * DTYPE.itemsize} bytes "
            f"({nbytes / 1e6:.0f} MB per file), {args.repeat} repetitions"
        )
        cases = [
            ("write (event by event)", lambda: write_events(path, data, metadata), path),
            ("write_many (one batch)", lambda: write_batch(path, data, metadata), path),
            ("read_all", lambda: read_all(path, args.events), None),
            ("read (iteration)", lambda: read_iter(path, args.events), None),
        ]
        for name, action, remove in cases:
            rates = measure(args.repeat, nbytes, action, remove)
            runs = " ".join(f"{r:.2f}" for r in rates)
            print(f"{name:24s} median {statistics.median(rates):6.2f} GB/s   ({runs})")


if __name__ == "__main__":
    main()
