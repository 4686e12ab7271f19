"""HDF5, Parquet and ROOT: exporters.hdf5/parquet/root, the writers, converters and recovery.

Every file is read back with the format's own library (h5py, pyarrow, uproot) and compared
byte for byte with what was written. Writers that are killed run in a child process.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mimocorb2 import _file_formats as ff
from mimocorb2._convert_cli import ProgressBar
from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2._hdf5_file import _lookup3
from mimocorb2.control import Control
from mimocorb2.exceptions import SetupValidationError
from mimocorb2.functions import exporters
from mimocorb2.mimo_buffer import BufferWriter, mimoBuffer
from mimocorb2.mimo_file import MimoWriter, convert_to, recover_hdf5, to_csv, to_hdf5
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import SetupError

h5py = pytest.importorskip("h5py")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
uproot = pytest.importorskip("uproot")

pytestmark = pytest.mark.timeout(60)

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


# ----- reading while writing, and a killed writer -----

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from mimocorb2 import _file_formats as ff
    from mimocorb2._dtypes import METADATA_DTYPE

    fmt, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    dtype = np.dtype([("ch1", "<f4"), ("flag", "?"), ("tag", "S4")])
    options = {"part_interval": 1e-6} if fmt == "parquet" else {}
    writer = ff.open_writer(fmt, path, dtype, 8, **options)

    def batch(i, k=10):
        data = np.zeros((k, 8), dtype)
        data["ch1"] = np.arange(i, i + k)[:, None] + np.arange(8) / 8
        data["flag"] = (np.arange(i, i + k) % 3 == 0)[:, None]
        data["tag"] = b"t%d" % (i % 100)
        meta = np.zeros(k, METADATA_DTYPE)
        meta["counter"] = np.arange(i, i + k)
        return meta, data

    for i in range(0, 100, 10):  # 100 events, flushed
        writer.write(*batch(i))
        writer.flush()
    print("flushed 100", flush=True)
    if mode == "kill":
        writer.write(*batch(100, 5))  # pending, never flushed
        print("waiting", flush=True)
        time.sleep(60)
    writer.close()
    print("closed", flush=True)
    """
)


def expected_child_events(n: int) -> tuple[np.ndarray, np.ndarray]:
    dtype = np.dtype([("ch1", "<f4"), ("flag", "?"), ("tag", "S4")])
    i = np.arange(n)
    data = np.zeros((n, 8), dtype)
    data["ch1"] = i[:, None] + np.arange(8) / 8
    data["flag"] = (i % 3 == 0)[:, None]
    data["tag"] = np.array([b"t%d" % (k - k % 10) for k in i], "S4")[:, None]
    meta = np.zeros(n, METADATA_DTYPE)
    meta["counter"] = i
    return meta, data


def start_child(tmp_path: Path, fmt: str, path: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), fmt, str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(child: subprocess.Popen, line: str) -> None:
    deadline = time.monotonic() + CHILD_WAIT_S
    while time.monotonic() < deadline:
        got = child.stdout.readline()
        if got.strip() == line:
            return
        if not got and child.poll() is not None:
            break
    child.kill()
    child.wait()
    raise AssertionError(f"child did not print {line!r}: {child.stderr.read()}")


EXPORTER_CHILD = textwrap.dedent(
    """
    import sys, threading, time, uuid
    from pathlib import Path
    import numpy as np
    from mimocorb2._dtypes import METADATA_DTYPE
    from mimocorb2.functions import exporters
    from mimocorb2.mimo_buffer import BufferWriter, mimoBuffer
    from mimocorb2.mimo_worker import BufferIO

    run_dir = Path(sys.argv[1])
    dtype = np.dtype([("ch1", "<f4"), ("flag", "?"), ("tag", "S4")])
    source = mimoBuffer(f"swmr_{uuid.uuid4().hex[:12]}", 64, 8, dtype)
    writer = BufferWriter(source)

    def feed():  # 10 events every 0.1 s, as a slow experiment
        for i in range(0, 100, 10):
            data = np.zeros((10, 8), dtype)
            data["ch1"] = np.arange(i, i + 10)[:, None] + np.arange(8) / 8
            data["flag"] = (np.arange(i, i + 10) % 3 == 0)[:, None]
            data["tag"] = b"t%d" % (i % 100)
            meta = np.zeros(10, METADATA_DTYPE)
            meta["counter"] = np.arange(i, i + 10)
            writer.write_batch(data, meta)
            print(f"fed {i + 10}", flush=True)
            time.sleep(0.1)
        writer.send_flush_event()

    thread = threading.Thread(target=feed)
    thread.start()
    io = BufferIO("h5", [source], [], [], {"filename": "live", "flush_interval": 0.05}, run_dir,
                  run_dir)
    exporters.hdf5(io)
    thread.join()
    print("closed", flush=True)
    """
)


def test_hdf5_exporter_swmr_read_while_writing(tmp_path):
    path = tmp_path / "live.h5"
    script = tmp_path / "exporter_child.py"
    script.write_text(EXPORTER_CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(child, "fed 20")
        deadline = time.monotonic() + CHILD_WAIT_S
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = []
        # The file exists a moment before the writer switches it to SWMR mode: retry the open.
        while True:
            try:
                f = h5py.File(path, "r", swmr=True)
                break
            except OSError:  # BlockingIOError included: not in SWMR mode yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        with f:  # open while the writer runs
            while child.poll() is None and len(seen) < 200:
                f["metadata"].refresh()
                f["data"].refresh()
                n = min(len(f["metadata"]), len(f["data"]))
                meta, data = f["metadata"][:n], f["data"][:n]
                want_meta, want_data = expected_child_events(n)
                assert same_bytes(meta, want_meta) and same_bytes(data, want_data)
                seen.append(n)
                time.sleep(0.02)
        child.wait(CHILD_WAIT_S)
        assert child.returncode == 0, child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    growing = sorted(set(seen))
    assert len(growing) >= 3 and growing[0] < 100  # saw it grow while written (flushed)
    assert_same(read_hdf5(path), *expected_child_events(100))


@pytest.mark.parametrize("fmt", FORMATS)
def test_killed_writer_leaves_what_was_flushed(tmp_path, fmt):
    path = tmp_path / f"killed{SUFFIX[fmt]}"
    child = start_child(tmp_path, fmt, path, "kill")
    try:
        wait_for_line(child, "waiting")
        child.send_signal(signal.SIGKILL)
        child.wait(CHILD_WAIT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    dtype = np.dtype([("ch1", "<f4"), ("flag", "?"), ("tag", "S4")])
    if fmt == "hdf5":
        with pytest.raises(OSError, match="already open for write"):
            h5py.File(path, "r")  # still marked as being written
        got = read_hdf5(path, swmr=True)  # opens with what was flushed
        assert_same(got, *expected_child_events(100))
        assert recover_hdf5(path) == 100
        assert_same(read_hdf5(path), *expected_child_events(100))  # a plain file now
    else:
        if fmt == "parquet":
            assert len(list(path.glob("part-*.parquet"))) == 10
        assert_same(read_back(fmt, path, dtype, 8), *expected_child_events(100))


def test_recover_cli_and_refusals(tmp_path):
    path = tmp_path / "x.h5"
    with ff.Hdf5Writer(path, {"a": "f4"}, 2) as w:
        w.write(np.zeros(3, METADATA_DTYPE), np.zeros((3, 2), w.data_dtype))
    from mimocorb2.__main__ import main

    assert main(["recover", str(path)]) == 0  # a clean file stays as it is
    assert len(read_hdf5(path)[1]) == 3
    not_hdf5 = tmp_path / "y.h5"
    not_hdf5.write_bytes(b"nothing here" * 100)
    with pytest.raises(ValueError, match="not an HDF5 file"):
        recover_hdf5(not_hdf5)
    assert main(["recover", str(not_hdf5)]) == 2


def test_lookup3_checksum_matches_hdf5():
    # HDF5's own superblock checksums are lookup3 of the superblock
    assert _lookup3(b"") == 0xDEADBEEF
    assert _lookup3(b"Four score and seven years ago") == 0x17770551  # Jenkins' test value


# ----- converters -----


@pytest.fixture
def mimo_events(tmp_path):
    dtype = np.dtype([("ch1", "<f4"), ("n", "<i8"), ("ok", "?"), ("tag", "S5")])
    metadata, data = make_events(dtype, 300, 32, seed=3)
    run = tmp_path / "run_1"
    run.mkdir()
    (run / "setup.yaml").write_text("Buffers: {}\n")
    path = run / "waves.mimo"
    with MimoWriter(path, dtype, 32, source="waves") as w:
        w.write_many(data, metadata)
    return path, metadata, data


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_mimo_round_trip(tmp_path, mimo_events, fmt):
    source, metadata, data = mimo_events
    target = tmp_path / f"out{SUFFIX[fmt]}"
    calls = []
    n = convert_to(source, target, progress=lambda done, total: calls.append((done, total)))
    assert n == 300 and calls[-1] == (300, 300)
    got = read_back(fmt, target, data.dtype, 32)
    assert_same(got, metadata, data)
    info = got[2] if fmt == "hdf5" else json.loads(got[2]["mimocorb2"])
    assert info["buffer"] == "waves" and info["converted_from"] == "waves.mimo"
    setup_yaml = got[2]["setup_yaml"]
    assert setup_yaml == "Buffers: {}\n"


def test_convert_cli_progress_and_errors(tmp_path, mimo_events, capsys):
    from mimocorb2.__main__ import main

    source, metadata, data = mimo_events
    assert main(["convert", str(source), str(tmp_path / "a.h5")]) == 0
    err = capsys.readouterr().err
    assert "[##############################] 100% 300/300 events" in err
    assert_same(read_hdf5(tmp_path / "a.h5"), metadata, data)
    assert main(["convert", str(source), str(tmp_path / "a.h5")]) == 2
    assert "a.h5 exists" in capsys.readouterr().err
    assert main(["convert", str(source), str(tmp_path / "a.txt")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert main(["convert", str(source), str(tmp_path / "a.csv")]) == 2
    assert "CSV holds events of data_length 1" in capsys.readouterr().err
    assert not (tmp_path / "a.csv").exists()
    args = ["convert", "-q", "--format", "parquet", "--compression", "zstd"]
    assert main([*args, str(source), str(tmp_path / "data.pq")]) == 0
    assert "wrote 300 events" in capsys.readouterr().out
    assert_same(read_parquet(tmp_path / "data.pq", data.dtype, 32), metadata, data)
    args = ["convert", "-q", "--compression", "zstd", str(source), str(tmp_path / "z.h5")]
    assert main(args) == 2
    assert "compression 'zstd' is not one of none, gzip, lzf" in capsys.readouterr().err


def test_convert_to_csv_and_to_hdf5(tmp_path):
    dtype = np.dtype([("x", "<f8"), ("n", "<i8")])
    metadata, data = make_events(dtype, 50, 1)
    source = tmp_path / "h.mimo"
    with MimoWriter(source, dtype, 1) as w:
        w.write_many(data, metadata)
    assert to_csv(source, tmp_path / "h.csv") == 50
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert lines[0] == "counter,timestamp,deadtime,x,n" and len(lines) == 51
    assert float(lines[1].split(",")[3]) == data["x"][0, 0] or np.isnan(data["x"][0, 0])
    assert to_hdf5(source, tmp_path / "h.h5") == 50
    assert_same(read_hdf5(tmp_path / "h.h5"), metadata, data)


def test_progress_bar_redraws_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressBar("x.mimo -> x.h5", 1_000_000, stream)
    bar(1, 4)
    bar._drawn = 0.0
    bar(2, 4)
    bar(4, 4)
    text = stream.getvalue()
    assert text.count("\r") == 3
    assert "[#######" in text and text.endswith("\n") and " 50% 2/4 events" in text
