"""HDF5, Parquet and ROOT: reading while writing, killed writers, recovery and converters.

Writers that are killed run in a child process; every file is read back with the format's
own library (helpers in ``file_format_helpers.py``).
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from file_format_helpers import (
    CHILD_WAIT_S,
    FORMATS,
    SUFFIX,
    assert_same,
    h5py,
    make_events,
    read_back,
    read_hdf5,
    read_parquet,
    same_bytes,
)

from mimocorb2 import _file_formats as ff
from mimocorb2._convert_cli import ProgressBar
from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2._hdf5_file import _lookup3
from mimocorb2.mimo_file import MimoWriter, convert_to, recover_hdf5, to_csv, to_hdf5

pytestmark = pytest.mark.timeout(60)


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
