"""Property-based tests: bad input gives a clear error of the documented type, fast and small.

Hypothesis generates setup documents and YAML texts, ``.mimo`` headers and buffer API
arguments. For each, the code under test either works or raises the documented exception
(:class:`SetupValidationError` / :class:`YamlError`, :class:`MimoFileError`, ``ValueError``
and for valid arguments :class:`BufferTimeoutError` or :class:`SharedMemoryError`)
with a short message, within a time bound and with a bounded memory peak (tracemalloc).

The runs are derandomized (the same examples in every run, no example database) and sized so
that the whole module takes well under a minute on a loaded 2-core machine; set
``MIMOCORB2_PROPERTY_EXAMPLES`` for a longer randomized search.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2._mimo_header import new_header
from mimocorb2._setup import parse_setup
from mimocorb2._yaml_load import YamlError, load_yaml_text
from mimocorb2.exceptions import BufferTimeoutError, SetupValidationError, SharedMemoryError
from mimocorb2.mimo_buffer import BufferObserver, BufferReader, BufferWriter, mimoBuffer
from mimocorb2.mimo_file import MAGIC, MimoFileError, MimoReader

# MIMOCORB2_PROPERTY_EXAMPLES=5000 runs a longer, randomized search (not derandomized).
DEEP_SEARCH = os.environ.get("MIMOCORB2_PROPERTY_EXAMPLES")
EXAMPLES = int(DEEP_SEARCH or 100)
SECONDS = 5.0  # per example, generous for a loaded machine; typical examples take milliseconds
HANG_SECONDS = 20.0  # an example still running then is interrupted
PEAK_BYTES = 50 * 1024 * 1024

PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,  # timed below with a bound that tolerates a loaded machine
    derandomize=not DEEP_SEARCH,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class HangError(Exception):
    """An example did not finish within HANG_SECONDS."""


def _hang(signum: int, frame: Any) -> None:
    raise HangError(f"no answer within {HANG_SECONDS} s: the call hangs")


@contextlib.contextmanager
def bounded(seconds: float = SECONDS, peak: int = PEAK_BYTES) -> Iterator[None]:
    """Fails if the block takes longer than ``seconds`` or allocates more than ``peak``.

    A block still running after HANG_SECONDS is interrupted (SIGALRM) with HangError, in
    every run of the example: hypothesis replays a failing example while shrinking, and
    pytest-timeout's single alarm would leave such a replay hanging.
    """
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    old_handler = signal.signal(signal.SIGALRM, _hang)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay:  # pytest-timeout's alarm, less the time spent here
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - elapsed, 0.001), old_interval)
        used = tracemalloc.get_traced_memory()[1] - base
        if not tracing:
            tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    assert used < peak, f"allocated {used / 1e6:.1f} MB"


def check_message(error: BaseException, limit: int = 20_000) -> None:
    """A clear message: present, bounded, no traceback text."""
    text = str(error)
    assert text.strip()
    assert len(text) < limit, len(text)
    assert "Traceback (most recent call last)" not in text


# ---- values a setup might hold ---------------------------------------------------------------

BIG_INTS = st.sampled_from([0, -1, 2**20, 2**20 + 1, 2**31, 2**32, 2**40, 2**63, 2**64, 10**30])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    BIG_INTS,
    st.just(5000).map(lambda digits: 10**digits),  # no repr: 'int exceeds the limit'
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "\0", "../x", "a" * 5000, "float32", "V2147483647", "S0", "O", "no"]),
    st.binary(max_size=10),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
NAMES = st.one_of(
    st.sampled_from(["raw", "out", "a.b-c_1", "../x", "a\0b", ".", "..", "", " ", "x" * 300]),
    st.text(max_size=12),
    st.integers(),
)
DTYPE_NAMES = st.sampled_from(
    ["float32", "int16", "f8", "S10", "V2147483647", "U0", "O", "i9", "<f4", "bogus"]
)


def maybe(strategy: st.SearchStrategy[Any], other: st.SearchStrategy[Any] = VALUES) -> Any:
    """Mostly a plausible value, sometimes anything."""
    return st.one_of(strategy, strategy, other)


@st.composite
def buffer_entries(draw: st.DrawFn) -> Any:
    entry: dict[Any, Any] = {
        "slot_count": draw(maybe(st.integers(1, 64) | BIG_INTS)),
        "data_length": draw(maybe(st.integers(1, 64) | BIG_INTS)),
        "data_dtype": draw(
            maybe(st.dictionaries(st.text(max_size=6), DTYPE_NAMES, min_size=1, max_size=3))
        ),
    }
    if draw(st.booleans()):
        entry[draw(st.sampled_from(["overwrite", "slots", "x"]))] = draw(VALUES)
    return draw(st.one_of(st.just(entry), st.just(entry), VALUES))


@st.composite
def worker_entries(draw: st.DrawFn, buffers: list[Any]) -> Any:
    buffer_names = st.sampled_from(buffers) if buffers else NAMES
    entry: dict[Any, Any] = {
        "function": draw(
            maybe(st.sampled_from(["exporters.drain", "nope.nothing", "x", "a." + "b" * 5000]))
        ),
        "sources": draw(maybe(st.lists(buffer_names, max_size=2))),
    }
    for key, strategy in (
        ("sinks", st.lists(buffer_names, max_size=2)),
        ("observes", st.lists(buffer_names, max_size=1)),
        ("number_of_processes", st.integers(1, 4) | BIG_INTS),
        ("max_restarts", st.integers(0, 5) | BIG_INTS),
        ("restart", st.sampled_from(["no", "on-failure", False])),
        ("config", st.dictionaries(st.text(max_size=5), SCALARS, max_size=3)),
        ("file", st.sampled_from(["missing.py", "a" * 5000, "a\0.py", "/proc/self/mem"])),
    ):
        if draw(st.integers(0, 3)) == 0:
            entry[key] = draw(maybe(strategy))
    return draw(st.one_of(st.just(entry), st.just(entry), st.just(entry), VALUES))


@st.composite
def setups(draw: st.DrawFn) -> Any:
    buffers = draw(st.dictionaries(NAMES, buffer_entries(), max_size=3))
    names = [n for n in buffers if isinstance(n, str)]
    workers = draw(st.dictionaries(NAMES, worker_entries(names), max_size=3))
    setup: dict[Any, Any] = {"Buffers": buffers, "Workers": workers}
    for key, strategy in (
        ("target_directory", st.sampled_from(["runs", "t" * 5000, "a\0b", "/proc/self/mem"])),
        ("base_config", st.sampled_from(["c" * 5000, "missing.yaml", {"a": 1}, "/proc/self/mem"])),
        ("Options", VALUES),
        ("unknown", VALUES),
    ):
        if draw(st.integers(0, 3)) == 0:
            setup[key] = draw(maybe(strategy))
    if draw(st.integers(0, 5)) == 0:
        del setup[draw(st.sampled_from(["Buffers", "Workers"]))]
    return draw(st.one_of(st.just(setup), st.just(setup), st.just(setup), VALUES))


@PROPERTY
@given(setup=setups())
def test_setup_documents(setup: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    setup_dir = tmp_path_factory.getbasetemp()
    with bounded():
        try:
            parse_setup(setup, setup_dir, "s.yaml")
        except SetupValidationError as e:
            check_message(e)
            assert e.errors and all(len(p) < 1500 for p in e.errors), e.errors


# ---- YAML texts ------------------------------------------------------------------------------


def _bomb(levels: int) -> str:
    text = "b0_template: &b0 [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, levels + 1):
        text += f"b{i}_template: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]\n"
    return text


@st.composite
def yaml_texts(draw: st.DrawFn) -> str:
    """A setup document as YAML, with an alias bomb, deep nesting or damage mixed in."""
    setup = draw(setups())
    try:
        text = yaml.safe_dump(setup, allow_unicode=draw(st.booleans()))
    except (yaml.YAMLError, ValueError):
        text = "Buffers: {}\n"
    kind = draw(st.sampled_from(["plain", "bomb", "deep", "cut", "noise", "merge"]))
    if kind == "bomb":
        levels = draw(st.integers(1, 9))
        key = draw(st.sampled_from(["slot_count", "data_length", "function", "config"]))
        text = _bomb(levels) + f"Buffers:\n  raw: {{{key}: *b{levels}}}\n"
    elif kind == "deep":
        depth = draw(st.integers(1, 3000))
        text += "deep_template: " + "[" * depth + "]" * depth + "\n"
    elif kind == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif kind == "noise":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=10)) + text[at:]
    elif kind == "merge":
        text += "m0_template: &m0 {a: 1}\n" + "".join(
            f"m{i}_template: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 5)}]}}\n"
            for i in range(1, draw(st.integers(1, 15)))
        )
    return text


@PROPERTY
@given(text=yaml_texts())
def test_yaml_texts(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    setup_dir = tmp_path_factory.getbasetemp()
    with bounded():
        try:
            data = load_yaml_text(text, "s.yaml")
        except YamlError as e:
            check_message(e)
            return
        try:
            parse_setup(data, setup_dir, "s.yaml")
        except SetupValidationError as e:
            check_message(e)


@PROPERTY
@given(text=st.text(max_size=200))
def test_any_text_is_yaml_or_a_yaml_error(text: str) -> None:
    with bounded():
        try:
            load_yaml_text(text, "s.yaml")
        except YamlError as e:
            check_message(e)


# ---- .mimo headers ---------------------------------------------------------------------------

MIMO_DT = np.dtype([("ch1", "<f4"), ("ch2", "<i2")])
DESCRS = st.one_of(
    st.sampled_from(
        [
            [["x", "|V2147483647"], ["y", "<f4"]],
            [["x", "|V2147483647"]],
            [["x", "<f4", [65536, 65536]]],
            [["counter", "<i8"], ["timestamp", "<f8"], ["deadtime", "<f8"]],
            [["count", "<i8"], ["timestamp", "<f8"], ["deadtime", "<f8"]],
            [["x", "|O"]],
            [["x", "|V0"]],
            "<f4",
            [],
        ]
    ),
    st.lists(
        st.tuples(st.text(max_size=4), st.sampled_from(["<f4", "|u1", "<i8", "|S3", "x", ""])).map(
            list
        ),
        max_size=3,
    ),
)
HEADER_KEYS = [
    "format",
    "version",
    "data_dtype",
    "data_length",
    "data_size",
    "metadata_dtype",
    "metadata_size",
    "record_size",
    "record_layout",
    "created",
    "source",
    "writer",
    "attrs",
]


@st.composite
def mimo_files(draw: st.DrawFn) -> bytes:
    """The bytes of a ``.mimo`` file with a mutated header, body and footer."""
    length = draw(st.integers(1, 4))
    header = new_header(MIMO_DT, length, length * MIMO_DT.itemsize + 24, "raw", {"a": 1})
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*HEADER_KEYS, "extra"]))
        action = draw(st.sampled_from(["value", "descr", "delete"]))
        if action == "delete":
            header.pop(key, None)
        else:
            header[key] = draw(DESCRS if action == "descr" else VALUES)
    try:
        text = json.dumps(header).encode()
    except (TypeError, ValueError):
        text = b"{}"
    kind = draw(st.sampled_from(["plain", "deep", "bigint", "cut", "flip", "size"]))
    if kind == "deep":
        depth = draw(st.integers(30, 5000))
        text = text[:-1] + b', "d": ' + b"[" * depth + b"]" * depth + b"}"
    elif kind == "bigint":
        text = text[:-1] + b', "n": ' + b"9" * draw(st.integers(4000, 6000)) + b"}"
    elif kind == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif kind == "flip" and text:
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + bytes([draw(st.integers(0, 255))]) + text[at + 1 :]
    size = len(text) if kind != "size" else draw(st.integers(0, 2**32 - 1))
    body = b"\0" * draw(st.integers(0, 3)) * (length * MIMO_DT.itemsize + 24)
    body += draw(st.binary(max_size=40))
    return MAGIC + struct.pack("<I", size) + text + body


@PROPERTY
@given(raw=mimo_files())
def test_mimo_headers(raw: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("mimo", numbered=True) / "f.mimo"
    path.write_bytes(raw)
    with bounded():
        try:
            with MimoReader(path, allow_truncated=True) as reader:
                data, metadata = reader.read_all()
                assert len(data) == len(metadata) == len(reader)
                assert metadata.dtype == METADATA_DTYPE
        except MimoFileError as e:
            check_message(e, limit=2000)


# ---- buffer API arguments --------------------------------------------------------------------

GEOMETRY = st.one_of(
    st.integers(-2, 64),
    BIG_INTS,
    st.floats(allow_nan=True),
    st.sampled_from([True, None, "8", 2**1000]),
)
TIMEOUTS = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    BIG_INTS,
    st.sampled_from([1e9, 1e9 + 1, 1e19, 1e20, -0.0, "1", True]),
)


@PROPERTY
@given(
    name=st.one_of(st.text(max_size=250), st.sampled_from(["", "a\0b", "x" * 241])),
    slot_count=GEOMETRY,
    data_length=GEOMETRY,
    data_dtype=st.one_of(
        st.dictionaries(st.text(min_size=1, max_size=5), DTYPE_NAMES, min_size=1, max_size=3),
        VALUES,
    ),
)
def test_buffer_geometry(name: Any, slot_count: Any, data_length: Any, data_dtype: Any) -> None:
    # A valid geometry of gigabytes would really be reserved and pre-faulted (and make this
    # process huge for the rest of the suite): the limits are what this test is about.
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (slot_count, data_length)):
        assume(
            not (0 < slot_count <= 2**20 and data_length > 0 and slot_count * data_length > 2**22)
        )
    with bounded():
        try:
            buf = mimoBuffer(name, slot_count, data_length, data_dtype)
        except SharedMemoryError as e:  # a valid geometry larger than the free memory
            check_message(e, limit=1000)
        except ValueError as e:
            check_message(e, limit=1000)
        else:
            assert buf.slot_count == slot_count and buf.data_length == data_length
            buf.send_flush_event()


def new_small_buffer() -> mimoBuffer:
    return mimoBuffer(f"prop_{uuid.uuid4().hex[:8]}", 4, 3, {"x": "f4", "y": "i2"})


@pytest.fixture(scope="module")
def small_buffer() -> Iterator[tuple[mimoBuffer, BufferWriter, BufferReader]]:
    """One buffer with one writer and one reader for all examples (a buffer registers at
    most 256 writers, and a dropped writer stays registered)."""
    buf = new_small_buffer()
    yield buf, BufferWriter(buf), BufferReader(buf)
    buf.send_flush_event()


@PROPERTY
@given(timeout=TIMEOUTS, which=st.integers(0, 6))
def test_buffer_timeouts(
    small_buffer: tuple[mimoBuffer, BufferWriter, BufferReader], timeout: Any, which: int
) -> None:
    buf, writer, reader = small_buffer
    valid = timeout is None or (
        (isinstance(timeout, int | float) and not isinstance(timeout, bool)) and 0 <= timeout <= 1e9
    )
    with bounded():
        try:
            if which == 0:
                fresh = new_small_buffer()  # the writer registers with it
                try:
                    BufferWriter(fresh, timeout=timeout)
                finally:
                    fresh.send_flush_event()
            elif which == 1:
                BufferReader(buf, timeout=timeout)
            elif which == 2:
                BufferObserver(buf, timeout=timeout)
            elif valid and (timeout is None or timeout > 0.01):
                return  # a call that could wait: nothing to check beyond the constructors
            elif which == 3:
                reader.read_batch(1, timeout)
            elif which == 4:
                writer.write_batch(np.zeros((0, 3), buf.data_dtype), timeout=timeout)
            elif which == 5:
                reader.acquire(timeout)
            elif writer.acquire(timeout) is not None:
                writer.abort()
        except BufferTimeoutError:
            assert valid
        except ValueError as e:
            assert not valid, e
            check_message(e, limit=500)
        else:
            assert valid


@PROPERTY
@given(
    shape=st.lists(st.integers(0, 7), max_size=3).map(tuple),
    dtype=st.sampled_from(
        [
            np.dtype([("x", "<f4"), ("y", "<i2")]),
            np.dtype([("x", "<f8"), ("y", "<i4")]),
            np.dtype([("y", "<i2"), ("x", "<f4")]),
            np.dtype([("x", "<f4")]),
            np.dtype("<f4"),
            np.dtype("u1"),
            np.dtype([("x", "S2"), ("y", "<i2")]),
        ]
    ),
    with_metadata=st.booleans(),
    metadata_len=st.integers(0, 8),
)
def test_write_batch_arguments(
    small_buffer: tuple[mimoBuffer, BufferWriter, BufferReader],
    shape: tuple[int, ...],
    dtype: Any,
    with_metadata: bool,
    metadata_len: int,
) -> None:
    _, writer, reader = small_buffer
    data = np.zeros(shape, dtype)
    metadata = np.zeros(metadata_len, METADATA_DTYPE) if with_metadata else None
    with bounded():
        try:
            n = writer.write_batch(data, metadata, timeout=0)
        except ValueError as e:
            check_message(e, limit=500)
            return
        except BufferTimeoutError:
            n = -1  # more events than free slots and nobody reading: fine
        finally:
            while True:  # empty the buffer for the next example
                try:
                    if reader.read_batch(16, 0)[0] is None:
                        break
                except BufferTimeoutError:
                    break
    if n >= 0:
        assert len(shape) == 2 and shape[1] == 3 and n == shape[0]
        assert dtype.names == ("x", "y")
        assert metadata is None or metadata_len == n
