"""Single-process behaviour of mimocorb2.mimo_buffer: pause/resume, observers, overwrite
buffers, pickling and the shared memory itself."""

from __future__ import annotations

import gc
import os
import pickle
import threading
import time

import pytest
from buffer_test_helpers import DTYPE, read_x, write

import mimocorb2
from mimocorb2.mimo_buffer import BufferObserver, BufferReader, BufferWriter, mimoBuffer

# ----- pause / resume -----


def test_pause_discards_events(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf, timeout=0.05)
    write(w, 1)
    buf.pause()
    assert buf.get_stats()["paused"] is True
    for i in range(10):  # more than slot_count: a paused writer never blocks
        with w as (metadata, data):
            assert data.shape == (3,)
            assert metadata.shape == (1,)
            data["x"] = 100 + i
    s = buf.get_stats()
    assert s["paused_count"] == 10
    assert s["event_count"] == 1
    assert s["filled_slots"] == pytest.approx(0.25)
    assert read_x(r) == 1
    with pytest.raises(mimocorb2.BufferTimeoutError):
        read_x(r)
    buf.resume()
    assert buf.get_stats()["paused"] is False
    write(w, 2)
    assert read_x(r) == 2
    s = buf.get_stats()
    assert s["paused_count"] == 10
    assert s["event_count"] == 2


def test_pause_with_full_buffer_does_not_block(buf):
    w = BufferWriter(buf, timeout=0.05)
    for i in range(buf.slot_count):
        write(w, i)
    buf.pause()
    write(w, 99)
    buf.resume()
    with pytest.raises(mimocorb2.BufferTimeoutError), w:
        pass
    assert [read_x(BufferReader(buf)) for _ in range(4)] == [0, 1, 2, 3]


def test_pause_releases_blocked_writer(unique_name):
    b = mimoBuffer(unique_name("pausew"), 1, 1, DTYPE)
    w = BufferWriter(b)
    write(w, 0)
    result: list = []

    def blocked_writer():
        t0 = time.monotonic()
        write(BufferWriter(b, timeout=5), 1)
        result.append(time.monotonic() - t0)

    t = threading.Thread(target=blocked_writer)
    t.start()
    time.sleep(0.2)
    b.pause()
    t.join(5)
    assert not t.is_alive()
    assert result[0] < 2.0
    assert b.get_stats()["paused_count"] == 1


def test_stamped_metadata_and_pause_gaps(buf):
    w = BufferWriter(buf, stamp=True)
    r = BufferReader(buf)
    counters, stamps = [], []

    def read_meta():
        with r as (metadata, data):
            counters.append(int(metadata["counter"][0]))
            stamps.append(float(metadata["timestamp"][0]))
            assert 0.0 <= metadata["deadtime"][0] <= 1.0
            return int(data["x"][0])

    t0 = time.time()
    for i in range(3):
        write(w, i, counter=-5)  # the stamp overrides what the body wrote
        assert read_meta() == i
    buf.pause()
    for i in range(2):
        write(w, 50 + i)
    buf.resume()
    for i in range(2):
        write(w, 10 + i)
        assert read_meta() == 10 + i
    t1 = time.time()
    assert counters == [0, 1, 2, 5, 6]  # the two paused events left a gap
    assert stamps == sorted(stamps)
    assert all(t0 - 0.01 <= s <= t1 + 0.01 for s in stamps)
    assert buf.get_stats()["paused_count"] == 2


def test_unstamped_metadata_is_kept(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf)
    write(w, 1, counter=1000)
    write(w, 2, counter=7)
    for expect in (1000, 7):
        with r as (metadata, _):
            assert metadata["counter"][0] == expect


# ----- observer -----


def test_observer(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf, timeout=0.05)
    o = BufferObserver(buf, timeout=0.05)
    with pytest.raises(mimocorb2.BufferTimeoutError) as info, o:
        pass
    assert isinstance(info.value, TimeoutError)
    for i in range(3):
        write(w, i, counter=i)
    with o as (metadata, data):
        assert data["x"].tolist() == [2, 2, 2]  # the most recent event
        assert metadata["counter"][0] == 2
        assert data.dtype == buf.data_dtype
        assert data.shape == (3,)
        data["x"] = -1  # a private copy
        obs_data = data
    # nothing newer than what the observer saw
    with pytest.raises(mimocorb2.BufferTimeoutError), o:
        pass
    # the observer took nothing from the reader
    assert [read_x(r) for _ in range(3)] == [0, 1, 2]
    write(w, 3)
    # a later write does not change the observer's earlier copy... until the next observation
    assert obs_data["x"].tolist() == [-1, -1, -1]
    with o as (_, data):
        assert data["x"].tolist() == [3, 3, 3]
    assert read_x(r) == 3
    assert buf.get_stats()["empty_slots"] == 1.0
    buf.send_flush_event()
    with o as (metadata, data):
        assert metadata is None
        assert data is None


def test_observer_does_not_hold_slot(unique_name):
    b = mimoBuffer(unique_name("obsfull"), 2, 1, DTYPE)
    w = BufferWriter(b, timeout=0.05)
    o = BufferObserver(b, timeout=0.05)
    r = BufferReader(b, timeout=0.05)
    write(w, 0)
    with o as (_, data):
        assert data["x"][0] == 0
        # while inside the observer block, the reader can still take and free the event
        assert read_x(r) == 0
        write(w, 1)
        write(w, 2)  # all slots usable
    assert [read_x(r), read_x(r)] == [1, 2]


def test_observer_wakes_on_new_event(buf):
    w = BufferWriter(buf)
    write(w, 1)
    o = BufferObserver(buf, timeout=5)
    with o as (_, data):
        assert data["x"][0] == 1
    result: list = []

    def waiter():
        t0 = time.monotonic()
        with o as (_, data):
            result.append((int(data["x"][0]), time.monotonic() - t0))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    write(w, 2)
    t.join(5)
    assert not t.is_alive()
    value, waited = result[0]
    assert value == 2
    assert 0.15 < waited < 2.0


def test_observer_end_wakes_waiter(buf):
    result: list = []

    def waiter():
        with BufferObserver(buf, timeout=5) as (metadata, data):
            result.append((metadata, data))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    buf.send_flush_event()
    t.join(5)
    assert not t.is_alive()
    assert result == [(None, None)]


# ----- overwrite buffers -----


def test_overwrite_buffer(unique_name):
    b = mimoBuffer(unique_name("ow"), 4, 2, DTYPE, overwrite=True)
    assert b.overwrite
    w = BufferWriter(b, timeout=0.05, stamp=True)
    for i in range(10):
        write(w, i)  # never blocks, never times out
    s = b.get_stats()
    assert s["overwritten"] == 6
    assert s["filled_slots"] == 1.0
    r = BufferReader(b, timeout=0.05)
    got = []
    for _ in range(4):
        with r as (metadata, data):
            got.append((int(data["x"][0]), int(metadata["counter"][0])))
    assert got == [(6, 6), (7, 7), (8, 8), (9, 9)]  # the newest four, in order
    with pytest.raises(mimocorb2.BufferTimeoutError):
        read_x(r)


def test_overwrite_event_count_counts_every_commit(unique_name):
    b = mimoBuffer(unique_name("owcount"), 3, 1, DTYPE, overwrite=True)
    w = BufferWriter(b)
    for i in range(10):
        write(w, i)
    s = b.get_stats()
    assert s["overwritten"] == 7
    # event_count is the number of committed events (overwritten ones were committed too)
    assert s["event_count"] == 10


def test_overwrite_observer_sees_every_new_event(unique_name):
    b = mimoBuffer(unique_name("owobs"), 3, 1, DTYPE, overwrite=True)
    w = BufferWriter(b)
    o = BufferObserver(b, timeout=0.2)
    seen = []
    for i in range(8):
        write(w, i)
        with o as (_, data):
            seen.append(int(data["x"][0]))
    assert seen == list(range(8))


# ----- pickling and the shared memory itself -----


def test_pickle_roundtrip_attaches_same_memory(buf):
    b2 = pickle.loads(pickle.dumps(buf))
    assert isinstance(b2, mimoBuffer)
    assert (b2.name, b2.slot_count, b2.data_length, b2.data_dtype) == (
        buf.name,
        buf.slot_count,
        buf.data_length,
        buf.data_dtype,
    )
    write(BufferWriter(buf), 5)
    assert read_x(BufferReader(b2)) == 5
    write(BufferWriter(b2), 6)
    assert read_x(BufferReader(buf)) == 6
    assert b2.get_stats()["event_count"] == 2


def _memfd_links(name: str) -> list[str]:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if f"memfd:mimocorb2:{name}" in link:
            links.append(link)
    return links


def test_memory_is_memfd_and_freed(unique_name):
    name = unique_name("memfd")
    b = mimoBuffer(name, 2, 4, DTYPE)
    links = _memfd_links(name)
    assert len(links) == 1
    assert links[0].lstrip("/").startswith(f"memfd:mimocorb2:{name}")
    assert not any(n.startswith("mimocorb2") for n in os.listdir("/dev/shm"))
    w = BufferWriter(b)
    write(w, 1)
    r = BufferReader(b)
    assert read_x(r) == 1
    del b, w, r
    gc.collect()
    assert _memfd_links(name) == []


def test_view_keeps_memory_alive(unique_name):
    name = unique_name("keep")
    b = mimoBuffer(name, 2, 4, DTYPE)
    w = BufferWriter(b)
    with w as (metadata, data):
        data["x"] = 77
    view = data
    del b, w, data, metadata
    gc.collect()
    assert len(_memfd_links(name)) == 1  # still mapped: the view is alive
    assert view["x"].tolist() == [77, 77, 77, 77]
    del view
    gc.collect()
    assert _memfd_links(name) == []


def test_repr(buf):
    assert buf.name in repr(buf)
