"""Impossible buffer API arguments raise ValueError naming buffer and key; no panic, no overflow.

Regression tests of issue 12 (buffer API): huge geometries, timeouts that would overflow the
core's clock, ``write_batch`` shapes and dtypes, attaching with a wrong ``data_length``, and
writer views that stay writable after their ``with`` block.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mimocorb2 import _core
from mimocorb2._limits import MAX_SLOTS, MAX_TIMEOUT
from mimocorb2.exceptions import LayoutMismatchError
from mimocorb2.mimo_buffer import (
    BufferObserver,
    BufferReader,
    BufferWriter,
    _attach,
    mimoBuffer,
)

DTYPE = {"x": "f4"}


@pytest.fixture
def buf(unique_name: Callable[[str], str]) -> mimoBuffer:
    return mimoBuffer(unique_name("args"), 8, 3, DTYPE)


# ---- geometry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slot_count", "data_length", "key"),
    [
        (2**32, 3, "slot_count"),
        (2**64, 3, "slot_count"),
        (MAX_SLOTS + 1, 3, "slot_count"),
        (4, 10**30, "data_length"),
        (4, 2**64, "data_length"),
        (4, 2**40, "data_length"),
        (np.int64(2**40), 3, "slot_count"),
    ],
)
def test_huge_geometry_is_a_value_error(
    unique_name: Callable[[str], str], slot_count: int, data_length: int, key: str
) -> None:
    name = unique_name("huge")
    with pytest.raises(ValueError, match=key) as info:
        mimoBuffer(name, slot_count, data_length, DTYPE)
    assert name in str(info.value) and "limit" in str(info.value)
    assert not isinstance(info.value, OverflowError)


def test_python_limit_matches_the_core(unique_name: Callable[[str], str]) -> None:
    with pytest.raises(ValueError, match="slot_count"):
        _core.Buffer.create(unique_name("core"), MAX_SLOTS + 1, 4, '[["x", "<f4"]]', False)


@pytest.mark.parametrize("name", ["", "a\0b", "x" * 241, "ä" * 121, 5, None])
def test_bad_buffer_names(name: Any) -> None:
    with pytest.raises(ValueError, match="buffer name"):
        mimoBuffer(name, 4, 1, DTYPE)


def test_dtype_larger_than_numpy_holds(unique_name: Callable[[str], str]) -> None:
    with pytest.raises(ValueError, match="larger than numpy can describe"):
        mimoBuffer(unique_name("wrap"), 4, 1, {"a": "V2147483647", "b": "f4"})


# ---- timeouts ------------------------------------------------------------------------------

BAD_TIMEOUTS = [1e20, 1e300, MAX_TIMEOUT * 2, 10**400, -1, -1e-9, float("nan"), float("inf"), "1"]


def _calls(buf: mimoBuffer) -> dict[str, Callable[[Any], Any]]:
    writer = BufferWriter(buf)
    reader = BufferReader(buf)
    return {
        "BufferWriter": lambda t: BufferWriter(buf, timeout=t),
        "BufferReader": lambda t: BufferReader(buf, timeout=t),
        "BufferObserver": lambda t: BufferObserver(buf, timeout=t),
        "Writer.acquire": writer.acquire,
        "Reader.acquire": reader.acquire,
        "read_batch": lambda t: reader.read_batch(2, t),
        "write_batch": lambda t: writer.write_batch(np.zeros((1, 3), buf.data_dtype), timeout=t),
    }


@pytest.mark.parametrize("timeout", BAD_TIMEOUTS, ids=str)
def test_impossible_timeouts_are_value_errors(buf: mimoBuffer, timeout: Any) -> None:
    for call_name, call in _calls(buf).items():
        try:
            call(timeout)
        except ValueError as e:
            assert "timeout" in str(e) and buf.name in str(e), (call_name, e)
        except BaseException as e:  # a PanicException is a BaseException
            pytest.fail(f"{call_name}({timeout!r}) raised {type(e).__name__}: {e}")
        else:
            pytest.fail(f"{call_name}({timeout!r}) accepted the timeout")


def test_huge_timeout_in_a_subprocess_prints_no_rust_backtrace() -> None:
    code = textwrap.dedent(
        """
        import uuid
        from mimocorb2.mimo_buffer import BufferReader, mimoBuffer
        buf = mimoBuffer("t" + uuid.uuid4().hex[:8], 4, 1, {"x": "f4"})
        try:
            BufferReader(buf, timeout=1e20)
        except ValueError as e:
            print("ValueError", e)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.startswith("ValueError") and "1e+20" in out.stdout
    assert "panicked" not in out.stderr and "PanicException" not in out.stderr


@pytest.mark.parametrize("timeout", [None, 0, 0.0, 1, 2.5, np.float32(0.5), MAX_TIMEOUT])
def test_good_timeouts(buf: mimoBuffer, timeout: Any) -> None:
    writer = BufferWriter(buf, timeout=timeout)
    assert writer.timeout == (None if timeout is None else float(timeout))
    BufferReader(buf, timeout=timeout)
    BufferObserver(buf, timeout=timeout)


def test_zero_timeout_times_out(buf: mimoBuffer) -> None:
    from mimocorb2.exceptions import BufferTimeoutError

    with pytest.raises(BufferTimeoutError), BufferReader(buf, timeout=0):
        pass


# ---- write_batch ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ((2, 6), "(k, 3)"),
        ((6,), "(k, 3)"),
        ((2, 3, 1), "(k, 3)"),
        ((3, 2), "(k, 3)"),
        ((), "(k, 3)"),
    ],
)
def test_write_batch_wrong_shape(buf: mimoBuffer, shape: tuple[int, ...], words: str) -> None:
    writer = BufferWriter(buf)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        writer.write_batch(np.zeros(shape, buf.data_dtype))
    assert buf.get_stats()["event_count"] == 0


@pytest.mark.parametrize(
    "dtype",
    [np.float32, np.float64, np.dtype([("y", "f4")]), np.dtype([("x", "S4")])],
    ids=str,
)
def test_write_batch_wrong_dtype(buf: mimoBuffer, dtype: Any) -> None:
    writer = BufferWriter(buf)
    with pytest.raises(ValueError, match="dtype"):
        writer.write_batch(np.zeros((2, 3), dtype))
    assert buf.get_stats()["event_count"] == 0


def test_write_batch_of_no_events(buf: mimoBuffer) -> None:
    writer = BufferWriter(buf)
    assert writer.write_batch(np.zeros((0, 3), buf.data_dtype)) == 0
    assert (
        writer.write_batch(np.zeros((0, 3), buf.data_dtype), np.zeros(0, buf.metadata_dtype)) == 0
    )
    assert buf.get_stats()["event_count"] == 0


def test_write_batch_converts_same_fields(buf: mimoBuffer) -> None:
    writer, reader = BufferWriter(buf), BufferReader(buf)
    data = np.zeros((2, 3), [("x", "<f8")])
    data["x"] = [[1, 2, 3], [4, 5, 6]]
    assert writer.write_batch(data) == 2
    _, got = reader.read_batch(5)
    assert got["x"].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_write_batch_one_dimensional_for_length_one(unique_name: Callable[[str], str]) -> None:
    buf = mimoBuffer(unique_name("one"), 8, 1, DTYPE)
    writer, reader = BufferWriter(buf), BufferReader(buf)
    assert writer.write_batch(np.zeros(4, buf.data_dtype)) == 4
    _, got = reader.read_batch(8)
    assert got.shape == (4, 1)


def test_write_batch_wrong_metadata(buf: mimoBuffer) -> None:
    writer = BufferWriter(buf)
    data = np.zeros((2, 3), buf.data_dtype)
    with pytest.raises(ValueError, match=r"metadata must have the shape \(2,\)"):
        writer.write_batch(data, np.zeros(3, buf.metadata_dtype))
    with pytest.raises(ValueError, match="metadata must have the dtype"):
        writer.write_batch(data, np.zeros(2, [("a", "f8")]))
    assert buf.get_stats()["event_count"] == 0


def test_read_batch_max_events(buf: mimoBuffer) -> None:
    reader = BufferReader(buf)
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="max_events"):
            reader.read_batch(bad)
    BufferWriter(buf).write_batch(np.zeros((2, 3), buf.data_dtype))
    metadata, data = reader.read_batch(2**62)  # no huge allocation: at most slot_count
    assert len(metadata) == 2 and data.shape == (2, 3)


# ---- attaching -----------------------------------------------------------------------------


@pytest.mark.parametrize("data_length", [1, 2, 4, 10**30, 0, -3, 2.0])
def test_attach_with_a_wrong_data_length(buf: mimoBuffer, data_length: Any) -> None:
    _, (pid, fd, instance, _) = buf.__reduce__()
    with pytest.raises(LayoutMismatchError, match="data_length") as info:
        _attach(pid, fd, instance, data_length)
    assert buf.name in str(info.value) and "3 elements" in str(info.value)


def test_attach_with_the_right_data_length(buf: mimoBuffer) -> None:
    copy = pickle.loads(pickle.dumps(buf))
    assert copy.data_length == 3 and copy.data_dtype == buf.data_dtype


# ---- writer views --------------------------------------------------------------------------


def test_writer_views_are_read_only_after_the_block(buf: mimoBuffer) -> None:
    writer, reader = BufferWriter(buf), BufferReader(buf)
    with writer as (metadata, data):
        data["x"] = [1, 2, 3]
        metadata["counter"] = 7
    with pytest.raises(ValueError, match="read-only"):
        data["x"] = 99
    with pytest.raises(ValueError, match="read-only"):
        metadata["counter"] = 99
    with reader as (_, got):
        assert got["x"].tolist() == [1, 2, 3]


def test_writer_views_are_writable_again_in_the_next_block(buf: mimoBuffer) -> None:
    writer = BufferWriter(buf)
    kept = []
    for i in range(2 * buf.slot_count):
        with writer as (metadata, data):
            assert data.flags.writeable and metadata.flags.writeable
            data["x"] = i
            kept.append(data)
        BufferReader(buf).read_batch(1)
    assert not any(d.flags.writeable for d in kept)


def test_writer_views_read_only_after_an_error(buf: mimoBuffer) -> None:
    writer = BufferWriter(buf)
    with pytest.raises(RuntimeError), writer as (_, data):
        raise RuntimeError("boom")
    assert not data.flags.writeable
    assert buf.get_stats()["event_count"] == 0


def test_paused_writer_views_are_read_only_after_the_block(buf: mimoBuffer) -> None:
    writer = BufferWriter(buf)
    buf.pause()
    with writer as (_, data):
        data["x"] = 5
    buf.resume()
    assert not data.flags.writeable


def test_reader_views_in_the_same_process_stay_writable(buf: mimoBuffer) -> None:
    """A reader's views are separate from the writer's: the writer's exit leaves them alone."""
    writer, reader = BufferWriter(buf), BufferReader(buf)
    for _ in range(buf.slot_count):
        with writer as (_, data):
            data["x"] = 1
        with reader as (_, got):
            got["x"] += 1
            assert got.flags.writeable


def test_two_writers_in_one_process(buf: mimoBuffer) -> None:
    a, b = BufferWriter(buf), BufferWriter(buf)
    with a as (_, da), b as (_, db):
        da["x"] = 1
        db["x"] = 2
    assert not da.flags.writeable and not db.flags.writeable
