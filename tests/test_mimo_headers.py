"""Crafted ``.mimo`` headers: every malformed file is a MimoFileError with a clear message.

Regression tests of issue 12 (``.mimo`` files): deep JSON, dtypes whose size wraps around in
numpy, 5000-digit integers, renamed metadata fields, wrong types of known keys.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2._mimo_header import MAX_HEADER, MAX_JSON_DEPTH, header_block, new_header
from mimocorb2.mimo_file import MAGIC, MimoFileError, MimoFormatError, MimoReader, MimoWriter

DT = np.dtype([("ch1", "<f4"), ("ch2", "<i2")])


def good_header() -> dict[str, Any]:
    return new_header(DT, 4, 4 * DT.itemsize + 24, "raw", {"run": 1})


def write_raw(path: Path, header_text: bytes | str, body: bytes = b"") -> Path:
    """A file with the magic, the given header block and ``body``."""
    text = header_text.encode() if isinstance(header_text, str) else header_text
    path.write_bytes(MAGIC + struct.pack("<I", len(text)) + text + body)
    return path


def write_header(path: Path, header: dict[str, Any], records: int = 2) -> Path:
    return write_raw(path, json.dumps(header), b"\0" * (records * 40))


def refused(path: Path, *words: str) -> str:
    start = time.perf_counter()
    with pytest.raises(MimoFormatError) as info:
        MimoReader(path)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert str(path) in message
    assert len(message) < 600, message
    for word in words:
        assert word in message, (word, message)
    return message


def test_good_header_reads(tmp_path: Path) -> None:
    path = write_header(tmp_path / "a.mimo", good_header(), records=0)
    with MimoReader(path) as r:
        assert r.data_dtype == DT and r.data_length == 4 and len(r) == 0


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 990, 5000, 200_000])
def test_deep_json(tmp_path: Path, depth: int) -> None:
    header = good_header()
    text = json.dumps(header)[:-1] + ', "attrs2": ' + "[" * depth + "]" * depth + "}"
    refused(write_raw(tmp_path / "a.mimo", text), "nested")


def test_deep_json_in_the_dtype(tmp_path: Path) -> None:
    header = good_header()
    text = json.dumps(header).replace(
        '"data_dtype": [', '"data_dtype": [' + "[" * 500 + "]" * 500 + ", ", 1
    )
    refused(write_raw(tmp_path / "a.mimo", text), "nested")


@pytest.mark.parametrize(
    "descr",
    [
        [["x", "|V2147483647"], ["y", "<f4"]],
        [["x", "|V2147483647"], ["y", "|V2147483647"]],
        [["x", "|V2147483647"]],
        [["x", "<f4", [100000, 100000]]],
    ],
)
def test_dtype_larger_than_numpy_holds(tmp_path: Path, descr: Any) -> None:
    header = good_header()
    header["data_dtype"] = descr
    message = refused(write_header(tmp_path / "a.mimo", header), "damaged header")
    assert "data_dtype" in message or "larger" in message


@pytest.mark.parametrize("key", ["data_length", "record_size", "version", "data_size"])
def test_5000_digit_integers(tmp_path: Path, key: str) -> None:
    header = good_header()
    text = json.dumps(header).replace(f'"{key}": {header[key]}', f'"{key}": {"9" * 5000}')
    assert "9" * 5000 in text
    refused(write_raw(tmp_path / "a.mimo", text), "damaged header")


def test_huge_data_length(tmp_path: Path) -> None:
    header = good_header()
    header["data_length"] = 10**30
    header["data_size"] = 10**30 * DT.itemsize
    header["record_size"] = 10**30 * DT.itemsize + 24
    refused(write_header(tmp_path / "a.mimo", header), "larger than the limit")


@pytest.mark.parametrize(
    "metadata",
    [
        [["count", "<i8"], ["timestamp", "<f8"], ["deadtime", "<f8"]],
        [["counter", "<i8"], ["time", "<f8"], ["deadtime", "<f8"]],
        [["counter", ">i8"], ["timestamp", ">f8"], ["deadtime", ">f8"]],
        [["counter", "<i4"], ["timestamp", "<f8"], ["deadtime", "<f8"], ["pad", "|V4"]],
        [["deadtime", "<f8"], ["timestamp", "<f8"], ["counter", "<i8"]],
    ],
    ids=["renamed-counter", "renamed-timestamp", "big-endian", "int32", "reordered"],
)
def test_renamed_metadata_fields(tmp_path: Path, metadata: Any) -> None:
    header = good_header()
    header["metadata_dtype"] = metadata
    refused(write_header(tmp_path / "a.mimo", header), "metadata_dtype", "counter")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("data_dtype", {"x": "f4"}, "data_dtype"),
        ("data_dtype", "not a type", "data_dtype"),
        ("data_dtype", [["x", 5]], "data_dtype"),
        ("data_dtype", [["x"]], "data_dtype"),
        ("data_dtype", [], "data_dtype"),
        ("data_dtype", [["x", "|V0"]], "zero size"),
        ("data_dtype", [["x", "|O"]], "object"),
        ("data_dtype", None, "data_dtype"),
        ("metadata_dtype", "<f8", "metadata_dtype"),
        ("data_length", 0, "data_length"),
        ("data_length", 4.0, "data_length"),
        ("data_length", True, "data_length"),
        ("data_length", "4", "data_length"),
        ("record_size", 64.0, "record_size"),
        ("record_size", "64", "record_size"),
        ("record_layout", ["metadata", "data"], "record_size"),
        ("record_layout", "data", "record_layout"),
        ("data_size", 7, "data_size"),
        ("metadata_size", 8, "metadata_size"),
        ("created", 5, "created"),
        ("source", ["raw"], "source"),
        ("writer", None, "writer"),
        ("attrs", [1, 2], "attrs"),
        ("format", "mimocorb3", "format"),
        ("version", "2", "version"),
        ("version", 1, "unknown format version"),
        ("version", 10**30, "newer"),
    ],
)
def test_wrong_keys(tmp_path: Path, key: str, value: Any, words: str) -> None:
    header = good_header()
    header[key] = value
    refused(write_header(tmp_path / "a.mimo", header), words)


@pytest.mark.parametrize("key", ["data_dtype", "data_length", "metadata_dtype", "record_size"])
def test_missing_required_key(tmp_path: Path, key: str) -> None:
    header = good_header()
    del header[key]
    refused(write_header(tmp_path / "a.mimo", header), f"'{key}' is missing")


@pytest.mark.parametrize("key", ["created", "source", "writer", "attrs", "data_size"])
def test_optional_keys_may_be_missing(tmp_path: Path, key: str) -> None:
    header = good_header()
    del header[key]
    with MimoReader(write_header(tmp_path / "a.mimo", header, records=0)) as r:
        assert r.data_length == 4


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    header = good_header()
    header["future_key"] = {"anything": [1, 2, 3]}
    with MimoReader(write_header(tmp_path / "a.mimo", header, records=0)) as r:
        assert r.header["future_key"] == {"anything": [1, 2, 3]}


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "null",
        "1" * 5000,
        '{"format": "mimocorb2", "version": NaN}',
        '{"format": "mimocorb2", "version": 2, "data_length": Infinity}',
        '{"a": "\\ud800"}',
        "\xff\xfe",
    ],
)
def test_not_an_object_or_strange_json(tmp_path: Path, text: str) -> None:
    refused(write_raw(tmp_path / "a.mimo", text.encode("utf-8", "surrogatepass")))


def test_header_size_beyond_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "a.mimo"
    path.write_bytes(MAGIC + struct.pack("<I", MAX_HEADER + 1) + b" " * (MAX_HEADER + 100))
    refused(path, "damaged header")


def test_header_of_many_small_values_is_bounded(tmp_path: Path) -> None:
    header = good_header()
    header["attrs"] = {"x": [[] for _ in range(MAX_HEADER // 4)]}
    text = json.dumps(header)
    path = write_raw(tmp_path / "a.mimo", text[: MAX_HEADER - 10] + "]]}}")
    refused(path, "damaged header")


def test_writer_refuses_attrs_readers_would_refuse(tmp_path: Path) -> None:
    deep: Any = 1
    for _ in range(MAX_JSON_DEPTH + 1):
        deep = [deep]
    with pytest.raises(ValueError, match="nested more than"):
        MimoWriter(tmp_path / "a.mimo", DT, 4, attrs={"deep": deep})
    with pytest.raises(ValueError, match="more than the limit"):
        MimoWriter(tmp_path / "b.mimo", DT, 4, attrs={"big": "x" * MAX_HEADER})
    with pytest.raises(ValueError, match="nested more than"):
        header_block({"x": deep})


def test_mimo_file_errors_are_value_errors() -> None:
    assert issubclass(MimoFormatError, MimoFileError) and issubclass(MimoFileError, ValueError)


def test_reference_header_with_wrapped_dtype_is_refused(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "ref.mimo"
    with open(path, "wb") as f:
        pickle.dump(
            {
                "data_dtype": np.dtype([("x", "V2147483647"), ("y", "f4")]),
                "data_length": 1,
                "metadata_dtype": METADATA_DTYPE,
            },
            f,
        )
    with pytest.raises(MimoFormatError, match="damaged reference-format header"):
        MimoReader(path, trust=True)
