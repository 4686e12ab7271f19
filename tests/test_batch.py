"""Batch hand-offs: BufferWriter.write_batch and BufferReader.read_batch."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np
import pytest

import mimocorb2
from mimocorb2.mimo_buffer import BufferReader, BufferWriter, mimoBuffer

DTYPE = np.dtype([("a", "<f4"), ("b", "<i2")])
LENGTH = 3
WAIT_S = 10.0


@pytest.fixture
def buf(unique_name) -> mimoBuffer:
    return mimoBuffer(unique_name("batch"), 8, LENGTH, DTYPE)


def make_events(first: int, k: int, length: int = LENGTH) -> np.ndarray:
    """``k`` events; element j of event i holds ``(first + i) * 10 + j`` in both fields."""
    data = np.zeros((k, length), dtype=DTYPE)
    values = (np.arange(first, first + k)[:, None] * 10 + np.arange(length)[None, :]).astype(int)
    data["a"] = values
    data["b"] = -values
    return data


def make_metadata(counters) -> np.ndarray:
    md = np.zeros(len(counters), dtype=mimoBuffer.metadata_dtype)
    md["counter"] = counters
    md["timestamp"] = [1000.0 + c for c in counters]
    md["deadtime"] = [0.25] * len(counters)
    return md


def test_round_trip_stamped(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf, timeout=0.05)
    data = make_events(0, 5)
    t0 = time.time()
    assert w.write_batch(data) == 5
    t1 = time.time()
    s = buf.get_stats()
    assert s["event_count"] == 5
    assert s["filled_slots"] == pytest.approx(5 / 8)
    metadata, out = r.read_batch(3)
    assert metadata.shape == (3,)
    assert metadata.dtype == buf.metadata_dtype
    assert out.shape == (3, LENGTH)
    assert out.dtype == DTYPE
    assert np.array_equal(out, data[:3])
    assert metadata["counter"].tolist() == [0, 1, 2]
    metadata2, out2 = r.read_batch(10)  # fewer available than asked: returns what is there
    assert metadata2["counter"].tolist() == [3, 4]
    assert np.array_equal(out2, data[3:])
    stamps = np.concatenate([metadata["timestamp"], metadata2["timestamp"]])
    assert np.all((stamps >= t0 - 0.01) & (stamps <= t1 + 0.01))
    deadtimes = np.concatenate([metadata["deadtime"], metadata2["deadtime"]])
    assert np.all((deadtimes >= 0.0) & (deadtimes <= 1.0))
    assert buf.get_stats()["empty_slots"] == 1.0
    with pytest.raises(mimocorb2.BufferTimeoutError):
        r.read_batch(4, timeout=0.05)


def test_metadata_kept_when_given(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf)
    data = make_events(7, 2)
    md = make_metadata([100, 50])
    assert w.write_batch(data, md) == 2
    metadata, out = r.read_batch(2)
    assert np.array_equal(metadata, md)
    assert np.array_equal(out, data)


def test_batch_and_single_events_interoperate(buf):
    w = BufferWriter(buf, stamp=True)
    r = BufferReader(buf)
    w.write_batch(make_events(0, 2))
    with w as (_, data):
        data[:] = make_events(2, 1)[0]
    w.write_batch(make_events(3, 2))
    for i in range(3):
        with r as (metadata, data):
            assert metadata["counter"][0] == i
            assert np.array_equal(data, make_events(i, 1)[0])
    metadata, out = r.read_batch(8)
    assert metadata["counter"].tolist() == [3, 4]
    assert np.array_equal(out, make_events(3, 2))


def test_read_batch_returns_copies(unique_name):
    b = mimoBuffer(unique_name("copies"), 2, LENGTH, DTYPE)
    w = BufferWriter(b)
    r = BufferReader(b)
    w.write_batch(make_events(0, 2))
    _, first = r.read_batch(2)
    w.write_batch(make_events(5, 2))  # reuses both slots
    assert np.array_equal(first, make_events(0, 2))
    _, second = r.read_batch(2)
    assert np.array_equal(second, make_events(5, 2))


def test_data_length_one_flat_input(unique_name):
    b = mimoBuffer(unique_name("flat"), 4, 1, {"x": "<i4"})
    w = BufferWriter(b)
    flat = np.zeros(3, dtype=b.data_dtype)
    flat["x"] = [5, 6, 7]
    assert w.write_batch(flat) == 3
    metadata, out = BufferReader(b).read_batch(4)
    assert out.shape == (3, 1)
    assert out["x"][:, 0].tolist() == [5, 6, 7]
    assert metadata["counter"].tolist() == [0, 1, 2]


def test_wrong_shape_rejected(buf):
    w = BufferWriter(buf)
    with pytest.raises(ValueError):
        w.write_batch(np.zeros(LENGTH * 2 + 1, dtype=DTYPE))
    with pytest.raises(ValueError):
        w.write_batch(make_events(0, 2), make_metadata([1, 2, 3]))
    assert buf.get_stats()["event_count"] == 0


def test_batch_larger_than_buffer(unique_name):
    b = mimoBuffer(unique_name("big"), 4, LENGTH, DTYPE)
    w = BufferWriter(b, timeout=WAIT_S)
    r = BufferReader(b, timeout=WAIT_S)
    got_md, got_data = [], []

    def drain():
        while True:
            metadata, data = r.read_batch(3)
            if metadata is None:
                break
            assert 1 <= len(metadata) <= 3
            got_md.append(metadata)
            got_data.append(data)

    t = threading.Thread(target=drain)
    t.start()
    data = make_events(0, 50)
    assert w.write_batch(data) == 50
    w.send_flush_event()
    t.join(WAIT_S)
    assert not t.is_alive()
    assert np.concatenate(got_md)["counter"].tolist() == list(range(50))
    assert np.array_equal(np.concatenate(got_data), data)


def test_read_batch_end_of_stream(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf, timeout=0.05)
    w.write_batch(make_events(0, 2))
    w.send_flush_event()
    metadata, _ = r.read_batch(8)
    assert metadata["counter"].tolist() == [0, 1]
    assert r.read_batch(8) == (None, None)
    assert r.read_batch(8) == (None, None)
    with pytest.raises(mimocorb2.BufferEndedError):
        w.write_batch(make_events(0, 1))


def test_read_batch_zero_is_not_end_of_stream(buf):
    w = BufferWriter(buf)
    w.write_batch(make_events(0, 2))
    w.send_flush_event()
    r = BufferReader(buf)
    # (None, None) means "end of stream"; two events are still waiting, so asking for zero
    # events must be refused rather than answered with the end marker
    with pytest.raises(ValueError):
        r.read_batch(0, timeout=0.05)
    metadata, _ = r.read_batch(8, timeout=0.05)
    assert metadata["counter"].tolist() == [0, 1]


def test_write_batch_after_forced_end(buf):
    w = BufferWriter(buf)
    buf.send_flush_event()
    with pytest.raises(mimocorb2.BufferEndedError):
        w.write_batch(make_events(0, 1))
    assert BufferReader(buf).read_batch(2) == (None, None)


def test_write_batch_timeout_on_full_buffer(buf):
    w = BufferWriter(buf)
    w.write_batch(make_events(0, 8))
    t0 = time.monotonic()
    with pytest.raises(mimocorb2.BufferTimeoutError):
        w.write_batch(make_events(8, 1), timeout=0.05)
    assert time.monotonic() - t0 < 1.0
    assert buf.get_stats()["event_count"] == 8


def test_paused_batch_consumes_counters(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf, timeout=0.05)
    w.write_batch(make_events(0, 2))
    buf.pause()
    assert w.write_batch(make_events(2, 20)) == 20  # more than slot_count: never blocks
    s = buf.get_stats()
    assert s["paused_count"] == 20
    assert s["event_count"] == 2
    buf.resume()
    w.write_batch(make_events(22, 1))
    metadata, out = r.read_batch(8)
    assert metadata["counter"].tolist() == [0, 1, 22]  # the gap shows the pause
    assert np.array_equal(out[2], make_events(22, 1)[0])
    with pytest.raises(mimocorb2.BufferTimeoutError):
        r.read_batch(8, timeout=0.05)


# ----- across processes -----


def batch_writer(buf, n, chunk):
    w = BufferWriter(buf, timeout=WAIT_S)
    for first in range(0, n, chunk):
        w.write_batch(make_events(first, min(chunk, n - first)))
    w.send_flush_event()


def batch_reader(buf, q, idx):
    r = BufferReader(buf, timeout=WAIT_S)
    counters = []
    bad = 0
    while True:
        metadata, data = r.read_batch(16)
        if metadata is None:
            break
        for c, row in zip(metadata["counter"], data, strict=True):
            if not np.array_equal(row, make_events(int(c), 1)[0]):
                bad += 1
        counters.append(metadata["counter"].copy())
    q.put((idx, np.concatenate(counters) if counters else np.zeros(0, np.int64), bad))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_batch_across_processes_exactly_once(method, unique_name):
    ctx = mp.get_context(method)
    n = 5000
    b = mimoBuffer(unique_name("mpbatch"), 64, LENGTH, DTYPE)
    q = ctx.Queue()
    procs = [ctx.Process(target=batch_reader, args=(b, q, i)) for i in range(2)]
    procs.append(ctx.Process(target=batch_writer, args=(b, n, 37)))
    for p in procs:
        p.start()
    try:
        results = [q.get(timeout=20) for _ in range(2)]
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(2)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert sum(bad for _, _, bad in results) == 0
    for _, seq, _ in results:
        assert np.all(np.diff(seq) > 0)
    everything = np.concatenate([seq for _, seq, _ in results])
    assert everything.size == n
    assert np.array_equal(np.sort(everything), np.arange(n))
