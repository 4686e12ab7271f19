"""HDF5, Parquet and ROOT: the writers, exporters.hdf5/parquet/root, a missing library, a run.

Every file is read back with the format's own library (h5py, pyarrow, uproot) and compared
byte for byte with what was written (helpers in ``file_format_helpers.py``).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from file_format_helpers import (
    FORMATS,
    SUFFIX,
    assert_same,
    dtype_for,
    h5py,
    make_events,
    pq,
    read_back,
    read_hdf5,
    read_parquet,
    read_root,
    same_bytes,
    uproot,
)

from mimocorb2 import _file_formats as ff
from mimocorb2.control import Control
from mimocorb2.exceptions import SetupValidationError
from mimocorb2.functions import exporters
from mimocorb2.mimo_buffer import BufferWriter, mimoBuffer
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import SetupError

pytestmark = pytest.mark.timeout(60)


# ----- the writers -----


@pytest.mark.parametrize("length", [1, 50])
@pytest.mark.parametrize("fmt", FORMATS)
def test_writer_round_trip_every_dtype_kind(tmp_path, fmt, length):
    dtype = dtype_for(fmt)
    metadata, data = make_events(dtype, 120, length)
    path = tmp_path / f"events{SUFFIX[fmt]}"
    attrs = {"buffer": "waves", "run_start": "2024-01-01T00:00:00+00:00", "setup_yaml": "a: 1\n"}
    options = {} if fmt == "hdf5" else {"group_bytes": 4096}
    with ff.open_writer(fmt, path, dtype, length, attrs=attrs, **options) as w:
        for start in (0, 1, 40, 41, 100):  # uneven batches, some flushed, some pending
            stop = {0: 1, 1: 40, 40: 41, 41: 100, 100: 120}[start]
            w.write(metadata[start:stop], data[start:stop])
            if start in (1, 41):
                w.flush()
        assert len(w) == 120
    got = read_back(fmt, path, dtype, length)
    assert_same(got, metadata, data)
    info = got[2]
    if fmt == "hdf5":
        assert info["buffer"] == "waves" and info["setup_yaml"] == "a: 1\n"
        assert info["run_start"] == "2024-01-01T00:00:00+00:00" and info["data_length"] == length
        assert info["mimocorb2_version"] == ff.__version__
        with h5py.File(path, "r") as f:
            assert f["data"].chunks is not None and f["data"].maxshape == (None, length)
            assert f["metadata"].maxshape == (None,) and f["data"].compression is None
    else:
        described = json.loads(info["mimocorb2"])
        assert described["buffer"] == "waves" and described["data_length"] == length
        assert described["mimocorb2_version"] == ff.__version__
        assert np.lib.format.descr_to_dtype(
            [tuple(f) for f in described["data_dtype"]]
        ) == np.dtype(dtype)
        assert info["setup_yaml"] == "a: 1\n"
    if fmt == "parquet":
        groups = pq.ParquetFile(path).metadata.num_row_groups
        assert groups >= 3  # one per flush, one per group_bytes
        columns = pq.ParquetFile(path).metadata.row_group(0).column(0)
        assert columns.compression == "UNCOMPRESSED"
    if fmt == "root":
        with uproot.open(path) as f:
            assert f["events"]["counter"].num_baskets >= 3
            assert f["events"].title == "waves"


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [("hdf5", "gzip"), ("hdf5", "lzf"), ("parquet", "zstd"), ("root", "lz4"), ("root", "zlib")],
)
def test_writer_compression_round_trip(tmp_path, fmt, compression):
    dtype = np.dtype([("ch1", "<f4"), ("ch2", "<i2")])
    metadata, data = make_events(dtype, 40, 64)
    path = tmp_path / f"c{SUFFIX[fmt]}"
    with ff.open_writer(fmt, path, dtype, 64, compression=compression) as w:
        w.write(metadata, data)
    assert_same(read_back(fmt, path, dtype, 64), metadata, data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_writer_refuses_existing_file_and_unstorable_fields(tmp_path, fmt):
    path = tmp_path / f"x{SUFFIX[fmt]}"
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        ff.open_writer(fmt, path, {"a": "f4"}, 1)
    assert path.read_bytes() == b"keep"
    with pytest.raises(ValueError, match=r"'u'.*byte string field 'S<n>'"):
        ff.open_writer(fmt, tmp_path / f"u{SUFFIX[fmt]}", {"u": "U4"}, 1)
    if fmt != "hdf5":
        with pytest.raises(ValueError, match="name of a metadata column"):
            ff.open_writer(fmt, tmp_path / f"m{SUFFIX[fmt]}", {"counter": "i8"}, 1)
        with pytest.raises(ValueError, match="plain fields only"):
            ff.open_writer(fmt, tmp_path / f"v{SUFFIX[fmt]}", [("w", "f4", (3,))], 1)
    assert not (tmp_path / f"u{SUFFIX[fmt]}").exists()


def test_parquet_parts_directory(tmp_path):
    dtype = np.dtype([("x", "<f8"), ("s", "S3")])
    metadata, data = make_events(dtype, 30, 1)
    path = tmp_path / "p.parquet"
    w = ff.ParquetWriter(path, dtype, 1, part_interval=1e-6)
    for i in range(3):
        w.write(metadata[10 * i : 10 * i + 10], data[10 * i : 10 * i + 10])
        hidden = list(path.glob(".part-*.inprogress"))
        w.flush()  # writes a row group and closes the part (older than part_interval)
        assert hidden == [] and not list(path.glob(".part-*"))
    w.close()
    assert sorted(p.name for p in path.iterdir()) == [f"part-0000{i}.parquet" for i in range(3)]
    assert_same(read_parquet(path, dtype, 1), metadata, data)


# ----- the exporters in this process -----


def run_exporter(
    fmt: str,
    tmp_path: Path,
    name: str,
    metadata: np.ndarray,
    data: np.ndarray,
    config: dict | None = None,
) -> Path:
    """Feeds the events through a buffer into ``exporters.<fmt>``; returns the run directory."""
    length = data.shape[1]
    source = mimoBuffer(name, len(data) + 1, length, data.dtype)
    writer = BufferWriter(source)
    writer.write_batch(data, metadata)
    writer.send_flush_event()
    run_dir = tmp_path / f"run_{fmt}"
    io_ = BufferIO("export", [source], [], [], config or {}, tmp_path, run_dir)
    getattr(exporters, fmt)(io_)
    return run_dir


@pytest.mark.parametrize("length", [1, 20])
@pytest.mark.parametrize("fmt", FORMATS)
def test_exporter_round_trip(tmp_path, unique_name, fmt, length):
    dtype = dtype_for(fmt)
    metadata, data = make_events(dtype, 150, length, seed=length)
    name = unique_name("src")
    run_dir = run_exporter(fmt, tmp_path, name, metadata, data)
    (path,) = run_dir.iterdir()
    assert path.name == f"{name}{SUFFIX[fmt]}"
    got = read_back(fmt, path, dtype, length)
    assert_same(got, metadata, data)
    info = got[2] if fmt == "hdf5" else json.loads(got[2]["mimocorb2"])
    assert info["buffer"] == name and info["worker"] == "export" and info["pid"] == os.getpid()
    assert info["run_start"]  # no setup.yaml in this run directory: the exporter's start


@pytest.mark.parametrize("fmt", FORMATS)
def test_exporter_filename_and_second_process(tmp_path, unique_name, fmt):
    dtype = np.dtype([("x", "<f4")])
    metadata, data = make_events(dtype, 10, 4)
    run_dir = tmp_path / f"run_{fmt}"
    run_dir.mkdir()
    (run_dir / f"out{SUFFIX[fmt]}").write_bytes(b"")  # taken (as by a first process)
    name = unique_name("src")
    run_exporter(fmt, tmp_path, name, metadata, data, {"filename": f"out{SUFFIX[fmt]}"})
    path = run_dir / f"out_2{SUFFIX[fmt]}"
    assert_same(read_back(fmt, path, dtype, 4), metadata, data)
    assert (run_dir / f"out{SUFFIX[fmt]}").read_bytes() == b""


@pytest.mark.parametrize(
    ("fmt", "config", "words"),
    [
        ("hdf5", {"filename": "a/b.h5"}, "'filename' must be a plain file name"),
        ("hdf5", {"flush_interval": 0}, "'flush_interval' must be a positive number"),
        ("hdf5", {"compression": "zstd"}, "'compression' must be one of none, gzip, lzf"),
        ("parquet", {"part_interval": "often"}, "'part_interval' must be a positive number"),
        ("parquet", {"compression_level": -1}, "'compression_level' must be a whole number"),
        ("root", {"compression": 5}, "'compression' must be one of none, lz4, zlib"),
    ],
)
def test_exporter_config_errors(tmp_path, unique_name, fmt, config, words):
    func = getattr(exporters, fmt)
    assert any(words in p for p in func.validate_config(config, None, None))
    dtype = np.dtype([("x", "<f4")])
    metadata, data = make_events(dtype, 2, 1)
    with pytest.raises(SetupError, match=words):
        run_exporter(fmt, tmp_path, unique_name("src"), metadata, data, config)
    assert func.validate_config({"compression": "none", "flush_interval": 2}, None, None) == []


@pytest.mark.parametrize("fmt", ["parquet", "root"])
def test_exporter_refuses_fields_it_cannot_store(tmp_path, unique_name, fmt):
    dtype = np.dtype([("counter", "<i8"), ("name", "U3")])
    metadata, data = make_events(np.dtype([("counter", "<i8")]), 2, 1)
    full = np.zeros(data.shape, dtype)
    with pytest.raises(SetupError) as e:
        run_exporter(fmt, tmp_path, unique_name("src"), metadata, full)
    assert "name of a metadata column" in str(e.value) and "'name' has dtype <U3" in str(e.value)


# ----- a missing library -----


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_extra_is_a_setup_error_naming_pip(tmp_path, unique_name, monkeypatch, fmt):
    module, extra = ff.FORMATS[fmt]
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` now fails
    pip = f'pip install "mimocorb2[{extra}]"'
    # direct call of the worker function
    dtype = np.dtype([("x", "<f4")])
    metadata, data = make_events(dtype, 2, 1)
    with pytest.raises(SetupError) as error:
        run_exporter(fmt, tmp_path, unique_name("src"), metadata, data)
    assert f"exporters.{fmt} needs the Python package '{module}'" in str(error.value)
    assert pip in str(error.value)
    # a setup: refused before anything starts
    setup = {
        "Buffers": {"b": {"slot_count": 8, "data_length": 1, "data_dtype": {"x": "f4"}}},
        "Workers": {
            "src": {"function": "data.clocked_importer", "sinks": ["b"], "config": {"rate": 1}},
            "out": {"function": f"exporters.{fmt}", "sources": ["b"]},
        },
        "target_directory": str(tmp_path / "runs"),
    }
    with pytest.raises(SetupValidationError) as e:
        Control(setup, tmp_path, mode="stats")
    assert pip in str(e.value) and "worker 'out'" in str(e.value)
    assert not (tmp_path / "runs").exists()
    # the writers and converters say the same
    with pytest.raises(ff.MissingExtraError, match=extra):
        ff.open_writer(fmt, tmp_path / f"w{SUFFIX[fmt]}", dtype, 1)


# ----- a whole run -----

SOURCE_FUNCTIONS = textwrap.dedent(
    '''
    import numpy as np

    from mimocorb2 import Importer


    def waves(io):
        """mimoCoRB2 Function: numbered waveforms.

        Type
            Importer
        """
        importer = Importer(io)
        event = importer.data_example.copy()

        def gen():
            for i in range(int(io["n"])):
                event["ch1"] = i + np.arange(event.size, dtype=np.float32) / 8
                event["ch2"] = -i
                event["ok"] = i % 2 == 0
                event["tag"] = b"ev%d" % i
                yield event
            yield None

        importer(gen)
    '''
)


def test_control_run_writes_all_three_formats(tmp_path):
    """source -> hdf5 (2 processes, pass-through) -> parquet (pass-through) -> root."""
    (tmp_path / "functions.py").write_text(SOURCE_FUNCTIONS)
    fields = {"ch1": "f4", "ch2": "i4", "ok": "bool", "tag": "S8"}
    buffer = {"slot_count": 32, "data_length": 16, "data_dtype": fields}
    n = 200
    setup = {
        "Buffers": {"waves": buffer, "after_h5": buffer, "after_pq": buffer},
        "Workers": {
            "source": {
                "file": "functions.py",
                "function": "waves",
                "sinks": ["waves"],
                "config": {"n": n},
            },
            "h5": {
                "function": "exporters.hdf5",
                "sources": ["waves"],
                "sinks": ["after_h5"],
                "number_of_processes": 2,
                "config": {"flush_interval": 0.2},
            },
            "pq": {"function": "exporters.parquet", "sources": ["after_h5"], "sinks": ["after_pq"]},
            "root": {
                "function": "exporters.root",
                "sources": ["after_pq"],
                "config": {"filename": "spectrum", "compression": "lz4"},
            },
        },
        "target_directory": str(tmp_path / "runs"),
    }
    control = Control(setup, tmp_path, mode="stats")
    t0 = time.monotonic()
    control()
    assert time.monotonic() - t0 < 30
    assert control.exit_code == 0
    run_dir = Path(control.run_dir)
    setup_text = (run_dir / "setup.yaml").read_text()
    dtype = np.dtype(list(fields.items()))
    h5_files = sorted(run_dir.glob("waves*.h5"))
    assert [p.name for p in h5_files] == ["waves.h5", "waves_2.h5"]
    parts = [read_hdf5(p) for p in h5_files]
    for _, _, attrs in parts:
        assert attrs["setup_yaml"] == setup_text and attrs["buffer"] == "waves"
        assert attrs["worker"] == "h5" and attrs["mimocorb2_version"] == ff.__version__
    counters = np.sort(np.concatenate([m["counter"] for m, _, _ in parts]))
    assert counters.tolist() == list(range(n))
    for metadata, data, _ in parts:
        i = metadata["counter"]
        assert np.array_equal(data["ch2"][:, 0], -i)
        assert np.array_equal(data["ok"][:, 3], i % 2 == 0)
        assert data["tag"][:, 0].tolist() == [b"ev%d" % k for k in i]
        assert np.array_equal(data["ch1"], (i[:, None] + np.arange(16) / 8).astype(np.float32))
    meta_pq, data_pq, info_pq = read_parquet(run_dir / "after_h5.parquet", dtype, 16)
    meta_root, data_root, info_root = read_root(run_dir / "spectrum.root", dtype, 16)
    assert sorted(meta_pq["counter"]) == list(range(n))
    assert same_bytes(meta_root, meta_pq) and same_bytes(data_root, data_pq)
    assert info_pq["setup_yaml"] == setup_text == info_root["setup_yaml"]
    assert json.loads(info_root["mimocorb2"])["buffer"] == "after_pq"
