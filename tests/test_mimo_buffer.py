"""Single-process behaviour of mimocorb2.mimo_buffer: buffers, writers, readers, ending.

Pause/resume, observers, overwrite buffers and the shared memory itself are in
test_mimo_buffer_pause_observe.py.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from buffer_test_helpers import DTYPE, STAT_KEYS, read_x, write

import mimocorb2
import mimocorb2.exceptions as mexc
from mimocorb2.mimo_buffer import BufferObserver, BufferReader, BufferWriter, mimoBuffer

# ----- construction, attributes -----


def test_attributes(unique_name):
    name = unique_name("attrs")
    b = mimoBuffer(name, 5, 7, {"a": "f4", "b": "i2", "c": "u1"})
    assert b.name == name
    assert b.slot_count == 5
    assert b.data_length == 7
    assert b.data_dtype == np.dtype([("a", "<f4"), ("b", "<i2"), ("c", "u1")])
    assert b.data_dtype.names == ("a", "b", "c")  # field order kept
    assert b.data_byte_size == 7 * 7
    assert b.slot_byte_size == 7 * 7 + 24
    ex = b.data_example
    assert ex.shape == (7,)
    assert ex.dtype == b.data_dtype
    assert not ex.view(np.uint8).any()
    md = b.metadata_example
    assert md.shape == (1,)
    assert md.dtype.names == ("counter", "timestamp", "deadtime")
    assert md.dtype["counter"] == np.dtype("<i8")
    assert md.dtype["timestamp"] == np.dtype("<f8")
    assert md.dtype["deadtime"] == np.dtype("<f8")
    assert md.dtype.itemsize == 24
    assert not md.view(np.uint8).any()
    assert b.metadata_byte_size == 24
    assert b.metadata_length == 1


def test_from_setup(unique_name):
    name = unique_name("setup")
    setup = {"slot_count": 3, "data_length": 2, "data_dtype": {"ch1": "float32", "ch2": "int16"}}
    b = mimoBuffer.from_setup(name, setup)
    assert (b.name, b.slot_count, b.data_length) == (name, 3, 2)
    assert b.data_dtype == np.dtype([("ch1", "<f4"), ("ch2", "<i2")])
    assert b.overwrite is False
    b2 = mimoBuffer.from_setup(unique_name("setup"), {**setup, "overwrite": True})
    assert b2.overwrite is True


@pytest.mark.parametrize(
    ("args", "key"),
    [
        ((0, 3, DTYPE), "slot_count"),
        ((-1, 3, DTYPE), "slot_count"),
        ((4, -2, DTYPE), "data_length"),
        ((4, 0, DTYPE), "data_length"),
        ((4, 2.5, DTYPE), "data_length"),
        ((4, 3, {"x": "float99"}), "data_dtype"),
        ((4, 3, {}), "data_dtype"),
        ((4, 3, {"x": "O"}), "data_dtype"),
    ],
)
def test_bad_arguments(unique_name, args, key):
    with pytest.raises(ValueError, match=key):
        mimoBuffer(unique_name("bad"), *args)


@pytest.mark.parametrize(
    ("setup", "key"),
    [
        ({"slot_count": 0, "data_length": 3, "data_dtype": DTYPE}, "slot_count"),
        ({"slot_count": 2, "data_length": -3, "data_dtype": DTYPE}, "data_length"),
        ({"slot_count": 2, "data_length": 3, "data_dtype": {"x": "float99"}}, "data_dtype"),
        ({"data_length": 3, "data_dtype": DTYPE}, "slot_count"),
        ({"slot_count": 2, "data_dtype": DTYPE}, "data_length"),
        ({"slot_count": 2, "data_length": 3}, "data_dtype"),
    ],
)
def test_bad_setup(unique_name, setup, key):
    with pytest.raises(ValueError, match=key):
        mimoBuffer.from_setup(unique_name("bad"), setup)


def test_exceptions_hierarchy():
    assert mimocorb2.BufferEndedError is mexc.BufferEndedError
    assert mimocorb2.BufferTimeoutError is mexc.BufferTimeoutError
    assert issubclass(mexc.BufferEndedError, mexc.MimocorbError)
    assert issubclass(mexc.BufferTimeoutError, mexc.MimocorbError)
    assert issubclass(mexc.BufferTimeoutError, TimeoutError)
    assert issubclass(mexc.SharedMemoryError, OSError)
    assert mimocorb2.mimoBuffer is mimoBuffer
    assert mimocorb2.BufferWriter is BufferWriter


def test_stats_initial(buf):
    s = buf.get_stats()
    assert set(s) >= STAT_KEYS
    assert s["event_count"] == 0
    assert s["filled_slots"] == 0.0
    assert s["empty_slots"] == 1.0
    assert s["flush_event_received"] is False
    assert s["forced_shutdown"] is False
    assert s["paused"] is False
    assert s["paused_count"] == 0
    assert s["overwritten"] == 0
    assert s["lost"] == 0
    assert s["rate"] == 0.0
    assert s["average_deadtime"] == 0.0


def test_stats_fractions(buf):
    w = BufferWriter(buf)
    write(w, 1)
    s = buf.get_stats()
    assert s["event_count"] == 1
    assert s["filled_slots"] == pytest.approx(0.25)
    assert s["empty_slots"] == pytest.approx(0.75)
    with w as (_, data):
        data["x"] = 2
        # a slot being written is neither filled nor empty
        s = buf.get_stats()
        assert s["filled_slots"] == pytest.approx(0.25)
        assert s["empty_slots"] == pytest.approx(0.5)
    r = BufferReader(buf)
    assert read_x(r) == 1
    s = buf.get_stats()
    assert s["event_count"] == 2
    assert s["filled_slots"] == pytest.approx(0.25)
    assert s["empty_slots"] == pytest.approx(0.75)


def test_stats_rate(unique_name):
    b = mimoBuffer(unique_name("rate"), 64, 1, DTYPE)
    w = BufferWriter(b)
    r = BufferReader(b)
    b.get_stats()  # starts the rate window
    t0 = time.monotonic()
    for i in range(50):
        write(w, i)
        assert read_x(r) == i
    time.sleep(0.55)
    rate = b.get_stats()["rate"]
    dt = time.monotonic() - t0
    assert 50 / (dt + 0.2) < rate <= 50 / 0.5


def test_interface_attributes(buf):
    for endpoint in (BufferWriter(buf), BufferReader(buf), BufferObserver(buf)):
        assert endpoint.buffer is buf
        assert endpoint.name == buf.name
        assert endpoint.slot_count == buf.slot_count
        assert endpoint.data_example.dtype == buf.data_dtype
        assert endpoint.data_example.shape == (buf.data_length,)
        assert endpoint.metadata_example.dtype == buf.metadata_dtype
        assert endpoint.metadata_example.shape == (1,)
        assert endpoint.is_shutdown.value is False
        assert endpoint.get_stats()["event_count"] == 0


@pytest.mark.parametrize("cls", [BufferWriter, BufferReader, BufferObserver])
def test_endpoint_needs_a_buffer(cls):
    with pytest.raises(TypeError):
        cls("not a buffer")


# ----- writing and reading -----


def test_write_read_zero_copy(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf)
    with w as (metadata, data):
        assert metadata.shape == (1,)
        assert metadata.dtype == buf.metadata_dtype
        assert data.shape == (3,)
        assert data.dtype == buf.data_dtype
        data["x"] = [10, 20, 30]
        data["y"] = [0.5, 1.5, 2.5]
        metadata["counter"] = 42
        metadata["timestamp"] = 123.25
        metadata["deadtime"] = 0.125
        w_data = data
    with r as (metadata, data):
        assert np.shares_memory(data, w_data)  # the very same slot memory, no copy
        assert list(data["x"]) == [10, 20, 30]
        assert list(data["y"]) == [0.5, 1.5, 2.5]
        assert metadata["counter"][0] == 42
        assert metadata["timestamp"][0] == 123.25
        assert metadata["deadtime"][0] == 0.125
        data["x"][0] = 11  # writes through the reader view land in the slot too
        assert w_data["x"][0] == 11


def test_in_order_many_events(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf)
    out = []
    for i in range(100):
        write(w, i)
        if i % 4 == 3:
            out += [read_x(r) for _ in range(4)]
    assert out == list(range(100))


def test_reusable_context_managers(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf)
    for round_ in range(3):
        for i in range(4):
            write(w, 10 * round_ + i)
        assert [read_x(r) for _ in range(4)] == [10 * round_ + i for i in range(4)]


def test_nested_writer_use_is_refused(buf):
    w = BufferWriter(buf)
    # the outer block holds a slot; entering the writer again inside it is refused
    with w, pytest.raises(mimocorb2.SlotReleasedError), w:
        pass
    assert buf.get_stats()["event_count"] == 1


def test_raising_writer_body_publishes_nothing(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf, timeout=0.05)
    with pytest.raises(RuntimeError, match="boom"), w as (_, data):
        data["x"] = 666
        raise RuntimeError("boom")
    s = buf.get_stats()
    assert s["event_count"] == 0
    assert s["empty_slots"] == 1.0
    assert s["filled_slots"] == 0.0
    with pytest.raises(mimocorb2.BufferTimeoutError):
        read_x(r)
    write(w, 7)
    assert read_x(r) == 7
    with pytest.raises(mimocorb2.BufferTimeoutError):
        read_x(r)


def test_raising_reader_body_returns_slot(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf, timeout=0.05)
    write(w, 1)
    write(w, 2)
    with pytest.raises(KeyError), r:
        raise KeyError("x")
    assert buf.get_stats()["empty_slots"] == pytest.approx(0.75)
    assert read_x(r) == 2


def test_reader_timeout(buf):
    r = BufferReader(buf, timeout=0.05)
    t0 = time.monotonic()
    with pytest.raises(mimocorb2.BufferTimeoutError) as info, r:
        pass
    dt = time.monotonic() - t0
    assert isinstance(info.value, TimeoutError)
    assert 0.04 <= dt < 2.0


def test_writer_timeout_on_full_buffer(buf):
    w = BufferWriter(buf, timeout=0.05)
    for i in range(buf.slot_count):
        write(w, i)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as info, w:
        pass
    dt = time.monotonic() - t0
    assert isinstance(info.value, mimocorb2.BufferTimeoutError)
    assert 0.04 <= dt < 2.0
    assert buf.get_stats()["event_count"] == buf.slot_count
    assert read_x(BufferReader(buf)) == 0
    write(w, 99)  # a slot is free again


def test_negative_timeout_rejected(buf):
    with pytest.raises(ValueError, match="timeout"), BufferReader(buf, timeout=-1.0):
        pass


def _free_one_slot_later(b: mimoBuffer, delay: float) -> threading.Thread:
    def late_reader():
        time.sleep(delay)
        with BufferReader(b) as (_, data):
            assert data["x"][0] == 0

    t = threading.Thread(target=late_reader)
    t.start()
    return t


def test_blocked_writer_wakes_when_reader_frees_slot(unique_name):
    b = mimoBuffer(unique_name("wake"), 1, 1, DTYPE)
    w = BufferWriter(b, timeout=5)
    write(w, 0)
    t = _free_one_slot_later(b, 0.3)
    t0 = time.monotonic()
    write(w, 1)
    waited = time.monotonic() - t0
    t.join(5)
    assert not t.is_alive()
    assert 0.25 < waited < 2.0
    assert read_x(BufferReader(b, timeout=1)) == 1


def test_deadtime_of_blocked_writer(unique_name):
    b = mimoBuffer(unique_name("dt"), 1, 1, DTYPE)
    w = BufferWriter(b, timeout=5, stamp=True)
    write(w, 0)
    t = _free_one_slot_later(b, 0.3)
    write(w, 1)
    t.join(5)
    assert not t.is_alive()
    with BufferReader(b, timeout=1) as (metadata, data):
        assert data["x"][0] == 1
        # the writer spent ~0.3 s of the ~0.3 s since its previous event waiting for a slot
        assert 0.7 < metadata["deadtime"][0] <= 1.0
    assert 0.0 < b.get_stats()["average_deadtime"] <= 1.0


# ----- ending the buffer -----


def test_writer_flush_ends_after_all_writers(buf):
    w1 = BufferWriter(buf)
    w2 = BufferWriter(buf)
    r = BufferReader(buf, timeout=0.05)
    write(w1, 1)
    write(w2, 2)
    w1.send_flush_event()
    w1.send_flush_event()  # idempotent: does not count as the second writer
    assert not buf.get_stats()["flush_event_received"]
    assert not r.is_shutdown.value
    write(w2, 3)  # the buffer still accepts events of the other writer
    assert [read_x(r) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(mimocorb2.BufferTimeoutError):
        read_x(r)  # not ended: a reader waits instead of getting the end
    write(w2, 4)
    w2.send_flush_event()
    s = buf.get_stats()
    assert s["flush_event_received"] is True
    assert s["forced_shutdown"] is False
    assert r.is_shutdown.value is True
    assert buf.flush_event_received
    assert read_x(r) == 4  # committed events are still delivered
    assert read_x(r) is None
    assert read_x(r) is None  # and the end stays
    assert read_x(BufferReader(buf)) is None  # for every reader
    with pytest.raises(mimocorb2.BufferEndedError), w2:
        pass
    with pytest.raises(mimocorb2.BufferEndedError), BufferWriter(buf):
        pass


def test_forced_end(buf):
    w1 = BufferWriter(buf)
    w2 = BufferWriter(buf)
    r = BufferReader(buf, timeout=0.05)
    write(w1, 1)
    write(w2, 2)
    buf.send_flush_event()
    s = buf.get_stats()
    assert s["flush_event_received"] is True
    assert s["forced_shutdown"] is True
    assert w1.is_shutdown.value is True
    with pytest.raises(mimocorb2.BufferEndedError), w1:
        pass
    with pytest.raises(mexc.BufferEndedError) as info, w2:
        pass
    assert isinstance(info.value, mexc.MimocorbError)
    assert [read_x(r), read_x(r)] == [1, 2]
    assert read_x(r) is None
    assert read_x(r) is None
    assert buf.get_stats()["event_count"] == 2
    assert buf.get_stats()["empty_slots"] == 1.0


def test_shutdown_buffer_alias_forces_end(buf):
    r = BufferReader(buf, timeout=0.05)
    r.shutdown_buffer()
    assert buf.get_stats()["forced_shutdown"] is True
    assert read_x(r) is None


def test_forced_end_while_writing_refuses_the_event(buf):
    w = BufferWriter(buf)
    r = BufferReader(buf, timeout=0.05)
    write(w, 1)
    with pytest.raises(mimocorb2.BufferEndedError), w as (_, data):
        data["x"] = 2
        buf.send_flush_event()
    assert read_x(r) == 1
    assert read_x(r) is None
    s = buf.get_stats()
    assert s["event_count"] == 1
    assert s["empty_slots"] == 1.0  # the refused slot went back


def test_end_wakes_blocked_reader(buf):
    w = BufferWriter(buf)
    result: list = []

    def blocked_reader():
        t0 = time.monotonic()
        with BufferReader(buf, timeout=5) as (metadata, data):
            result.append((metadata, data, time.monotonic() - t0))

    t = threading.Thread(target=blocked_reader)
    t.start()
    time.sleep(0.2)
    w.send_flush_event()
    t.join(5)
    assert not t.is_alive()
    metadata, data, waited = result[0]
    assert metadata is None
    assert data is None
    assert waited < 2.0


def test_forced_end_wakes_blocked_writer(unique_name):
    b = mimoBuffer(unique_name("blockw"), 1, 1, DTYPE)
    w = BufferWriter(b)
    write(w, 0)
    result: list = []

    def blocked_writer():
        t0 = time.monotonic()
        try:
            with BufferWriter(b, timeout=5):
                pass
        except Exception as e:
            result.append((e, time.monotonic() - t0))

    t = threading.Thread(target=blocked_writer)
    t.start()
    time.sleep(0.2)
    b.send_flush_event()
    t.join(5)
    assert not t.is_alive()
    err, waited = result[0]
    assert isinstance(err, mimocorb2.BufferEndedError)
    assert waited < 2.0
