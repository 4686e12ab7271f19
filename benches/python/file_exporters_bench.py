"""Throughput of ``exporters.hdf5``, ``exporters.parquet``, ``exporters.root`` (and csv).

1. Large events (``--event-kib``, 64 KiB: two float32 channels): in each repetition, in turn,
   a bare h5py append loop (resize + write of ``data`` and ``metadata``) of the batches the
   exporters read, once as ``read_batch`` hands them out (views of a record array) and once
   as contiguous arrays, then each exporter function reading the same events from a buffer
   (``read_batch`` + writing; the producer is not timed), uncompressed, plus ROOT with LZ4.
   MB/s and events/s, medians of ``--repeat`` repetitions; the ratio exporter / bare loop.
2. Small events (data_length 1, four fields int64/float64/float32/uint8, as ``csv_bench.py``):
   every exporter including ``exporters.csv``, events/s.
3. Conversion of a ``.mimo`` file of ``--mimo-mb`` MB (1 GB by default) to HDF5
   (``mimocorb2.mimo_file.convert_to``) against ``exporters.hdf5`` writing the same events
   (from a buffer of that size filled beforehand), in turn in each repetition.

The last line gives both targets of issue 17 (each >= 0.8): the exporter against the bare loop
over contiguous arrays, and the conversion against the exporter, with the load average.
The files live in ``--dir`` (default: a temporary directory; ``/dev/shm`` keeps the disk out).
Run: ``python benches/python/file_exporters_bench.py [--events 2000] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet  # noqa: F401 - imported before timing (as by a running exporter)
import uproot  # noqa: F401 - likewise

from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2.functions import exporters
from mimocorb2.mimo_buffer import BufferWriter, mimoBuffer
from mimocorb2.mimo_file import MimoWriter, convert_to
from mimocorb2.mimo_worker import BufferIO

WAVE = np.dtype([("ch1", "<f4"), ("ch2", "<f4")])
SMALL = np.dtype([("n", "<i8"), ("x", "<f8"), ("y", "<f4"), ("u", "u1")])
BATCH_BYTES = 1 << 22  # what one read_batch of the exporters takes at most
BATCH_EVENTS = 4096


def make_events(dtype: np.dtype, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    data = np.zeros((n, length), dtype)
    for name in dtype.names or ():
        data[name] = rng.normal(scale=100, size=(n, length)).astype(dtype[name])
    metadata = np.zeros(n, METADATA_DTYPE)
    metadata["counter"] = np.arange(n)
    metadata["timestamp"] = 1.7e9 + np.arange(n) * 1e-4
    return metadata, data


def batch_size(data: np.ndarray) -> int:
    event = data.shape[1] * data.dtype.itemsize + METADATA_DTYPE.itemsize
    return max(1, min(BATCH_EVENTS, BATCH_BYTES // event))


def as_read(metadata: np.ndarray, data: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The batches as ``read_batch`` hands them out: views of a record array per batch."""
    step = batch_size(data)
    record = np.dtype([("metadata", METADATA_DTYPE), ("data", data.dtype, (data.shape[1],))])
    batches = []
    for i in range(0, len(data), step):
        rec = np.empty(min(step, len(data) - i), record)
        rec["metadata"] = metadata[i : i + len(rec)]
        rec["data"] = data[i : i + len(rec)]
        batches.append((rec["metadata"], rec["data"]))
    return batches


def bare_h5py(path: Path, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """The reference: resizable datasets appended batch by batch with h5py, closed at the end."""
    length = batches[0][1].shape[1]
    dtype = batches[0][1].dtype
    rows = max(1, (1 << 20) // (length * dtype.itemsize))
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        d = f.create_dataset(
            "data", (0, length), maxshape=(None, length), dtype=dtype, chunks=(rows, length)
        )
        m = f.create_dataset("metadata", (0,), maxshape=(None,), dtype=METADATA_DTYPE)
        i = 0
        for meta, data in batches:
            k = len(data)
            d.resize(i + k, axis=0)
            d[i : i + k] = data
            m.resize(i + k, axis=0)
            m[i : i + k] = meta
            i += k


def filled_buffer(metadata: np.ndarray, data: np.ndarray) -> mimoBuffer:
    buf = mimoBuffer(f"bench_{uuid.uuid4().hex[:10]}", len(data) + 1, data.shape[1], data.dtype)
    writer = BufferWriter(buf)
    writer.write_batch(data, metadata)
    writer.send_flush_event()
    return buf


def run_exporter(
    name: str, out: Path, metadata: np.ndarray, data: np.ndarray, config: dict
) -> float:
    """Seconds the exporter function takes to write every event of a filled buffer."""
    buf = filled_buffer(metadata, data)
    io = BufferIO("bench", [buf], [], [], config, out, out)
    return timed(lambda: getattr(exporters, name)(io), data.nbytes + metadata.nbytes)


def warm(nbytes: int) -> None:
    """Touches ``nbytes`` of fresh memory and frees it again, right before a timed step.

    A virtual machine may hand memory freed for a few seconds back to its host (free page
    reporting); touching such memory again costs microseconds per page (~3.5 s per GB here),
    which would fall on whichever step writes a new file first. Touched just before, the
    pages the step gets are there already.
    """
    if nbytes > 0:
        np.ones(nbytes // 8 + 1).sum()


def timed(func: Callable[[], object], warm_bytes: int = 0) -> float:
    """Seconds ``func`` takes, after :func:`warm` of ``warm_bytes`` (what it will write)."""
    warm(warm_bytes + (warm_bytes >> 3))
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def report(label: str, seconds: list[float], n: int, nbytes: int) -> float:
    med = statistics.median(seconds)
    print(
        f"  {label:<34} {n / med:12.0f} events/s {nbytes / med / 1e6:9.1f} MB/s   runs (MB/s) "
        f"{[round(nbytes / s / 1e6) for s in seconds]}",
        flush=True,
    )
    return n / med


def bench_large(tmp: Path, n: int, event_kib: int, repeat: int) -> float:
    length = event_kib * 1024 // WAVE.itemsize
    metadata, data = make_events(WAVE, n, length)
    nbytes = data.nbytes + metadata.nbytes
    print(f"{n} events of {event_kib} KiB ({nbytes / 1e6:.0f} MB), batches of {batch_size(data)}:")
    cases: dict[str, list[float]] = {}
    ratios, ratios_contiguous = [], []
    as_read_batches = as_read(metadata, data)
    step = batch_size(data)
    contiguous = [(metadata[i : i + step], data[i : i + step]) for i in range(0, n, step)]
    for r in range(repeat):
        out = tmp / f"large_{r}"
        out.mkdir()
        bare = timed(lambda out=out: bare_h5py(out / "bare.h5", as_read_batches), nbytes)
        cases.setdefault("bare h5py loop (read_batch views)", []).append(bare)
        bare_c = timed(lambda out=out: bare_h5py(out / "bare_c.h5", contiguous), nbytes)
        cases.setdefault("bare h5py loop (contiguous)", []).append(bare_c)
        for label, name, config in (
            ("exporters.hdf5", "hdf5", {"filename": "e"}),
            ("exporters.parquet", "parquet", {"filename": "e"}),
            ("exporters.root", "root", {"filename": "e"}),
            ("exporters.root (lz4)", "root", {"filename": "lz4", "compression": "lz4"}),
            ("data.export (.mimo, reference)", None, {}),
        ):
            if name is None:
                seconds = timed(
                    lambda out=out: mimo_write(out / "ref.mimo", metadata, data), nbytes
                )
            else:
                seconds = run_exporter(name, out, metadata, data, config)
            cases.setdefault(label, []).append(seconds)
            if name == "hdf5":
                ratios.append(bare / seconds)
                ratios_contiguous.append(bare_c / seconds)
        for p in sorted(out.iterdir()):
            remove(p)
    for label, s in cases.items():
        report(label, s, n, nbytes)
    for label, values in (("read_batch views", ratios), ("contiguous", ratios_contiguous)):
        print(
            f"  exporters.hdf5 / bare h5py loop ({label}): median ratio "
            f"{statistics.median(values):.2f} (runs {[round(x, 2) for x in values]})"
        )
    return statistics.median(ratios_contiguous)


def mimo_write(path: Path, metadata: np.ndarray, data: np.ndarray) -> None:
    with MimoWriter(path, data.dtype, data.shape[1]) as w:
        w.write_many(data, metadata)


def remove(path: Path) -> None:
    if path.is_dir():
        for p in path.iterdir():
            p.unlink()
        path.rmdir()
    else:
        path.unlink()


def bench_small(tmp: Path, n: int, repeat: int) -> None:
    metadata, data = make_events(SMALL, n, 1)
    nbytes = data.nbytes + metadata.nbytes
    print(f"{n} small events (data_length 1, {SMALL.itemsize} B of data + 24 B metadata):")
    cases: dict[str, list[float]] = {}
    for r in range(repeat):
        out = tmp / f"small_{r}"
        out.mkdir()
        for name in ("csv", "hdf5", "parquet", "root"):
            seconds = run_exporter(name, out, metadata, data, {"filename": "s"})
            cases.setdefault(f"exporters.{name}", []).append(seconds)
        for p in sorted(out.iterdir()):
            remove(p)
    base = statistics.median(cases["exporters.csv"])
    for label, seconds in cases.items():
        report(label, seconds, n, nbytes)
    for label, seconds in cases.items():
        print(f"  {label:<34} {base / statistics.median(seconds):6.1f} x csv")


def bench_convert(tmp: Path, mimo_mb: int, event_kib: int, repeat: int) -> float:
    """Converting a ``.mimo`` file against ``exporters.hdf5`` writing the same events.

    Both write the same number of events (``mimo_mb`` MB) to the same directory, one after
    the other in each repetition; the exporter reads them from a buffer filled beforehand
    (not timed). Returns the median ratio convert rate / exporter rate.
    """
    length = event_kib * 1024 // WAVE.itemsize
    n_block = 256
    metadata, data = make_events(WAVE, n_block, length)
    event = data[0].nbytes + METADATA_DTYPE.itemsize
    blocks = max(1, mimo_mb * 1_000_000 // (event * n_block))
    n = blocks * n_block
    source = tmp / "big.mimo"
    with MimoWriter(source, WAVE, length) as w:
        for _ in range(blocks):
            w.write_many(data, metadata)
    size = source.stat().st_size
    print(f"{n} events of {event_kib} KiB ({size / 1e9:.2f} GB): .mimo -> HDF5 vs exporters.hdf5")
    exporter, convert = [], []
    for r in range(repeat):
        buf = mimoBuffer(f"bench_{uuid.uuid4().hex[:10]}", n + 1, length, WAVE)
        writer = BufferWriter(buf)
        for _ in range(blocks):
            writer.write_batch(data, metadata)
        writer.send_flush_event()
        io = BufferIO("bench", [buf], [], [], {"filename": f"exp_{r}"}, tmp, tmp)
        exporter.append(timed(lambda io=io: exporters.hdf5(io), size))
        del buf, writer, io
        gc.collect()  # unmaps the buffer
        remove(tmp / f"exp_{r}.h5")
        target = tmp / f"big_{r}.h5"
        convert.append(timed(lambda target=target: convert_to(source, target), size))
        remove(target)
    source.unlink()
    report("exporters.hdf5", exporter, n, size)
    report("mimocorb2 convert .mimo -> .h5", convert, n, size)
    ratios = [e / c for e, c in zip(exporter, convert, strict=True)]
    ratio = statistics.median(exporter) / statistics.median(convert)
    print(
        f"  convert / exporters.hdf5 (rate): {ratio:.2f} of the medians "
        f"(runs {[round(x, 2) for x in ratios]}; target >= 0.8)"
    )
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000, help="large events per repetition")
    ap.add_argument("--event-kib", type=int, default=64)
    ap.add_argument("--small-events", type=int, default=300_000)
    ap.add_argument("--mimo-mb", type=int, default=1000, help="size of the file converted")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        tmp = Path(name)
        ratio = bench_large(tmp, args.events, args.event_kib, args.repeat)
        if args.small_events > 0:
            bench_small(tmp, args.small_events, args.repeat)
        convert = bench_convert(tmp, args.mimo_mb, args.event_kib, args.repeat)
        print(
            f"targets: exporters.hdf5 / bare h5py loop (contiguous) {ratio:.2f} (>= 0.8), "
            f"convert / exporters.hdf5 {convert:.2f} (>= 0.8); load average "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
        )


if __name__ == "__main__":
    main()
