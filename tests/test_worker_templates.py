"""mimocorb2.worker_templates: the templates in one process, and a chain of spawn processes."""

from __future__ import annotations

import functools
import multiprocessing as mp
import pickle
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mimocorb2.mimo_buffer import BufferReader, BufferWriter, mimoBuffer
from mimocorb2.mimo_worker import BufferIO, run_worker
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

DTYPE = {"x": "<i8", "y": "<f4"}
LENGTH = 4
WAIT_S = 10.0


@pytest.fixture
def make_buffer(unique_name):
    def make(slot_count=32, data_length=LENGTH, dtype=None, prefix="buf"):
        return mimoBuffer(unique_name(prefix), slot_count, data_length, dtype or DTYPE)

    return make


def make_io(name, tmp_path, sources=(), sinks=(), observes=(), config=None) -> BufferIO:
    return BufferIO(
        name, list(sources), list(sinks), list(observes), config or {}, tmp_path, tmp_path
    )


def fill(buf: mimoBuffer, values, end=True) -> None:
    """Writes one event per value (x = value everywhere, counter = value), then ends."""
    w = BufferWriter(buf, timeout=WAIT_S)
    for v in values:
        with w as (metadata, data):
            data["x"] = v
            data["y"] = v / 2
            metadata["counter"] = v
            metadata["timestamp"] = 1000.0 + v
            metadata["deadtime"] = 0.25
    if end:
        w.send_flush_event()


def drain(buf: mimoBuffer) -> list[tuple[np.ndarray, np.ndarray]]:
    """Reads every event (copies of metadata and data) until the end of the stream."""
    r = BufferReader(buf, timeout=WAIT_S)
    out = []
    while True:
        with r as (metadata, data):
            if data is None:
                return out
            out.append((metadata.copy(), data.copy()))


def xs(events) -> list[int]:
    return [int(d["x"][0]) for _, d in events]


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


# ----- Filter -----


def run_filter(make_buffer, tmp_path, ufunc, n_sinks=1, n=12):
    src = make_buffer(32)
    sinks = [make_buffer(32) for _ in range(n_sinks)]
    fill(src, range(n))
    filt = Filter(make_io("filt", tmp_path, sources=[src], sinks=sinks))
    assert filt.data_example.shape == (LENGTH,)
    filt(ufunc)
    assert all(s.flush_event_received for s in sinks)
    return [drain(s) for s in sinks]


@pytest.mark.parametrize(
    "ufunc",
    [
        lambda data: int(data["x"][0]) % 2 == 0,  # Python bool
        lambda data: np.all(data["x"] % 2 == 0),  # numpy bool (B13)
        lambda data: None if data["x"][0] % 2 else True,
        lambda data: int(data["x"][0] % 2 == 0),
        lambda data: [data["x"][0] % 2 == 0],
        lambda data: np.array([data["x"][0] % 2 == 0]),
    ],
)
def test_filter_single_result(make_buffer, tmp_path, ufunc):
    (events,) = run_filter(make_buffer, tmp_path, ufunc)
    assert xs(events) == [0, 2, 4, 6, 8, 10]
    for m, d in events:  # metadata forwarded unchanged
        assert int(m["counter"][0]) == int(d["x"][0])
        assert float(m["timestamp"][0]) == 1000.0 + int(d["x"][0])
        assert float(m["deadtime"][0]) == 0.25
        assert np.all(d["y"] == d["x"] / 2)


def test_filter_true_copies_to_all_sinks(make_buffer, tmp_path):
    results = run_filter(make_buffer, tmp_path, lambda data: data["x"][0] < 5, n_sinks=3)
    assert [xs(e) for e in results] == [[0, 1, 2, 3, 4]] * 3


@pytest.mark.parametrize("kind", [list, tuple, np.array])
def test_filter_list_selects_sinks(make_buffer, tmp_path, kind):
    def ufunc(data):
        x = int(data["x"][0])
        return kind([x % 2 == 0, x % 3 == 0, np.False_])

    a, b, c = run_filter(make_buffer, tmp_path, ufunc, n_sinks=3)
    assert xs(a) == [0, 2, 4, 6, 8, 10]
    assert xs(b) == [0, 3, 6, 9]
    assert c == []  # B13: sinks marked false receive nothing


def test_filter_all_false_list_drops(make_buffer, tmp_path):
    a, b = run_filter(make_buffer, tmp_path, lambda data: [False, np.False_], n_sinks=2)
    assert a == []
    assert b == []


def test_filter_wrong_length_list(make_buffer, tmp_path):
    src = make_buffer(8)
    sinks = [make_buffer(8), make_buffer(8)]
    fill(src, range(3))
    filt = Filter(make_io("filt", tmp_path, sources=[src], sinks=sinks))
    with pytest.raises(UfuncError, match="3 entries for 2 sink") as info:
        filt(lambda data: [True, True, False])
    assert info.value.ufunc_output == [True, True, False]
    assert np.array_equal(info.value.ufunc_input["x"], [0] * LENGTH)
    assert all(s.flush_event_received for s in sinks)
    assert xs(drain(src)) == [1, 2]  # no draining in the error path, the slot was released


@pytest.mark.parametrize("result", ["yes", 1.5, {"a": 1}, [[1, 2], True], np.ones((1, 3))])
def test_filter_unusable_result(make_buffer, tmp_path, result):
    src = make_buffer(8)
    sink = make_buffer(8)
    fill(src, range(2))
    filt = Filter(make_io("filt", tmp_path, sources=[src], sinks=[sink]))
    with pytest.raises(UfuncError, match="bool") as info:
        filt(lambda data: result)
    assert info.value.ufunc_output is result
    assert sink.flush_event_received


def test_filter_ufunc_raises(make_buffer, tmp_path):
    src = make_buffer(8)
    sink = make_buffer(8)
    fill(src, range(5))

    def ufunc(data):
        if data["x"][0] == 2:
            raise ZeroDivisionError("boom")
        return True

    filt = Filter(make_io("filt", tmp_path, sources=[src], sinks=[sink]))
    with pytest.raises(UfuncError, match="boom") as info:
        filt(ufunc)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert sink.flush_event_received
    assert xs(drain(sink)) == [0, 1]


def test_filter_discards_when_every_sink_was_shut_down(make_buffer, tmp_path):
    src = make_buffer(16)
    sink = make_buffer(16)
    fill(src, range(10))

    def ufunc(data):
        if data["x"][0] == 3:
            sink.send_flush_event()
        return True

    filt = Filter(make_io("filt", tmp_path, sources=[src], sinks=[sink]))
    filt(ufunc)
    assert xs(drain(sink)) == [0, 1, 2]
    assert drain(src) == []  # the source was drained to its end


# ----- Processor -----


def test_processor_results(make_buffer, tmp_path):
    src = make_buffer(32)
    peaks = make_buffer(32, 1, {"peak": "<f8", "x": "<i8"})
    copies = make_buffer(32)
    fill(src, range(10))
    proc = Processor(make_io("proc", tmp_path, sources=[src], sinks=[peaks, copies]))
    assert proc.data_example.shape == (LENGTH,)
    out = proc.io.data_out_examples[0].copy()

    def ufunc(data):
        x = int(data["x"][0])
        if x % 5 == 0:
            return None  # drop
        out["peak"] = x * 1.5
        out["x"] = x
        if x % 2:
            return [out, None]  # partial
        doubled = data.copy()
        doubled["x"] *= 2
        return (out, doubled)

    proc(ufunc)
    assert peaks.flush_event_received
    assert copies.flush_event_received
    p = drain(peaks)
    c = drain(copies)
    assert [int(d["x"][0]) for _, d in p] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert [float(d["peak"][0]) for _, d in p] == [1.5 * x for x in [1, 2, 3, 4, 6, 7, 8, 9]]
    assert [int(m["counter"][0]) for m, _ in p] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert [int(d["x"][0]) for _, d in c] == [4, 8, 12, 16]
    for m, d in c:
        assert int(m["counter"][0]) * 2 == int(d["x"][0])
        assert float(m["timestamp"][0]) == 1000.0 + int(m["counter"][0])
        assert float(m["deadtime"][0]) == 0.25
        assert np.all(d["y"] == int(m["counter"][0]) / 2)


def test_processor_accepts_assignable_values(make_buffer, tmp_path):
    src = make_buffer(8)
    sink = make_buffer(8, 1, {"s": "<f4"})
    fill(src, range(3))
    proc = Processor(make_io("proc", tmp_path, sources=[src], sinks=[sink]))
    proc(lambda data: [float(data["y"].sum())])
    assert [float(d["s"][0]) for _, d in drain(sink)] == [0.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("result", "match"),
    [
        (np.zeros(1), "list with one result per sink"),
        ([1.0, 2.0], "2 entries"),
        ([np.zeros(7)], "does not fit sink"),
    ],
)
def test_processor_bad_results(make_buffer, tmp_path, result, match):
    src = make_buffer(8)
    sink = make_buffer(8, 1, {"s": "<f4"})
    fill(src, range(3))
    proc = Processor(make_io("proc", tmp_path, sources=[src], sinks=[sink]))
    with pytest.raises(UfuncError, match=match) as info:
        proc(lambda data: result)
    assert info.value.ufunc_output is result
    assert sink.flush_event_received
    assert drain(sink) == []


def test_processor_not_callable(make_buffer, tmp_path):
    src = make_buffer(8)
    sink = make_buffer(8)
    fill(src, range(1))
    proc = Processor(make_io("proc", tmp_path, sources=[src], sinks=[sink]))
    with pytest.raises(UfuncError, match="needs a function"):  # B20: not a bare RuntimeError
        proc("not a function")
    assert sink.flush_event_received


def test_processor_ufunc_raises(make_buffer, tmp_path):
    src = make_buffer(8)
    sink = make_buffer(8)
    fill(src, range(3))
    proc = Processor(make_io("proc", tmp_path, sources=[src], sinks=[sink]))
    with pytest.raises(UfuncError) as info:
        proc(lambda data: [data] if data["x"][0] < 1 else 1 / 0)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert info.value.ufunc_input["x"][0] == 1
    assert xs(drain(sink)) == [0]


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


# ----- a chain of spawn processes -----

N_CHAIN = 3000


def chain_importer(io):
    importer = Importer(io)
    n = io["n_events"]

    def ufunc():
        for i in range(n):
            data = importer.data_example.copy()
            data["x"] = i
            data["y"] = i / 2
            yield data
        yield None

    importer(ufunc)


def chain_filter(io):
    Filter(io)(lambda data: data["x"][0] % io["modulo"] == 0)


def crashing_filter(io):
    def ufunc(data):
        if data["x"][0] == io["crash_at"]:
            raise RuntimeError("filter crashed")
        return True

    Filter(io)(ufunc)


def chain_processor(io):
    out = io.data_out_examples[0].copy()

    def ufunc(data):
        out["v"] = data["x"][0] * 10.0
        out["x"] = data["x"][0]
        return [out]

    Processor(io)(ufunc)


def chain_exporter(results, io):
    got = []
    for data, metadata in Exporter(io):
        got.append((int(metadata["counter"][0]), int(data["x"][0]), float(data["v"][0])))
    results.put(got)


def chain_main(function, name, setup, buffers, setup_dir, results=None):
    """Process target: builds the BufferIO in the child, runs the worker, exits with its code."""
    if results is not None:
        function = functools.partial(function, results)
    io = BufferIO.from_setup(name, setup, setup_dir, setup_dir, buffers)
    sys.exit(run_worker(function, io))


class Pipeline:
    """Worker processes (spawn) over shared buffers; a results queue for the exporter."""

    def __init__(self, buffers, tmp_path):
        self.ctx = mp.get_context("spawn")
        self.buffers = buffers
        self.setup_dir = Path(tmp_path)
        self.results = self.ctx.Queue()
        self.procs = []

    def start(self, name, function, **setup):
        results = self.results if function is chain_exporter else None
        p = self.ctx.Process(
            target=chain_main,
            args=(function, name, setup, self.buffers, self.setup_dir, results),
            name=name,
        )
        p.start()
        self.procs.append(p)
        return p

    def join(self, timeout):
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
        alive = [p.name for p in self.procs if p.is_alive()]
        assert not alive, f"processes still alive: {alive}"

    def close(self):
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(WAIT_S)
        self.results.close()
        self.results.join_thread()


@pytest.mark.timeout(120)
def test_chain_in_spawn_processes(make_buffer, tmp_path):
    buffers = {
        "raw": make_buffer(64, prefix="raw"),
        "kept": make_buffer(64, prefix="kept"),
        "result": make_buffer(64, 1, {"x": "<i8", "v": "<f8"}, prefix="result"),
    }
    buffers["kept"].set_expected_writers(2)  # two filter processes
    pipe = Pipeline(buffers, tmp_path)
    try:
        pipe.start("export", chain_exporter, sources=["result"])
        pipe.start("process", chain_processor, sources=["kept"], sinks=["result"])
        for i in range(2):
            pipe.start(
                f"filter_{i}", chain_filter, sources=["raw"], sinks=["kept"], config={"modulo": 3}
            )
        pipe.start("import", chain_importer, sinks=["raw"], config={"n_events": N_CHAIN})
        got = pipe.results.get(timeout=90)
        pipe.join(30)
    finally:
        pipe.close()
    assert [p.exitcode for p in pipe.procs] == [0] * 5
    expected = list(range(0, N_CHAIN, 3))
    assert len(got) == len(expected)
    assert sorted(x for _, x, _ in got) == expected
    for counter, x, v in got:
        assert counter == x  # the importer's stamped counter travels with the event
        assert v == x * 10.0
    for b in buffers.values():
        assert b.flush_event_received
        assert not b.get_stats()["forced_shutdown"]


@pytest.mark.timeout(120)
def test_crashed_worker_drains_pipeline(make_buffer, tmp_path):
    """B4: a crashing filter ends its sinks, so downstream workers finish."""
    buffers = {
        "raw": make_buffer(16, prefix="raw"),
        "kept": make_buffer(16, prefix="kept"),
        "result": make_buffer(16, 1, {"x": "<i8", "v": "<f8"}, prefix="result"),
    }
    pipe = Pipeline(buffers, tmp_path)
    try:
        pipe.start("export", chain_exporter, sources=["result"])
        pipe.start("process", chain_processor, sources=["kept"], sinks=["result"])
        crasher = pipe.start(
            "filter", crashing_filter, sources=["raw"], sinks=["kept"], config={"crash_at": 50}
        )
        importer = pipe.start("import", chain_importer, sinks=["raw"], config={"n_events": 10**9})
        got = pipe.results.get(timeout=90)  # downstream ended although the filter crashed
        crasher.join(30)
        assert crasher.exitcode == 1
        assert importer.is_alive()  # blocked on its full sink: nobody reads it any more
        buffers["raw"].send_flush_event()  # what the control does: shut the roots down
        pipe.join(30)
    finally:
        pipe.close()
    assert [x for _, x, _ in got] == list(range(50))
    assert [p.exitcode for p in pipe.procs] == [0, 0, 1, 0]  # the importer stopped quietly


def test_failing_template_keeps_sinks_open_for_a_restart(make_buffer, tmp_path):
    src = make_buffer(8)
    sink = make_buffer(8)
    fill(src, range(4))
    io = make_io("filt", tmp_path, sources=[src], sinks=[sink])
    io.shutdown_sinks_on_error = False
    filt = Filter(io)

    def crash_at_2(data):
        if data["x"][0] == 2:
            raise ValueError("crash")
        return True

    with pytest.raises(UfuncError):
        filt(crash_at_2)
    assert not sink.flush_event_received  # the replacement process writes on
    filt(lambda data: True)  # the rest of the events, then a normal end
    assert sink.flush_event_received
    assert xs(drain(sink)) == [0, 1, 3]


def test_exporter_break_is_a_normal_end(make_buffer, tmp_path):
    src = make_buffer(8)
    sink = make_buffer(8)
    fill(src, range(3))
    io = make_io("exp", tmp_path, sources=[src], sinks=[sink])
    io.shutdown_sinks_on_error = False
    for _data, _metadata in Exporter(io):
        break
    assert sink.flush_event_received


def test_result_checks_return_problems_without_side_effects():
    from mimocorb2._template_helpers import (
        _filter_targets,
        _processor_result_problem,
        _ResultProblem,
    )

    assert list(_filter_targets(2, True)) == [0, 1]
    assert _filter_targets(2, [0, 1]) == [1]
    short = _filter_targets(2, [True])
    assert isinstance(short, _ResultProblem) and "1 entries for 2 sink(s)" in short.message
    odd = _filter_targets(2, [np.zeros(3), 1])
    assert isinstance(odd, _ResultProblem) and isinstance(odd.exception, ValueError)
    assert _processor_result_problem([1, 2], 2) is None
    assert "got 1 entries" in _processor_result_problem([1], 2).message
