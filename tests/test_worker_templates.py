"""mimocorb2.worker_templates in one process: errors, setup checks, Importer, Exporter,
Observer and IsAlive.

Filter and Processor are in test_worker_templates_filter_processor.py, a chain of
spawn processes in test_worker_templates_spawn.py.
"""

from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pytest
from template_test_helpers import DTYPE, LENGTH, WAIT_S, drain, fill, make_io, xs

from mimocorb2.mimo_buffer import BufferReader, BufferWriter
from mimocorb2.worker_templates import (
    Exporter,
    Filter,
    Importer,
    IsAlive,
    Observer,
    Processor,
    SetupError,
    UfuncError,
)

# ----- errors -----


class _Spy:
    name = "spy"

    def __init__(self):
        self.calls = 0

    def shutdown_sinks(self):
        self.calls += 1

    def drain_sources(self):
        self.calls += 1


def test_errors_are_plain_exceptions():
    spy = _Spy()
    cause = ValueError("inner")
    e = UfuncError(spy, "went wrong", cause, ufunc_input=[1], ufunc_output=2)
    s = SetupError(spy, "bad setup")
    assert spy.calls == 0  # no side effects in the constructors
    assert isinstance(e, RuntimeError)
    assert isinstance(s, RuntimeError)
    assert str(s) == "worker 'spy': bad setup"
    assert "worker 'spy': went wrong" in str(e)
    assert "ValueError: inner" in str(e)
    assert e.worker_name == "spy"
    assert e.exception is cause
    assert e.ufunc_input == [1]
    assert e.ufunc_output == 2
    assert str(SetupError("named", "msg")) == "worker 'named': msg"


def test_errors_pickle():
    e = UfuncError("w", "msg", ValueError("v"), np.arange(3), threading.Lock())
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is UfuncError
    assert str(back) == str(e)
    assert np.array_equal(back.ufunc_input, np.arange(3))
    assert isinstance(back.ufunc_output, str)  # unpicklable values become their repr
    s = pickle.loads(pickle.dumps(SetupError("w", "m")))
    assert type(s) is SetupError
    assert str(s) == "worker 'w': m"


# ----- setup checks -----


@pytest.mark.parametrize(
    ("template", "counts"),
    [
        (Importer, (0, 0, 0)),
        (Importer, (1, 1, 0)),
        (Importer, (0, 2, 0)),
        (Importer, (0, 1, 1)),
        (Exporter, (0, 0, 0)),
        (Exporter, (2, 0, 0)),
        (Exporter, (1, 0, 1)),
        (Filter, (1, 0, 0)),
        (Filter, (0, 1, 0)),
        (Filter, (1, 1, 1)),
        (Processor, (1, 0, 0)),
        (Processor, (2, 1, 0)),
        (Observer, (0, 0, 0)),
        (Observer, (1, 0, 1)),
        (Observer, (0, 0, 2)),
        (IsAlive, (0, 1, 1)),
        (IsAlive, (0, 0, 0)),
    ],
)
def test_wrong_buffer_counts(make_buffer, tmp_path, template, counts):
    n_src, n_sink, n_obs = counts
    bufs = [make_buffer(8) for _ in range(max(counts))]
    io = make_io("wrong", tmp_path, bufs[:n_src], bufs[:n_sink], bufs[:n_obs])
    with pytest.raises(SetupError, match=rf"worker 'wrong': the {template.__name__} template"):
        template(io)
    io.shutdown_sinks()


@pytest.mark.parametrize("template", [Exporter, Filter])
@pytest.mark.parametrize("layout", [(LENGTH + 1, DTYPE), (LENGTH, {"x": "<i8", "y": "<f8"})])
def test_pass_through_sinks_need_the_source_layout(make_buffer, tmp_path, template, layout):
    src = make_buffer()
    sink = make_buffer(8, *layout)
    io = make_io("layout", tmp_path, [src], [sink])
    with pytest.raises(SetupError, match=sink.name):
        template(io)
    io.shutdown_sinks()


# ----- Importer -----


def test_importer_writes_stamped_events(make_buffer, tmp_path):
    sink = make_buffer(32)
    io = make_io("imp", tmp_path, sinks=[sink])
    importer = Importer(io)
    assert importer.data_example.shape == (LENGTH,)
    assert importer.data_example.dtype == sink.data_dtype
    assert importer.metadata_example.dtype.names == ("counter", "timestamp", "deadtime")
    n = 20

    def ufunc():
        for i in range(n):
            data = importer.data_example.copy()
            data["x"] = i
            data["y"] = np.arange(LENGTH)
            yield data
        yield None
        raise AssertionError("not reached")

    t0 = time.time()
    importer(ufunc)
    t1 = time.time()
    assert importer.counter == n
    assert sink.flush_event_received
    events = drain(sink)
    assert xs(events) == list(range(n))
    counters = [int(m["counter"][0]) for m, _ in events]
    assert counters == list(range(n))
    stamps = [float(m["timestamp"][0]) for m, _ in events]
    assert all(t0 - 0.01 <= t <= t1 + 0.01 for t in stamps)
    assert stamps == sorted(stamps)
    assert all(0.0 <= float(m["deadtime"][0]) <= 1.0 for m, _ in events)
    for _, d in events:
        assert np.array_equal(d["y"], np.arange(LENGTH, dtype="<f4"))


def test_importer_generator_return_ends_normally(make_buffer, tmp_path):
    sink = make_buffer(8)
    importer = Importer(make_io("imp", tmp_path, sinks=[sink]))

    def ufunc():
        for i in range(3):
            yield [(i, 0.5)] * LENGTH  # anything numpy can assign

    importer(ufunc)  # StopIteration is not an error
    assert sink.flush_event_received
    events = drain(sink)
    assert xs(events) == [0, 1, 2]
    assert all(np.all(d["y"] == 0.5) for _, d in events)


def test_importer_generator_error(make_buffer, tmp_path):
    sink = make_buffer(8)
    importer = Importer(make_io("imp", tmp_path, sinks=[sink]))

    def ufunc():
        yield importer.data_example
        raise OSError("device gone")

    with pytest.raises(UfuncError, match="worker 'imp'") as info:
        importer(ufunc)
    assert isinstance(info.value.__cause__, OSError)
    assert isinstance(info.value.exception, OSError)
    assert sink.flush_event_received
    assert len(drain(sink)) == 1


def test_importer_bad_data(make_buffer, tmp_path):
    sink = make_buffer(8)
    importer = Importer(make_io("imp", tmp_path, sinks=[sink]))

    def ufunc():
        yield importer.data_example
        yield np.zeros(LENGTH + 3)

    with pytest.raises(UfuncError, match=sink.name):
        importer(ufunc)
    assert sink.flush_event_received
    assert len(drain(sink)) == 1  # the failed event was not published


@pytest.mark.parametrize("ufunc", [None, 5, lambda: 5])
def test_importer_needs_a_generator(make_buffer, tmp_path, ufunc):
    sink = make_buffer(8)
    importer = Importer(make_io("imp", tmp_path, sinks=[sink]))
    with pytest.raises(UfuncError, match="generator"):
        importer(ufunc)
    assert sink.flush_event_received


def test_importer_stops_quietly_when_sink_is_shut_down(make_buffer, tmp_path):
    sink = make_buffer(64)
    importer = Importer(make_io("imp", tmp_path, sinks=[sink]))
    closed = []

    def ufunc():
        try:
            i = 0
            while True:
                if i == 5:
                    sink.send_flush_event()  # forced end, as the control does for roots
                data = np.zeros(LENGTH, dtype=sink.data_dtype)
                data["x"] = i
                yield data
                i += 1
        finally:
            closed.append(True)

    importer(ufunc)  # no exception
    assert closed == [True]  # the generator was closed
    assert importer.counter == 5
    assert xs(drain(sink)) == [0, 1, 2, 3, 4]


def test_importer_blocked_on_full_sink_wakes_at_shutdown(make_buffer, tmp_path):
    sink = make_buffer(4)
    importer = Importer(make_io("imp", tmp_path, sinks=[sink]))

    def ufunc():
        while True:
            yield importer.data_example

    timer = threading.Timer(0.3, sink.send_flush_event)
    timer.start()
    t0 = time.monotonic()
    try:
        importer(ufunc)
    finally:
        timer.join(WAIT_S)
    assert time.monotonic() - t0 < WAIT_S
    assert importer.counter == 4
    assert len(drain(sink)) == 4


def test_importer_paused_sink_discards(make_buffer, tmp_path):
    sink = make_buffer(4)
    importer = Importer(make_io("imp", tmp_path, sinks=[sink]))
    sink.pause()
    importer(lambda: iter([importer.data_example] * 10))
    assert sink.get_stats()["paused_count"] == 10
    assert drain(sink) == []


# ----- Exporter -----


def test_exporter_yields_data_metadata(make_buffer, tmp_path):
    src = make_buffer(16)
    fill(src, range(10))
    exporter = Exporter(make_io("exp", tmp_path, sources=[src]))
    assert exporter.data_example.shape == (LENGTH,)
    assert exporter.metadata_example.dtype.names == ("counter", "timestamp", "deadtime")
    seen = []
    for data, metadata in exporter:
        assert data.dtype == src.data_dtype
        assert metadata.dtype.names == ("counter", "timestamp", "deadtime")
        assert np.all(data["x"] == metadata["counter"][0])
        seen.append(int(metadata["counter"][0]))
    assert seen == list(range(10))


def test_exporter_copies_to_sinks(make_buffer, tmp_path):
    src = make_buffer(16)
    sinks = [make_buffer(16), make_buffer(16)]
    rng = np.random.default_rng(1)
    w = BufferWriter(src)
    sent = []
    for i in range(12):
        with w as (metadata, data):
            data["x"] = rng.integers(-(2**40), 2**40, LENGTH)
            data["y"] = rng.normal(size=LENGTH)
            metadata["counter"] = i
            metadata["timestamp"] = rng.random()
            metadata["deadtime"] = rng.random()
            sent.append((metadata.copy(), data.copy()))
    w.send_flush_event()
    exporter = Exporter(make_io("exp", tmp_path, sources=[src], sinks=sinks))
    got = [(m.copy(), d.copy()) for d, m in exporter]
    for s in sinks:
        assert s.flush_event_received
        copies = drain(s)
        assert len(copies) == len(sent)
        for (m0, d0), (m1, d1) in zip(sent, copies, strict=True):
            assert m0.tobytes() == m1.tobytes()
            assert d0.tobytes() == d1.tobytes()
    for (m0, d0), (m1, d1) in zip(sent, got, strict=True):
        assert m0.tobytes() == m1.tobytes()
        assert d0.tobytes() == d1.tobytes()


def test_exporter_break_releases_slot_and_flushes(make_buffer, tmp_path):
    src = make_buffer(4)
    sink = make_buffer(4)
    fill(src, range(3))
    exporter = Exporter(make_io("exp", tmp_path, sources=[src], sinks=[sink]))
    for _data, metadata in exporter:
        if metadata["counter"][0] == 1:
            break
    assert sink.flush_event_received
    assert xs(drain(sink)) == [0, 1]
    assert xs(drain(src)) == [2]  # the slot of event 1 was released, event 2 is still there


# ----- Observer, IsAlive -----


def test_observer_yields_copies_and_ends(make_buffer, tmp_path):
    buf = make_buffer(8)
    w = BufferWriter(buf)
    r = BufferReader(buf, timeout=WAIT_S)
    observer = Observer(make_io("obs", tmp_path, observes=[buf]))
    assert observer.data_example.shape == (LENGTH,)

    def put(v):
        with w as (metadata, data):
            data["x"] = v
            metadata["counter"] = v

    gen = observer()
    put(1)
    data, metadata = next(gen)
    assert int(metadata["counter"][0]) == 1
    assert np.all(data["x"] == 1)
    put(2)
    put(3)
    data3, metadata3 = next(gen)
    assert int(metadata3["counter"][0]) == 3  # the newest event
    # the observer took nothing from the reader, and its items are private copies
    for v in (1, 2, 3):
        with r as (m, d):
            assert int(m["counter"][0]) == v
            d["x"] = -1
    put(4)
    data4, _ = next(gen)
    assert np.all(data4["x"] == 4)
    assert np.all(data["x"] == 1)
    assert np.all(data3["x"] == 3)
    w.send_flush_event()
    assert next(gen) == (None, None)
    with pytest.raises(StopIteration):
        next(gen)


def test_observer_ends_while_waiting(make_buffer, tmp_path):
    buf = make_buffer(8)
    w = BufferWriter(buf)
    observer = Observer(make_io("obs", tmp_path, observes=[buf]))
    timer = threading.Timer(0.2, w.send_flush_event)
    timer.start()
    t0 = time.monotonic()
    try:
        items = list(observer())
    finally:
        timer.join(WAIT_S)
    assert items == [(None, None)]
    assert time.monotonic() - t0 < WAIT_S


def test_observer_forced_end(make_buffer, tmp_path):
    buf = make_buffer(8)
    observer = Observer(make_io("obs", tmp_path, observes=[buf]))
    buf.send_flush_event()
    assert list(observer()) == [(None, None)]


def test_is_alive(make_buffer, tmp_path):
    buf = make_buffer(8)
    w = BufferWriter(buf)
    is_alive = IsAlive(make_io("alive", tmp_path, observes=[buf]))
    assert is_alive() is True
    fill(buf, range(2), end=False)
    assert is_alive() is True
    w.send_flush_event()
    assert is_alive() is True  # the writer of fill() is still registered
    buf.send_flush_event()
    assert is_alive() is False


def test_templates_copy_io_attributes(make_buffer, tmp_path):
    buf = make_buffer(8)
    io = make_io("attrs", tmp_path, observes=[buf], config={"k": 1})
    t = IsAlive(io)
    assert t.io is io
    assert t.name == "attrs"
    assert t.read is io.read
    assert t.write is io.write
    assert t.observe is io.observe
    assert t.config is io.config
    assert t.logger is io.logger
    assert t.run_dir == tmp_path
    assert t.setup_dir == tmp_path
    assert t.shutdown_sinks == io.shutdown_sinks


def test_exporter_skips_ended_sink(make_buffer, tmp_path):
    src = make_buffer(8)
    sink = make_buffer(8)
    fill(src, range(4))
    sink.send_flush_event()
    exporter = Exporter(make_io("exp", tmp_path, sources=[src], sinks=[sink]))
    assert [int(m["counter"][0]) for _, m in exporter] == [0, 1, 2, 3]
    assert drain(sink) == []


def test_exporter_break_is_a_normal_end(make_buffer, tmp_path):
    src = make_buffer(8)
    sink = make_buffer(8)
    fill(src, range(3))
    io = make_io("exp", tmp_path, sources=[src], sinks=[sink])
    io.shutdown_sinks_on_error = False
    for _data, _metadata in Exporter(io):
        break
    assert sink.flush_event_received
