"""Buffers shared between processes (fork and spawn): delivery, observers, ending, recovery."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Iterator

import numpy as np
import pytest

import mimocorb2
from mimocorb2.mimo_buffer import BufferObserver, BufferReader, BufferWriter, mimoBuffer

METHODS = ["fork", "spawn"]
DTYPE = {"x": "<i8"}
DATA_LENGTH = 8
N_EVENTS = 20000
WAIT_S = 10.0  # per-operation timeout inside workers: only reached when a test fails
GET_S = 20.0
JOIN_S = 5.0


# ----- workers (module level, so that spawn can import them) -----


def _write_event(w: BufferWriter, i: int) -> None:
    with w as (metadata, data):
        data["x"] = i
        metadata["counter"] = i
        metadata["timestamp"] = time.time()


def writer_worker(buf, n, barrier=None, flush=True):
    w = BufferWriter(buf, timeout=WAIT_S)
    if barrier is not None:
        barrier.wait(WAIT_S)
    for i in range(n):
        _write_event(w, i)
    if flush:
        w.send_flush_event()


def reader_worker(buf, q, idx, n_max, barrier=None):
    r = BufferReader(buf, timeout=WAIT_S)
    if barrier is not None:
        barrier.wait(WAIT_S)
    out = np.empty(n_max, dtype=np.int64)
    k = 0
    torn = 0
    while True:
        with r as (metadata, data):
            if data is None:
                break
            c = int(metadata["counter"][0])
            if not np.all(data["x"] == c):
                torn += 1
            out[k] = c
            k += 1
    q.put((idx, out[:k].copy(), torn))


def observer_worker(buf, q, barrier=None):
    o = BufferObserver(buf, timeout=WAIT_S)
    if barrier is not None:
        barrier.wait(WAIT_S)
    seen = []
    torn = 0
    while True:
        with o as (metadata, data):
            if data is None:
                break
            c = int(metadata["counter"][0])
            if not np.all(data["x"] == c):
                torn += 1
            seen.append(c)
        time.sleep(0.0002)
    q.put(("observer", np.array(seen, dtype=np.int64), torn))


def staggered_writer(buf, q, wid, m, delay, barrier=None):
    w = BufferWriter(buf, timeout=WAIT_S)
    if barrier is not None:
        barrier.wait(WAIT_S)
    time.sleep(delay)
    for i in range(m):
        _write_event(w, wid * m + i)
    time.sleep(delay)
    q.put((wid, time.time()))
    w.send_flush_event()


def stamping_writer(buf, n, barrier):
    w = BufferWriter(buf, timeout=WAIT_S, stamp=True)
    barrier.wait(WAIT_S)
    for _ in range(n):
        with w as (_, data):
            data["x"] = os.getpid()
    w.send_flush_event()


def write_until_ended(buf, q):
    w = BufferWriter(buf, timeout=WAIT_S)
    n = 0
    try:
        while True:
            _write_event(w, n)
            n += 1
    except mimocorb2.BufferEndedError:
        q.put(n)


def hold_read_slot(buf, q):
    r = BufferReader(buf, timeout=WAIT_S)
    with r as (_, data):
        q.put(int(data["x"][0]))
        time.sleep(60)


def hold_write_slot(buf, q):
    w = BufferWriter(buf, timeout=WAIT_S)
    with w as (_, data):
        data["x"] = 99
        q.put("holding")
        time.sleep(60)


def write_then_idle(buf, q, n):
    w = BufferWriter(buf, timeout=WAIT_S)
    for i in range(n):
        _write_event(w, 100 + i)
    q.put("written")
    time.sleep(60)


# ----- helpers -----


@contextlib.contextmanager
def running(*procs: mp.process.BaseProcess) -> Iterator[None]:
    """Starts the processes; on leaving, joins them with a deadline and kills stragglers."""
    started = []
    try:
        for p in procs:
            p.start()
            started.append(p)
        yield
    finally:
        deadline = time.monotonic() + JOIN_S
        for p in started:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in started:
            if p.is_alive():
                p.kill()
                p.join(2)


def collect(q, n: int, procs) -> list:
    """Gets ``n`` results from ``q``; fails at once if a process died with an error."""
    out = []
    deadline = time.monotonic() + GET_S
    while len(out) < n:
        try:
            out.append(q.get(timeout=0.2))
        except queue.Empty:
            crashed = {p.name: p.exitcode for p in procs if p.exitcode not in (0, None)}
            if crashed:
                pytest.fail(f"worker processes failed: {crashed}")
            if time.monotonic() > deadline:
                pytest.fail(f"no result from the workers within {GET_S} s")
    return out


def assert_clean_exit(*procs: mp.process.BaseProcess) -> None:
    codes = {p.name: p.exitcode for p in procs}
    assert all(c == 0 for c in codes.values()), codes


def kill_and_reap(p: mp.process.BaseProcess) -> None:
    os.kill(p.pid, signal.SIGKILL)
    p.join(JOIN_S)
    assert p.exitcode == -signal.SIGKILL


def new_buffer(unique_name, prefix, slot_count=64, overwrite=False) -> mimoBuffer:
    return mimoBuffer(unique_name(prefix), slot_count, DATA_LENGTH, DTYPE, overwrite=overwrite)


# ----- delivery -----


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("slot_count", [64, 4])
def test_competing_readers_exactly_once(method, slot_count, unique_name):
    ctx = mp.get_context(method)
    buf = new_buffer(unique_name, "once", slot_count=slot_count)
    q = ctx.Queue()
    barrier = ctx.Barrier(3)
    readers = [
        ctx.Process(target=reader_worker, args=(buf, q, i, N_EVENTS, barrier), name=f"reader{i}")
        for i in range(2)
    ]
    writer = ctx.Process(target=writer_worker, args=(buf, N_EVENTS, barrier), name="writer")
    with running(*readers, writer):
        results = collect(q, len(readers), [*readers, writer])
    assert_clean_exit(*readers, writer)
    seqs = {idx: seq for idx, seq, _ in results}
    assert sorted(seqs) == [0, 1]
    assert sum(torn for _, _, torn in results) == 0
    for seq in seqs.values():
        assert np.all(np.diff(seq) > 0), "a reader got events out of order"
    everything = np.concatenate(list(seqs.values()))
    assert everything.size == N_EVENTS, "events lost or duplicated"
    assert np.array_equal(np.sort(everything), np.arange(N_EVENTS))
    s = buf.get_stats()
    assert s["event_count"] == N_EVENTS
    assert s["flush_event_received"] is True
    assert s["empty_slots"] == 1.0


@pytest.mark.parametrize("method", METHODS)
def test_observer_does_not_steal_or_reorder(method, unique_name):
    ctx = mp.get_context(method)
    buf = new_buffer(unique_name, "obs")
    q = ctx.Queue()
    barrier = ctx.Barrier(3)
    reader = ctx.Process(target=reader_worker, args=(buf, q, 0, N_EVENTS, barrier), name="reader")
    observer = ctx.Process(target=observer_worker, args=(buf, q, barrier), name="observer")
    writer = ctx.Process(target=writer_worker, args=(buf, N_EVENTS, barrier), name="writer")
    with running(reader, observer, writer):
        results = {r[0]: r for r in collect(q, 2, [reader, observer, writer])}
    assert_clean_exit(reader, observer, writer)
    _, seq, torn = results[0]
    assert torn == 0
    assert np.array_equal(seq, np.arange(N_EVENTS)), "the reader lost or reordered events"
    _, seen, obs_torn = results["observer"]
    assert obs_torn == 0, "the observer saw torn events"
    assert seen.size >= 1
    assert np.all(np.diff(seen) > 0), "the observer must only see newer events"
    assert seen.max() < N_EVENTS


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("registration", ["expected_writers", "barrier"])
def test_multi_writer_flush(method, registration, unique_name):
    ctx = mp.get_context(method)
    m = 2000
    buf = new_buffer(unique_name, "mw", slot_count=32)
    q = ctx.Queue()
    if registration == "expected_writers":
        buf.set_expected_writers(3)  # writers may register late: the buffer waits for all three
        barrier = None
    else:
        barrier = ctx.Barrier(3)  # every writer registers before any of them flushes
    writers = [
        ctx.Process(
            target=staggered_writer, args=(buf, q, wid, m, 0.15 * wid, barrier), name=f"w{wid}"
        )
        for wid in range(3)
    ]
    r = BufferReader(buf, timeout=WAIT_S)
    got = []
    with running(*writers):
        while True:
            with r as (metadata, data):
                if data is None:
                    t_end = time.time()
                    break
                c = int(metadata["counter"][0])
                assert np.all(data["x"] == c)
                got.append(c)
        flushes = dict(collect(q, 3, writers))
    assert_clean_exit(*writers)
    assert t_end >= max(flushes.values()), "the buffer ended before the last writer flushed"
    got_arr = np.array(got)
    assert got_arr.size == 3 * m
    assert np.array_equal(np.sort(got_arr), np.arange(3 * m))
    for wid in range(3):
        mine = got_arr[(got_arr >= wid * m) & (got_arr < (wid + 1) * m)]
        assert np.array_equal(mine, np.arange(wid * m, (wid + 1) * m))
    with r as (_, data):
        assert data is None
    s = buf.get_stats()
    assert s["forced_shutdown"] is False
    assert s["active_writers"] == 0


@pytest.mark.parametrize("method", METHODS)
def test_forced_end_loses_no_committed_event(method, unique_name):
    ctx = mp.get_context(method)
    buf = new_buffer(unique_name, "force", slot_count=16)
    q = ctx.Queue()
    writer = ctx.Process(target=write_until_ended, args=(buf, q), name="writer")
    r = BufferReader(buf, timeout=WAIT_S)
    got = []
    with running(writer):
        while True:
            with r as (metadata, data):
                if data is None:
                    break
                got.append(int(metadata["counter"][0]))
            if len(got) == 3000:
                buf.send_flush_event()
        (written,) = collect(q, 1, [writer])
    assert_clean_exit(writer)
    assert written >= 3000
    assert got == list(range(written)), "every successfully written event must be delivered"
    s = buf.get_stats()
    assert s["event_count"] == written
    assert s["forced_shutdown"] is True
    assert s["empty_slots"] == 1.0


@pytest.mark.parametrize("method", METHODS)
def test_data_and_stats_shared_with_child(method, unique_name):
    ctx = mp.get_context(method)
    buf = new_buffer(unique_name, "shared", slot_count=8)
    writer = ctx.Process(target=writer_worker, args=(buf, 5), name="writer")
    with running(writer):
        writer.join(JOIN_S)
    assert_clean_exit(writer)
    s = buf.get_stats()
    assert s["event_count"] == 5
    assert s["flush_event_received"] is True
    r = BufferReader(buf, timeout=1)
    for i in range(5):
        with r as (metadata, data):
            assert metadata["counter"][0] == i
            assert np.all(data["x"] == i)
    with r as (_, data):
        assert data is None


@pytest.mark.parametrize("method", METHODS)
def test_stamped_counters_unique_across_writers(method, unique_name):
    ctx = mp.get_context(method)
    n = 3000
    buf = new_buffer(unique_name, "stamp", slot_count=32)
    buf.set_expected_writers(2)
    barrier = ctx.Barrier(2)
    writers = [
        ctx.Process(target=stamping_writer, args=(buf, n, barrier), name=f"w{i}") for i in range(2)
    ]
    r = BufferReader(buf, timeout=WAIT_S)
    counters, stamps, pids = [], [], []
    t0 = time.time()
    with running(*writers):
        while True:
            with r as (metadata, data):
                if data is None:
                    break
                counters.append(int(metadata["counter"][0]))
                stamps.append(float(metadata["timestamp"][0]))
                assert 0.0 <= metadata["deadtime"][0] <= 1.0
                pids.append(int(data["x"][0]))
    t1 = time.time()
    assert_clean_exit(*writers)
    assert sorted(counters) == list(range(2 * n)), "stamped counters must be unique"
    assert sorted(set(pids)) == sorted(p.pid for p in writers)
    for pid in set(pids):
        mine = [c for c, p in zip(counters, pids, strict=True) if p == pid]
        assert len(mine) == n
        assert mine == sorted(mine), "one writer's counters must increase"
    assert all(t0 - 0.01 <= t <= t1 + 0.01 for t in stamps)


# ----- recovery after SIGKILL -----


@pytest.mark.parametrize("method", METHODS)
def test_reclaim_killed_reader(method, unique_name):
    ctx = mp.get_context(method)
    buf = new_buffer(unique_name, "rkill", slot_count=4)
    w = BufferWriter(buf, timeout=0.5)
    _write_event(w, 7)
    q = ctx.Queue()
    p = ctx.Process(target=hold_read_slot, args=(buf, q), name="reader")
    with running(p):
        assert collect(q, 1, [p]) == [7]
        assert buf.get_stats()["empty_slots"] == pytest.approx(0.75)
        kill_and_reap(p)
    assert buf.reclaim(p.pid) == (0, 1, 0)
    assert buf.reclaim(p.pid) == (0, 0, 0)
    s = buf.get_stats()
    assert s["lost"] == 1
    assert s["empty_slots"] == 1.0
    for i in range(buf.slot_count):  # every slot is usable again
        _write_event(w, i)
    assert buf.get_stats()["empty_slots"] == 0.0
    r = BufferReader(buf, timeout=0.5)
    for i in range(buf.slot_count):
        with r as (metadata, _):
            assert metadata["counter"][0] == i


@pytest.mark.parametrize("method", METHODS)
def test_reclaim_writer_killed_holding_slot(method, unique_name):
    ctx = mp.get_context(method)
    buf = new_buffer(unique_name, "wkill", slot_count=2)
    w = BufferWriter(buf, timeout=0.5)  # keeps the buffer open after the other writer died
    q = ctx.Queue()
    p = ctx.Process(target=hold_write_slot, args=(buf, q), name="writer")
    with running(p):
        assert collect(q, 1, [p]) == ["holding"]
        assert buf.get_stats()["empty_slots"] == pytest.approx(0.5)
        kill_and_reap(p)
    assert buf.reclaim(p.pid) == (1, 0, 1)
    s = buf.get_stats()
    assert s["event_count"] == 0  # never published
    assert s["empty_slots"] == 1.0
    assert s["crashed_writers"] == 1
    assert s["lost"] == 0
    assert s["flush_event_received"] is False
    r = BufferReader(buf, timeout=0.05)
    with pytest.raises(mimocorb2.BufferTimeoutError), r:
        pass
    _write_event(w, 1)
    _write_event(w, 2)
    for expect in (1, 2):
        with r as (metadata, data):
            assert metadata["counter"][0] == expect
            assert np.all(data["x"] == expect)  # not the 99 of the dead writer
    w.send_flush_event()
    with r as (_, data):
        assert data is None


@pytest.mark.parametrize("method", METHODS)
def test_reclaim_registered_writer_lets_buffer_end(method, unique_name):
    ctx = mp.get_context(method)
    buf = new_buffer(unique_name, "regkill", slot_count=8)
    w = BufferWriter(buf, timeout=0.5)
    q = ctx.Queue()
    p = ctx.Process(target=write_then_idle, args=(buf, q, 3), name="writer")
    with running(p):
        assert collect(q, 1, [p]) == ["written"]
        kill_and_reap(p)
    w.send_flush_event()
    s = buf.get_stats()
    assert s["flush_event_received"] is False  # the dead writer is still registered
    assert s["active_writers"] == 1
    # Without a supervisor, a waiting reader finds the dead writer itself (issue 9.4): its
    # registration counts as crashed, hence finished, and the buffer ends in order.
    r = BufferReader(buf, timeout=5.0)
    for expect in (100, 101, 102):
        with r as (metadata, _):
            assert metadata["counter"][0] == expect
    with r as (_, data):
        assert data is None
    assert buf.reclaim(p.pid) == (0, 0, 0)  # already done by the reader
    s = buf.get_stats()
    assert s["flush_event_received"] is True
    assert s["forced_shutdown"] is False
    assert s["crashed_writers"] == 1
    assert s["active_writers"] == 0
