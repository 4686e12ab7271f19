"""mimocorb2.mimo_worker: Config, BufferIO and run_worker (single process)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from mimocorb2._config import ConfigError
from mimocorb2.mimo_buffer import (
    BufferObserver,
    BufferReader,
    BufferWriter,
    mimoBuffer,
)
from mimocorb2.mimo_worker import BufferIO, Config, run_worker


@pytest.fixture
def buffers(unique_name) -> dict[str, mimoBuffer]:
    return {
        "raw": mimoBuffer(unique_name("raw"), 8, 4, {"x": "<i8", "y": "<f4"}),
        "out": mimoBuffer(unique_name("out"), 8, 1, {"h": "<f8"}),
        "out2": mimoBuffer(unique_name("out2"), 8, 2, {"z": "<i2"}),
    }


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ----- Config -----


def test_config_from_dict_and_base(tmp_path):
    cfg = Config.from_setup({"a": 1, "b": {"x": 1}}, tmp_path, base_config={"b": 2, "c": 3})
    assert isinstance(cfg, Config)
    assert isinstance(cfg, dict)
    assert cfg == {"a": 1, "b": {"x": 1}, "c": 3}


def test_config_base_is_not_modified(tmp_path):
    base = {"a": 1}
    cfg = Config.from_setup({"a": 2}, tmp_path, base_config=base)
    assert cfg["a"] == 2
    assert base == {"a": 1}


def test_config_none_gives_base_copy(tmp_path):
    assert Config.from_setup(None, tmp_path) == {}
    assert Config.from_setup(None, tmp_path, {"k": "v"}) == {"k": "v"}


def test_config_files_and_list_merge_in_order(tmp_path):
    write_yaml(tmp_path / "one.yaml", "a: 1\nb: 1\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    write_yaml(sub / "two.yaml", "b: 2\nc: [1, 2]\n")
    cfg = Config.from_setup(["one.yaml", "sub/two.yaml", {"c": 3}], tmp_path, {"a": 0, "d": 4})
    assert cfg == {"a": 1, "b": 2, "c": 3, "d": 4}
    # absolute paths stay absolute
    assert Config.from_setup(str(sub / "two.yaml"), "/nonexistent") == {"b": 2, "c": [1, 2]}


def test_config_base_config_file(tmp_path):
    write_yaml(tmp_path / "base.yaml", "a: 1\nb: 1\n")
    assert Config.from_setup({"b": 2}, tmp_path, "base.yaml") == {"a": 1, "b": 2}


def test_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        Config.from_setup("nope.yaml", tmp_path)


# ----- BufferIO -----


def test_bufferio_attributes(buffers, tmp_path):
    raw, out, out2 = buffers["raw"], buffers["out"], buffers["out2"]
    io = BufferIO("w", [raw], [out, out2], [raw], {"k": 1}, str(tmp_path), tmp_path / "run")
    assert io.name == "w"
    assert io.logger is logging.getLogger("mimocorb2.mimo_worker.w")
    assert isinstance(io.config, Config)
    assert io.config == {"k": 1}
    assert io.setup_dir == tmp_path
    assert isinstance(io.setup_dir, Path)
    assert io.run_dir == tmp_path / "run"
    assert [type(r) for r in io.read] == [BufferReader]
    assert [type(w) for w in io.write] == [BufferWriter, BufferWriter]
    assert [type(o) for o in io.observe] == [BufferObserver]
    assert io.sources is io.read
    assert io.sinks is io.write
    assert io.observes is io.observe
    assert [r.buffer for r in io.read] == [raw]
    assert [w.buffer for w in io.write] == [out, out2]
    assert io.buffer_names_in == [raw.name]
    assert io.buffer_names_out == [out.name, out2.name]
    assert io.buffer_names_observe == [raw.name]
    assert io.data_in_examples[0].dtype == raw.data_dtype
    assert io.data_in_examples[0].shape == (4,)
    assert io.data_out_examples[1].dtype == out2.data_dtype
    assert io.data_out_examples[1].shape == (2,)
    assert io.data_observe_examples[0].shape == (4,)
    for m in io.metadata_in_examples + io.metadata_out_examples + io.metadata_observe_examples:
        assert m.dtype.names == ("counter", "timestamp", "deadtime")
        assert m.shape == (1,)
    assert not np.any(io.data_in_examples[0]["x"])
    text = str(io)
    assert "'w'" in text
    assert raw.name in text
    assert out2.name in text
    io.shutdown_sinks()


def test_bufferio_config_access(buffers, tmp_path):
    io = BufferIO("w", [], [], [], {"a": 1, "none": None}, tmp_path, tmp_path)
    assert io["a"] == 1
    assert io["none"] is None
    assert io.get("a") == 1
    assert io.get("missing") is None
    assert io.get("missing", 5) == 5
    assert "a" in io
    assert "missing" not in io


def test_bufferio_missing_key_flushes_sinks(buffers, tmp_path, caplog):
    out = buffers["out"]
    io = BufferIO("w", [], [out], [], {"a": 1}, tmp_path, tmp_path)
    with io.write[0] as (_, data):
        data["h"] = 1.5
    assert not out.flush_event_received
    with (
        caplog.at_level(logging.ERROR, logger="mimocorb2.mimo_worker.w"),
        pytest.raises(KeyError, match="threshold") as info,
    ):
        io["threshold"]
    assert "'w'" in str(info.value)
    assert out.flush_event_received  # the only writer is done: the buffer ended
    assert any("threshold" in r.getMessage() and "'w'" in r.getMessage() for r in caplog.records)
    # readers still get the event committed before, then the end
    r = BufferReader(out, timeout=1)
    with r as (_metadata, data):
        assert data["h"][0] == 1.5
    with r as (_, data):
        assert data is None


def test_shutdown_sinks_is_idempotent(buffers, tmp_path):
    io = BufferIO("w", [], [buffers["out"], buffers["out2"]], [], {}, tmp_path, tmp_path)
    io.shutdown_sinks()
    io.shutdown_sinks()
    assert buffers["out"].flush_event_received
    assert buffers["out2"].flush_event_received


def test_bufferio_from_setup(buffers, tmp_path):
    write_yaml(tmp_path / "cfg.yaml", "b: 2\nc: 3\n")
    setup = {
        "file": "ignored.py",
        "function": "ignored",
        "sources": ["raw"],
        "sinks": ["out", "out2"],
        "observes": ["raw"],
        "config": [{"a": 1}, "cfg.yaml"],
    }
    io = BufferIO.from_setup("w", setup, tmp_path, tmp_path / "run", buffers, {"a": 0, "z": 9})
    assert io.config == {"a": 1, "b": 2, "c": 3, "z": 9}
    assert io.buffer_names_in == [buffers["raw"].name]
    assert io.buffer_names_out == [buffers["out"].name, buffers["out2"].name]
    assert io.buffer_names_observe == [buffers["raw"].name]
    assert io.run_dir == tmp_path / "run"
    io.shutdown_sinks()


def test_bufferio_from_setup_missing_lists(buffers, tmp_path):
    io = BufferIO.from_setup("w", {"sinks": ["out"]}, tmp_path, tmp_path, buffers)
    assert io.read == []
    assert io.observe == []
    assert len(io.write) == 1
    assert io.config == {}
    io.shutdown_sinks()


def test_bufferio_from_setup_unknown_buffers(buffers, tmp_path):
    setup = {"sources": ["raw", "nope"], "sinks": ["gone"], "observes": []}
    with pytest.raises(KeyError) as info:
        BufferIO.from_setup("w", setup, tmp_path, tmp_path, buffers)
    msg = str(info.value)
    assert "'w'" in msg
    assert "nope" in msg
    assert "gone" in msg
    # nothing was registered: a writer of 'out' alone can end it
    w = BufferWriter(buffers["out"])
    w.send_flush_event()
    assert buffers["out"].flush_event_received


# ----- run_worker -----


def test_run_worker_success_flushes_sinks(buffers, tmp_path):
    io = BufferIO("ok", [], [buffers["out"]], [], {}, tmp_path, tmp_path)
    seen = []

    def function(buffer_io):
        seen.append(buffer_io)
        with buffer_io.write[0] as (_, data):
            data["h"] = 2.0

    assert run_worker(function, io) == 0
    assert seen == [io]
    assert buffers["out"].flush_event_received
    r = BufferReader(buffers["out"], timeout=1)
    with r as (_metadata, data):
        assert data["h"][0] == 2.0
    with r as (_, data):
        assert data is None


def test_run_worker_exception(buffers, tmp_path, caplog, capsys):
    io = BufferIO("bad", [], [buffers["out"], buffers["out2"]], [], {}, tmp_path, tmp_path)

    def function(buffer_io):
        raise ValueError("broken worker")

    with caplog.at_level(logging.ERROR, logger="mimocorb2.mimo_worker.bad"):
        assert run_worker(function, io) == 1
    assert buffers["out"].flush_event_received
    assert buffers["out2"].flush_event_received
    records = [r for r in caplog.records if r.name == "mimocorb2.mimo_worker.bad"]
    assert records
    assert records[0].exc_info is not None
    # the logger names the worker; under a Control each line also carries the process name
    assert records[0].getMessage() == "the worker function raised an exception"
    err = capsys.readouterr().err
    assert "ValueError: broken worker" in err
    assert "Traceback" in err


def test_run_worker_missing_config_key(buffers, tmp_path):
    io = BufferIO("w", [], [buffers["out"]], [], {}, tmp_path, tmp_path)
    assert run_worker(lambda buffer_io: buffer_io["nope"], io) == 1
    assert buffers["out"].flush_event_received


@pytest.mark.parametrize(("code", "expected"), [(None, 0), (0, 0), (3, 3), ("message", 1)])
def test_run_worker_system_exit(buffers, tmp_path, code, expected):
    io = BufferIO("w", [], [buffers["out"]], [], {}, tmp_path, tmp_path)

    def function(buffer_io):
        raise SystemExit(code)

    assert run_worker(function, io) == expected
    assert buffers["out"].flush_event_received


def test_run_worker_traceback_once_on_stderr(buffers, tmp_path, capsys):
    io = BufferIO("dup", [], [], [], {}, tmp_path, tmp_path)
    handler = logging.StreamHandler(sys.stderr)  # sys.stderr is capsys's here
    io.logger.addHandler(handler)
    try:
        assert run_worker(lambda buffer_io: 1 / 0, io) == 1
    finally:
        io.logger.removeHandler(handler)
    assert capsys.readouterr().err.count("ZeroDivisionError: division by zero") == 1


def test_run_worker_keeps_sinks_open_for_a_restart(buffers, tmp_path):
    io = BufferIO("restartable", [], [buffers["out"]], [], {}, tmp_path, tmp_path)
    assert io.shutdown_sinks_on_error is True
    io.shutdown_sinks_on_error = False

    def function(buffer_io):
        raise RuntimeError("crash")

    assert run_worker(function, io) == 1
    assert not buffers["out"].flush_event_received  # left for the replacement process
    assert run_worker(lambda buffer_io: None, io) == 0  # a normal end still ends the sinks
    assert buffers["out"].flush_event_received


def test_end_sinks_is_the_one_rule(buffers, tmp_path):
    io = BufferIO("rule", [], [buffers["out"]], [], {}, tmp_path, tmp_path)
    io.shutdown_sinks_on_error = False
    io.end_sinks(failed=True)  # a process to be restarted keeps its sinks open
    assert not buffers["out"].flush_event_received
    io.shutdown_sinks_on_error = True
    io.end_sinks(failed=True)
    assert buffers["out"].flush_event_received
