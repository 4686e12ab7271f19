"""mimocorb2.worker_templates: the Filter and Processor templates and their result checks."""

from __future__ import annotations

import numpy as np
import pytest
from template_test_helpers import LENGTH, drain, fill, make_io, xs

from mimocorb2.worker_templates import (
    Filter,
    Processor,
    UfuncError,
)

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
