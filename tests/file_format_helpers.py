"""Shared by the HDF5, Parquet and ROOT tests: events of every dtype kind, reading back.

Every file is read back with the format's own library (h5py, pyarrow, uproot) and compared
byte for byte with what was written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mimocorb2._dtypes import METADATA_DTYPE

h5py = pytest.importorskip("h5py")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
uproot = pytest.importorskip("uproot")


FORMATS = ("hdf5", "parquet", "root")
SUFFIX = {"hdf5": ".h5", "parquet": ".parquet", "root": ".root"}
CHILD_WAIT_S = 20.0

# Every dtype kind the exporters take: integers of each size, floats, bools, fixed strings.
COMMON_FIELDS = [
    ("i1", "i1"),
    ("i2", "<i2"),
    ("i4", "<i4"),
    ("i8", "<i8"),
    ("u1", "u1"),
    ("u2", "<u2"),
    ("u4", "<u4"),
    ("u8", "<u8"),
    ("f4", "<f4"),
    ("f8", "<f8"),
    ("b", "?"),
    ("s", "S6"),
]
EXTRA_FIELDS = {"hdf5": [("h", "<f2"), ("c", "<c16")], "parquet": [("h", "<f2")], "root": []}


def dtype_for(fmt: str) -> np.dtype:
    return np.dtype(COMMON_FIELDS + EXTRA_FIELDS[fmt])


def make_events(dtype: np.dtype, n: int, length: int, seed: int = 1) -> tuple[np.ndarray, ...]:
    """``(metadata, data)``: extremes, NaN, inf, -0.0, strings with inner and trailing NULs."""
    rng = np.random.default_rng(seed)
    data = np.zeros((n, length), dtype)
    for name in dtype.names:
        dt = dtype[name]
        if dt.kind in "iu":
            info = np.iinfo(dt)
            values = rng.integers(info.min, info.max, (n, length), dtype=dt, endpoint=True)
            values.flat[:2] = (info.min, info.max)
        elif dt.kind == "f":
            values = rng.normal(scale=1e3, size=(n, length)).astype(dt)
            values.flat[:5] = (np.nan, np.inf, -np.inf, -0.0, np.finfo(dt).tiny / 2)
        elif dt.kind == "c":
            values = (rng.normal(size=(n, length)) + 1j * rng.normal(size=(n, length))).astype(dt)
        elif dt.kind == "b":
            values = rng.random((n, length)) > 0.5
        else:
            words = [b"", b"a", b"a\x00b", b"abcdef", b"\xff\x00\x01", b"muon"]
            values = np.array(words, dt)[rng.integers(0, len(words), (n, length))]
        data[name] = values
    metadata = np.zeros(n, METADATA_DTYPE)
    metadata["counter"] = np.arange(n) * 3 + 7
    metadata["timestamp"] = 1.7e9 + np.cumsum(rng.exponential(1e-3, n))
    metadata["deadtime"] = rng.random(n)
    return metadata, data


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


# ----- reading back with each library -----


def read_hdf5(path: Path, swmr: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    with h5py.File(path, "r", swmr=swmr) as f:
        n = min(len(f["data"]), len(f["metadata"]))
        return f["metadata"][:n], f["data"][:n], dict(f.attrs)


def read_parquet(path: Path, dtype: np.dtype, length: int) -> tuple[np.ndarray, np.ndarray, dict]:
    table = pq.read_table(path)
    n = table.num_rows
    metadata = np.zeros(n, METADATA_DTYPE)
    for name in METADATA_DTYPE.names:
        metadata[name] = table.column(name).to_numpy()
    data = np.zeros((n, length), dtype)
    for name in dtype.names:
        column = table.column(name).combine_chunks()
        if length > 1:
            assert column.type == pa.list_(column.type.value_type, length)
            column = column.flatten()
        if dtype[name].kind == "S":
            values = np.array(column.to_pylist(), dtype[name])
        else:
            values = column.to_numpy(zero_copy_only=False)
        data[name] = values.reshape(n, length)
    info = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return metadata, data, info


def read_root(path: Path, dtype: np.dtype, length: int) -> tuple[np.ndarray, np.ndarray, dict]:
    with uproot.open(path) as f:
        tree = f["events"]
        arrays = tree.arrays(library="np")
        info = {"mimocorb2": str(f["mimocorb2"]), "title": tree.title}
        if "setup_yaml" in f:
            info["setup_yaml"] = str(f["setup_yaml"])
    n = len(arrays["counter"])
    metadata = np.zeros(n, METADATA_DTYPE)
    for name in METADATA_DTYPE.names:
        metadata[name] = arrays[name]
    data = np.zeros((n, length), dtype)
    for name in dtype.names:
        values = np.ascontiguousarray(arrays[name])
        if dtype[name].kind == "S":
            values = values.view(dtype[name])
        data[name] = values.reshape(n, length)
    return metadata, data, info


def read_back(fmt: str, path: Path, dtype: np.dtype, length: int) -> tuple:
    if fmt == "hdf5":
        return read_hdf5(path)
    if fmt == "parquet":
        return read_parquet(path, dtype, length)
    return read_root(path, dtype, length)


def assert_same(got: tuple, metadata: np.ndarray, data: np.ndarray) -> None:
    got_meta, got_data = got[0], got[1]
    assert len(got_meta) == len(metadata) and got_data.shape == data.shape
    for name in METADATA_DTYPE.names:
        assert same_bytes(got_meta[name], metadata[name]), name
    for name in data.dtype.names:
        expected = data[name]
        assert same_bytes(got_data[name].astype(expected.dtype), expected), name
