"""mimocorb2.mimo_file: the .mimo format v2, its reader and writer."""

from __future__ import annotations

import gc
import json
import pickle
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2.mimo_file import (
    FOOTER_MAGIC,
    FOOTER_SIZE,
    MAGIC,
    MimoFileError,
    MimoFormatError,
    MimoReader,
    MimoTruncatedError,
    MimoWriter,
    convert,
    open_mimo,
    record_dtype,
)

LAYOUTS = [
    pytest.param(np.dtype([("x", "<f4")]), 1, id="one-field-length-1"),
    pytest.param(np.dtype([("a", "<f4"), ("b", "<i2"), ("c", "<u8")]), 1, id="fields-length-1"),
    pytest.param(np.dtype([("ch1", "<f4"), ("ch2", "<i2")]), 7, id="fields-length-7"),
    pytest.param(np.dtype([("v", "<f8", (3,)), ("n", "<i4")]), 2, id="subarray-field"),
    pytest.param(np.dtype([("s", [("p", "<i2"), ("q", "<f8")]), ("t", "u1")]), 3, id="nested"),
]


def events(dt: np.dtype, length: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n events with distinct, deterministic bytes, and their metadata."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=n * length * dt.itemsize, dtype=np.uint8)
    data = raw.view(dt).reshape(n, length).copy()
    meta = np.zeros(n, METADATA_DTYPE)
    meta["counter"] = np.arange(n)
    meta["timestamp"] = 1_700_000_000.0 + 0.01 * np.arange(n)
    meta["deadtime"] = 0.125
    return data, meta


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def write_file(path: Path, dt=None, length=4, n=10) -> tuple:
    dt = np.dtype([("x", "<f4")]) if dt is None else dt
    data, meta = events(dt, length, n)
    with MimoWriter(path, dt, length, source="buf") as w:
        w.write_many(data, meta)
    return data, meta


def info(path: Path) -> tuple[int, bool]:
    """(record count, clean) of a file."""
    with MimoReader(path) as r:
        return len(r), r.clean


def parse_raw(path: Path) -> tuple[dict, int, bytes]:
    """Parses the header with struct + json only (no mimocorb2): language-neutral."""
    raw = path.read_bytes()
    assert raw[:16] == MAGIC
    (size,) = struct.unpack("<I", raw[16:20])
    header = json.loads(raw[20 : 20 + size].decode("utf-8"))
    return header, 20 + size, raw


# ----- round trip -----


@pytest.mark.parametrize(("dt", "length"), LAYOUTS)
def test_round_trip(tmp_path, dt, length):
    path = tmp_path / "rt.mimo"
    data, meta = events(dt, length, 25)
    with MimoWriter(path, dt, length, source="src") as w:
        for i in range(10):  # event by event, metadata as an array
            w.write(data[i], meta[i : i + 1])
        for i in range(10, 12):  # metadata as a tuple / structured scalar
            w.write(data[i], tuple(meta[i].tolist()))
        w.write(data[12], meta[12])
        w.write_many(data[13:], meta[13:])
        assert len(w) == 25
    with MimoReader(path) as r:
        assert len(r) == 25 and r.clean and r.truncated_bytes == 0
        assert r.data_dtype == dt and r.data_length == length
        assert r.metadata_dtype == METADATA_DTYPE
        assert r.header["source"] == "src" and r.header["version"] == 2
        d, m = r.read_all()
        assert d.shape == (25, length) and m.shape == (25,)
        assert same_bytes(d, data) and same_bytes(m, meta)
        dm, mm = r.read_all(mmap=True)
        assert same_bytes(dm, data) and same_bytes(mm, meta)
        items = list(r)
        assert len(items) == 25
        for i, (di, mi) in enumerate(items):
            assert di.shape == (length,) and mi.shape == (1,)
            assert same_bytes(di, data[i]) and same_bytes(mi, meta[i : i + 1])
        d, m = r.read(5, 3)
        assert same_bytes(d, data[5:8]) and list(m["counter"]) == [5, 6, 7]
        d, _ = r.read(-2)
        assert same_bytes(d, data[-2:])


def test_large_events_and_chunked_iteration(tmp_path):
    dt = np.dtype([("ch1", "<f4"), ("ch2", "<f4")])
    length = 8192  # 64 KiB events: the direct (writev) path
    data, meta = events(dt, length, 200, seed=3)
    path = tmp_path / "big.mimo"
    with MimoWriter(path, dt, length) as w:
        for i in range(150):
            w.write(data[i], meta[i : i + 1])
        w.write_many(data[150:], meta[150:])
    with MimoReader(path) as r:
        d, m = r.read_all()
        assert same_bytes(d, data) and same_bytes(m, meta)
        blocks = list(r.chunks(records=64))
        assert [len(b[1]) for b in blocks] == [64, 64, 64, 8]
        assert sum(1 for _ in r) == 200


def test_write_stamps_metadata_and_converts_data(tmp_path):
    path = tmp_path / "s.mimo"
    with MimoWriter(path, {"x": "f8", "y": "i4"}, 2) as w:
        w.write([(1.5, 1), (2.5, 2)])
        w.write(np.zeros(2, w.data_dtype))
        w.write_many(np.ones((3, 2), w.data_dtype))
    with MimoReader(path) as r:
        d, m = r.read_all()
    assert list(m["counter"]) == [0, 1, 2, 3, 4]
    assert np.all(m["timestamp"] > 1e9) and np.all(m["deadtime"] == 0)
    assert d["x"][0].tolist() == [1.5, 2.5] and d["y"][0].tolist() == [1, 2]


def test_write_rejects_bad_events(tmp_path):
    with MimoWriter(tmp_path / "bad.mimo", {"x": "f4"}, 4) as w:
        with pytest.raises(ValueError, match="4 elements"):
            w.write(np.zeros(3, w.data_dtype))
        with pytest.raises(ValueError, match="shape"):
            w.write_many(np.zeros((2, 3), w.data_dtype))
        with pytest.raises(ValueError, match="metadata"):
            w.write_many(np.zeros((2, 4), w.data_dtype), np.zeros(3, METADATA_DTYPE))
        with pytest.raises(ValueError, match="metadata"):
            w.write(np.zeros(4, w.data_dtype), np.zeros(2, METADATA_DTYPE))
        w.write(np.zeros(4, w.data_dtype))
    with pytest.raises(MimoFileError, match="closed"):
        w.write(np.zeros(4, w.data_dtype))
    w.close()  # idempotent
    assert info(tmp_path / "bad.mimo") == (1, True)
    with pytest.raises(ValueError, match="data_length"):
        MimoWriter(tmp_path / "x.mimo", {"x": "f4"}, 0)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mimo"
    with MimoWriter(path, {"x": "f4"}, 3):
        pass
    with MimoReader(path) as r:
        assert len(r) == 0 and r.clean
        d, m = r.read_all()
        assert d.shape == (0, 3) and m.shape == (0,)
        assert r.read_all(mmap=True)[0].shape == (0, 3)
        assert list(r) == []


# ----- layout on disk -----


def test_layout_is_language_neutral(tmp_path):
    dt = np.dtype([("ch1", "<f4"), ("ch2", "<i2")])
    path = tmp_path / "l.mimo"
    data, meta = write_file(path, dt, 5, 7)
    header, offset, raw = parse_raw(path)
    assert offset % 64 == 0
    assert header["format"] == "mimocorb2" and header["version"] == 2
    assert header["data_dtype"] == [["ch1", "<f4"], ["ch2", "<i2"]]
    assert header["metadata_dtype"] == [
        ["counter", "<i8"],
        ["timestamp", "<f8"],
        ["deadtime", "<f8"],
    ]
    assert header["data_length"] == 5 and header["source"] == "buf"
    assert header["record_size"] == 5 * 6 + 24 and header["record_layout"] == ["data", "metadata"]
    assert "created" in header
    assert b"pickle" not in raw[:offset] and raw[0] != 0x80
    records = raw[offset : offset + 7 * header["record_size"]]
    rec = np.frombuffer(records, dtype=record_dtype(dt, 5))
    assert same_bytes(rec["data"], data) and same_bytes(rec["metadata"], meta)
    # record 0: data bytes first, then the 24 metadata bytes
    assert records[:30] == data[0].tobytes() and records[30:54] == meta[0].tobytes()
    footer = raw[-FOOTER_SIZE:]
    magic, count, data_offset, header_crc, crc = struct.unpack("<8sQQII", footer)
    assert magic == FOOTER_MAGIC and count == 7 and data_offset == offset
    assert header_crc == zlib.crc32(raw[:offset]) and crc == zlib.crc32(footer[:28])
    assert len(raw) == offset + 7 * header["record_size"] + FOOTER_SIZE


def test_footer_count_is_used_without_reading_records(tmp_path, monkeypatch):
    path = tmp_path / "f.mimo"
    write_file(path, n=1000)

    def no_reading(*args, **kwargs):
        raise AssertionError("records were read")

    monkeypatch.setattr(MimoReader, "_read_into", no_reading)
    with MimoReader(path) as r:
        assert r.clean and len(r) == 1000


def test_footer_with_wrong_count_is_not_trusted(tmp_path):
    path = tmp_path / "f.mimo"
    write_file(path, np.dtype([("x", "<f4")]), 2, 10)  # 32-byte records: the footer fits one
    raw = bytearray(path.read_bytes())
    head = struct.pack("<8sQQI", FOOTER_MAGIC, 11, *struct.unpack("<QI", raw[-24:-12]))
    raw[-32:] = head + struct.pack("<I", zlib.crc32(head))
    path.write_bytes(bytes(raw))
    with MimoReader(path) as r:  # count inconsistent with the size: read as a file without footer
        assert not r.clean and len(r) == 11


# ----- crashes and truncation -----


def test_file_without_footer_is_readable(tmp_path):
    dt = np.dtype([("x", "<f4"), ("y", "<i8")])
    data, meta = events(dt, 3, 50)
    path = tmp_path / "live.mimo"
    w = MimoWriter(path, dt, 3)
    for i in range(30):
        w.write(data[i], meta[i : i + 1])
    w.flush()
    snapshot = tmp_path / "crash.mimo"
    snapshot.write_bytes(path.read_bytes())  # the state a crash would leave behind
    with MimoReader(snapshot) as r:
        assert not r.clean and len(r) == 30
        d, m = r.read_all()
        assert same_bytes(d, data[:30]) and same_bytes(m, meta[:30])
    with MimoReader(path) as r:  # a file still being written reads the same way
        assert not r.clean and len(r) == 30
    w.write_many(data[30:], meta[30:])
    w.close()
    with MimoReader(path) as r:
        assert r.clean and len(r) == 50


def test_killed_writer_process_leaves_a_readable_file(tmp_path):
    path = tmp_path / "killed.mimo"
    code = textwrap.dedent(
        f"""
        import os, numpy as np
        from mimocorb2.mimo_file import MimoWriter
        w = MimoWriter({str(path)!r}, {{"x": "f4"}}, 16, flush_interval=0.0)
        for i in range(100):
            w.write(np.full(16, i, dtype=w.data_dtype))
        os._exit(3)  # no close, no footer
        """
    )
    r = subprocess.run([sys.executable, "-c", code], timeout=30, capture_output=True)
    assert r.returncode == 3, r.stderr
    with MimoReader(path) as reader:
        assert not reader.clean and len(reader) == 100
        d, m = reader.read_all()
    assert np.array_equal(d["x"][:, 0], np.arange(100)) and list(m["counter"]) == list(range(100))


def test_truncated_record_is_detected(tmp_path):
    path = tmp_path / "t.mimo"
    data, _ = write_file(path, np.dtype([("x", "<f4")]), 10, 20)  # 64-byte records
    raw = path.read_bytes()
    path.write_bytes(raw[: -FOOTER_SIZE - 25])  # no footer, 39 of 64 bytes of record 19
    with pytest.raises(MimoTruncatedError) as e:
        MimoReader(path)
    message = str(e.value)
    assert str(path) in message and "record 19" in message and "allow_truncated" in message
    with MimoReader(path, allow_truncated=True) as r:
        assert len(r) == 19 and r.truncated_bytes == 39 and not r.clean
        d, _ = r.read_all()
        assert same_bytes(d, data[:19])


# ----- damaged and foreign files -----


def _damage(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    header, offset, _ = parse_raw(path)
    if how == "magic":
        raw[:4] = b"JUNK"
    elif how == "json":
        raw[25:30] = b"\xff\xfe{[:"
    elif how == "length":
        raw[16:20] = struct.pack("<I", 0xFFFFFFF0)
    elif how in ("missing-key", "version", "record-size", "object-dtype"):
        if how == "missing-key":
            del header["data_dtype"]
        elif how == "version":
            header["version"] = 3
        elif how == "record-size":
            header["record_size"] += 1
        else:
            header["data_dtype"] = [["x", "|O"]]
        text = json.dumps(header).encode()
        assert len(text) < offset - 20
        raw[20:offset] = text + b" " * (offset - 20 - len(text))
    elif how == "short":
        raw = raw[:10]
    elif how == "empty":
        raw = bytearray()
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("magic", "not a mimocorb2 .mimo file"),
        ("json", "JSON header cannot be parsed"),
        ("length", "damaged header"),
        ("missing-key", "'data_dtype' is missing"),
        ("version", "newer"),
        ("record-size", "record_size"),
        ("object-dtype", "damaged header"),
        ("short", "too short"),
        ("empty", "too short"),
    ],
)
def test_damaged_header_gives_a_clear_error(tmp_path, how, words):
    path = tmp_path / "d.mimo"
    write_file(path)
    _damage(path, how)
    with pytest.raises(MimoFormatError) as e:
        MimoReader(path)
    assert str(path) in str(e.value) and words in str(e.value)


def write_reference_file(path: Path, dt: np.dtype, length: int, data, meta) -> None:
    """A .mimo file as the reference implementation writes it (pickled dict, then records)."""
    with open(path, "wb") as f:
        pickle.dump(
            {
                "version": 1,
                "header": "This is a mimoCoRB file",
                "data_dtype": dt,
                "data_length": length,
                "metadata_dtype": METADATA_DTYPE,
                "metadata_length": 1,
            },
            f,
        )
    with open(path, "ab") as f:
        for i in range(len(data)):
            f.write(data[i].tobytes())
            f.write(meta[i : i + 1].tobytes())


class _Marker:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_reference_pickle_file_is_refused_unless_trusted(tmp_path):
    dt = np.dtype([("ch1", "<f4"), ("ch2", "<f4")])
    data, meta = events(dt, 6, 12)
    path = tmp_path / "ref.mimo"
    write_reference_file(path, dt, 6, data, meta)
    assert path.read_bytes()[0] == 0x80
    with pytest.raises(MimoFormatError) as e:
        MimoReader(path)
    assert str(path) in str(e.value) and "pickle" in str(e.value) and "trust=True" in str(e.value)
    with MimoReader(path, trust=True) as r:
        assert len(r) == 12 and r.version == 1 and not r.clean
        assert r.data_dtype == dt and r.data_length == 6
        d, m = r.read_all()
        assert same_bytes(d, data) and same_bytes(m, meta)
    new = tmp_path / "new.mimo"
    assert convert(path, new, trust=True) == 12
    with MimoReader(new) as r:
        assert r.clean and r.version == 2 and same_bytes(r.read_all()[0], data)
    with pytest.raises(MimoFormatError, match="reference implementation"):
        MimoWriter(path, dt, 6, append=True)


def test_malicious_pickle_is_never_loaded_without_trust(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.mimo"
    path.write_bytes(pickle.dumps({"data_dtype": _Marker(str(marker))}, protocol=4))
    with pytest.raises(MimoFormatError, match="trust"):
        MimoReader(path)
    with pytest.raises(MimoFormatError):
        open_mimo(path)
    assert not marker.exists()


# ----- append, exclusivity, locking -----


def test_append(tmp_path):
    dt = np.dtype([("x", "<i4"), ("y", "<f8")])
    data, meta = events(dt, 3, 9)
    path = tmp_path / "a.mimo"
    with MimoWriter(path, dt, 3, source="first") as w:
        w.write_many(data[:4], meta[:4])
    size_clean = path.stat().st_size
    with MimoWriter(path, dt, 3, append=True) as w:
        assert len(w) == 4
        w.write(data[4], meta[4:5])
        w.write_many(data[5:], meta[5:])
    assert path.stat().st_size == size_clean + 5 * (3 * 12 + 24)
    with MimoReader(path) as r:
        assert r.clean and len(r) == 9 and r.header["source"] == "first"
        d, m = r.read_all()
        assert same_bytes(d, data) and same_bytes(m, meta)
    with open_mimo(path, "a", data_dtype=dt, data_length=3) as w:
        w.write(data[0], meta[0:1])
    assert info(path) == (10, True)


def test_append_checks_layout_and_completeness(tmp_path):
    path = tmp_path / "a.mimo"
    write_file(path, np.dtype([("x", "<f4")]), 4, 5)
    with pytest.raises(MimoFileError, match="cannot append"):
        MimoWriter(path, {"x": "f8"}, 4, append=True)
    with pytest.raises(MimoFileError, match="cannot append"):
        MimoWriter(path, {"x": "f4"}, 5, append=True)
    assert info(path) == (5, True)  # untouched
    raw = path.read_bytes()
    path.write_bytes(raw[:-FOOTER_SIZE])  # crashed writer, whole records: can be continued
    with MimoWriter(path, {"x": "f4"}, 4, append=True) as w:
        w.write(np.zeros(4, w.data_dtype))
    assert info(path) == (6, True)
    path.write_bytes(path.read_bytes()[: -FOOTER_SIZE - 3])  # partial record: refused
    with pytest.raises(MimoTruncatedError):
        MimoWriter(path, {"x": "f4"}, 4, append=True)
    fresh = tmp_path / "fresh.mimo"
    with MimoWriter(fresh, {"x": "f4"}, 4, append=True) as w:  # a missing file is created
        w.write(np.zeros(4, w.data_dtype))
    assert info(fresh) == (1, True)


def test_exclusive_and_second_writer_are_refused(tmp_path):
    path = tmp_path / "x.mimo"
    w = MimoWriter(path, {"x": "f4"}, 2, exclusive=True)
    w.write(np.ones(2, w.data_dtype))
    with pytest.raises(FileExistsError):
        MimoWriter(path, {"x": "f4"}, 2, exclusive=True)
    with pytest.raises(FileExistsError):
        open_mimo(path, "x", data_dtype={"x": "f4"}, data_length=2)
    with pytest.raises(MimoFileError, match="another writer"):
        MimoWriter(path, {"x": "f4"}, 2)  # would replace the file: refused while w holds it
    with pytest.raises(MimoFileError, match="another writer"):
        MimoWriter(path, {"x": "f4"}, 2, append=True)
    w.close()
    with MimoReader(path) as r:
        assert r.clean and len(r) == 1
    with open_mimo(path, "w", data_dtype={"y": "i2"}, data_length=1) as w2:  # now it may
        w2.write(np.zeros(1, w2.data_dtype))
    with MimoReader(path) as r:
        assert r.data_dtype == np.dtype([("y", "<i2")])


def test_open_mimo_rejects_unknown_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        open_mimo(tmp_path / "x.mimo", "rw")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        MimoReader(tmp_path / "nothing.mimo")


def test_unclosed_writer_is_closed_when_collected(tmp_path):
    path = tmp_path / "gc.mimo"
    w = MimoWriter(path, {"x": "f4"}, 2)
    w.write(np.ones(2, w.data_dtype))
    with pytest.warns(ResourceWarning, match="unclosed MimoWriter"):
        del w
        gc.collect()
    assert info(path) == (1, True)
