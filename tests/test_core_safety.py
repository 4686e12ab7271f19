"""Safety properties of the buffer core: clear errors, signals, attach checks."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest

import mimocorb2
from mimocorb2.exceptions import LayoutMismatchError, MimocorbError, SharedMemoryError
from mimocorb2.mimo_buffer import BufferReader, BufferWriter, mimoBuffer


def _name(tag: str) -> str:
    return f"{tag}_{uuid.uuid4().hex[:8]}"


def test_too_large_buffer_is_a_clear_error_not_a_crash():
    with pytest.raises(SharedMemoryError) as info:
        mimoBuffer(_name("huge"), slot_count=1024, data_length=2**34, data_dtype={"x": "u1"})
    msg = str(info.value)
    assert "huge" in msg
    assert "reduce slot_count or data_length" in msg
    assert isinstance(info.value, OSError)
    assert isinstance(info.value, MimocorbError)


def test_attach_checks_magic_and_version():
    buf = mimoBuffer(_name("magic"), 4, 8, {"x": "f8"})
    blob = pickle.dumps(buf)
    mem = buf._memory
    saved = mem[:8].copy()
    mem[:8] = 0  # destroy the magic number
    try:
        with pytest.raises(LayoutMismatchError, match="bad magic"):
            pickle.loads(blob)
    finally:
        mem[:8] = saved
    mem[8] ^= 0xFF  # corrupt the layout version
    try:
        with pytest.raises(LayoutMismatchError, match="layout version"):
            pickle.loads(blob)
    finally:
        mem[8] ^= 0xFF
    again = pickle.loads(blob)
    assert again.name == buf.name and again.data_dtype == buf.data_dtype


def test_attached_handle_shares_slots():
    buf = mimoBuffer(_name("share"), 4, 3, {"x": "i4"})
    other = pickle.loads(pickle.dumps(buf))
    with BufferWriter(buf) as (meta, data):
        data["x"] = [5, 6, 7]
        meta["counter"] = 42
    with BufferReader(other, timeout=1) as (meta, data):
        assert list(data["x"]) == [5, 6, 7]
        assert meta["counter"][0] == 42


_BLOCKED_READER = textwrap.dedent(
    """
    import pickle, sys, time
    buf = pickle.loads(bytes.fromhex(sys.argv[1]))
    from mimocorb2.mimo_buffer import BufferReader
    reader = BufferReader(buf)
    print("ready", flush=True)
    t0 = time.monotonic()
    try:
        with reader as (m, d):
            pass
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - t0:.3f}", flush=True)
        sys.exit(3)
    """
)


@pytest.mark.parametrize("role", ["reader", "writer"])
def test_ctrl_c_interrupts_a_blocking_wait(role):
    buf = mimoBuffer(_name("sigint"), 1, 1, {"x": "f4"})
    script = _BLOCKED_READER
    if role == "writer":
        with BufferWriter(buf):
            pass  # the only slot is now filled: a second writer must wait
        script = script.replace("BufferReader", "BufferWriter")
    proc = subprocess.Popen(
        [sys.executable, "-c", script, pickle.dumps(buf).hex()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # let it reach the futex wait
        assert proc.poll() is None, "the wait must block"
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3
    assert "interrupted after" in out


def test_errors_are_exported_from_the_package():
    assert issubclass(mimocorb2.BufferEndedError, mimocorb2.MimocorbError)
    assert issubclass(mimocorb2.BufferTimeoutError, TimeoutError)
    assert mimocorb2.__version__ == mimocorb2._core.__version__


def test_slot_views_are_zero_copy_and_built_once():
    buf = mimoBuffer(_name("views"), 2, 4, {"x": "f4"})
    writer = BufferWriter(buf)
    seen = []
    for _ in range(4):
        with writer as views:
            seen.append(views)
        with BufferReader(buf, timeout=1):
            pass
    # two slots, four events: the same view objects come back
    assert len({id(v) for v in seen}) == 2
    _meta, data = seen[0]
    assert not data.flags.owndata and data.base is not None
    assert np.shares_memory(data, buf._memory)


def test_buffer_views_are_the_writable_views_of_one_slot():
    buf = mimoBuffer(_name("bufviews"), 2, 3, {"x": "i4"})
    meta, data = buf.views(1)
    assert buf.views(1)[1] is data
    assert meta.dtype.itemsize == mimocorb2._core.METADATA_SIZE
    writer = BufferWriter(buf)
    slot = writer.acquire(1)
    buf.views(slot)[1]["x"] = [7, 8, 9]
    writer.commit(True)
    with BufferReader(buf, timeout=1) as (meta, data):
        assert list(data["x"]) == [7, 8, 9]
        assert meta["counter"][0] == 0
    trash = buf.views(mimocorb2._core.TRASH)
    assert not np.shares_memory(trash[1], buf._memory)
    for bad in (2, -1, "0"):
        with pytest.raises(IndexError, match="no slot"):
            buf.views(bad)


def test_core_endpoints_refuse_views_of_another_length():
    buf = mimoBuffer(_name("badviews"), 2, 1, {"x": "i8"})
    with pytest.raises(ValueError, match="one entry per slot"):
        mimocorb2._core.Writer(buf.core, [buf.views(0)])


@pytest.mark.parametrize("bad", [1e20, float("inf"), float("nan"), -1.0, 2e9])
def test_core_endpoints_refuse_impossible_timeouts_without_a_panic(bad):
    """The native classes themselves (not only the Python wrappers) give ValueError."""
    buf = mimoBuffer(f"timeouts-{uuid.uuid4().hex[:8]}", 2, 1, {"x": "i8"})
    views = [buf.views(slot) for slot in range(buf.slot_count)]
    for cls in (mimocorb2._core.Reader, mimocorb2._core.Writer):
        with pytest.raises(ValueError, match="timeout"):
            cls(buf.core, views, bad)
    reader = mimocorb2._core.Reader(buf.core, views, None)
    with pytest.raises(ValueError, match="timeout"):
        reader.acquire(bad)
