"""End-to-end runs through Control and the CLI."""

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mimocorb2.control import Control

WORKERS = Path(__file__).parent / "pipelines" / "workers.py"


def make_setup(tmp_path: Path, n_events: int = 2000, **overrides) -> dict:
    setup = {
        "Buffers": {
            "raw": {"slot_count": 32, "data_length": 1, "data_dtype": {"value": "int64"}},
            "even": {"slot_count": 32, "data_length": 1, "data_dtype": {"value": "int64"}},
            "doubled": {"slot_count": 32, "data_length": 1, "data_dtype": {"value": "int64"}},
        },
        "Workers": {
            "source": {
                "file": str(WORKERS),
                "function": "source",
                "config": {"n_events": n_events},
                "sinks": ["raw"],
            },
            "filter": {
                "file": str(WORKERS),
                "function": "keep_even",
                "number_of_processes": 2,
                "sources": ["raw"],
                "sinks": ["even"],
            },
            "double": {
                "file": str(WORKERS),
                "function": "double",
                "number_of_processes": 3,
                "sources": ["even"],
                "sinks": ["doubled"],
            },
            "collect": {"file": str(WORKERS), "function": "collect", "sources": ["doubled"]},
        },
        "target_directory": str(tmp_path / "runs"),
    }
    for worker, cfg in overrides.items():
        setup["Workers"][worker].update(cfg)
    return setup


def collected(run_dir: Path) -> np.ndarray:
    parts = [np.load(p) for p in run_dir.glob("collected_*.npy")]
    return np.concatenate(parts) if parts else np.array([], dtype=np.int64)


def test_pipeline_delivers_exactly_3_times(tmp_path):
    # Each run starts 7 interpreters (~1 s, ~4 s on a loaded 2-core machine): 3 runs stay
    # within a third of the 60 s timeout; the stress of many events is in test_multiprocess.
    n = 2000
    expected = np.arange(0, n, 2) * 2
    for _ in range(3):
        control = Control(make_setup(tmp_path, n), tmp_path, mode="stats")
        control()
        assert control.exit_code == 0
        values = np.sort(collected(control.run_dir))
        assert np.array_equal(values, expected)
        stats = control.get_stats()
        assert stats["total_processes_alive"] == 0
        assert stats["buffers"]["raw"]["event_count"] == n


def test_run_directory_contents(tmp_path):
    control = Control(make_setup(tmp_path, 100), tmp_path, mode="stats")
    control()
    run = control.run_dir
    assert run.name.startswith("run_")
    effective = yaml.safe_load((run / "setup.yaml").read_text())
    assert effective["Workers"]["source"]["config"] == {"n_events": 100}
    assert (run / "data_flow.dot").read_text().startswith("digraph")
    header = (run / "stats.csv").read_text().splitlines()[0]
    assert "buffers.raw.event_count" in header and "time_active" in header
    log = (run / "logs" / "collect.log").read_text()
    assert "collected 50 events" in log
    assert (run / "mimocorb2.log").exists()


def test_two_runs_in_the_same_second_get_distinct_directories(tmp_path):
    a = Control(make_setup(tmp_path, 10), tmp_path, mode="stats")
    b = Control(make_setup(tmp_path, 10), tmp_path, mode="stats")
    assert a.run_dir != b.run_dir
    a()
    b()


def test_worker_that_raises_is_reported_and_does_not_hang(tmp_path, capsys):
    setup = make_setup(tmp_path, 2000, double={"config": {"fail_at": 500}})
    control = Control(setup, tmp_path, mode="stats")
    t0 = time.monotonic()
    control()
    assert time.monotonic() - t0 < 30
    assert control.exit_code == 1
    failed = control.failures()
    assert [p["worker"] for p in failed] == ["double"]
    assert any("bad value 500" in line for line in failed[0]["tail"])
    assert "bad value 500" in capsys.readouterr().err
    # the other processes drained the pipeline: most events still arrived
    assert 0 < len(collected(control.run_dir)) < 1000


def test_worker_killed_with_sigkill_does_not_hang(tmp_path):
    setup = make_setup(tmp_path, 2000, double={"config": {"kill_at": 400}})
    control = Control(setup, tmp_path, mode="stats")
    t0 = time.monotonic()
    control()
    assert time.monotonic() - t0 < 30
    assert control.exit_code == 1
    failed = control.failures()
    assert len(failed) == 1 and failed[0]["signal"] == signal.SIGKILL
    assert 0 < len(collected(control.run_dir)) < 1000


def test_buffer_without_readers_is_shut_down_instead_of_blocking(tmp_path, capsys):
    setup = make_setup(tmp_path, 100_000, collect={"config": {"fail": True}})
    control = Control(setup, tmp_path, mode="stats")
    t0 = time.monotonic()
    control()
    assert time.monotonic() - t0 < 30
    assert control.exit_code == 1
    assert [p["worker"] for p in control.failures()] == ["collect"]
    assert "buffer 'doubled' has no running reader left" in capsys.readouterr().err
    assert control.get_stats()["buffers"]["doubled"]["flush_event_received"]


def test_restart_on_failure(tmp_path):
    marker = tmp_path / "failed_once"
    setup = make_setup(
        tmp_path,
        1000,
        double={
            "number_of_processes": 1,
            "config": {"fail_once_marker": str(marker)},
            "restart": "on-failure",
            "max_restarts": 2,
        },
    )
    control = Control(setup, tmp_path, mode="stats")
    control()
    assert marker.exists()
    assert control.exit_code == 0
    assert control.get_stats()["workers"]["double"]["restarts"] == 1
    assert np.array_equal(np.sort(collected(control.run_dir)), np.arange(0, 1000, 2) * 2)


def write_setup(tmp_path: Path, setup: dict) -> Path:
    path = tmp_path / "setup.yaml"
    path.write_text(yaml.safe_dump(setup))
    return path


def run_cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "mimocorb2", *args],
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def test_cli_help_and_version():
    r = run_cli("--help")
    assert r.returncode == 0 and "setup_file" in r.stdout and "-c" in r.stdout
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("mimocorb2 ")


def test_cli_bad_setup_exits_2_with_message(tmp_path):
    bad = make_setup(tmp_path)
    bad["Buffers"]["raw"]["slot_cout"] = bad["Buffers"]["raw"].pop("slot_count")
    r = run_cli(str(write_setup(tmp_path, bad)), "-c", "stats")
    assert r.returncode == 2
    assert "slot_count" in r.stderr
    assert not (tmp_path / "runs").exists()


def test_cli_runs_without_terminal_and_reports_failure(tmp_path):
    path = write_setup(tmp_path, make_setup(tmp_path, 500))
    r = run_cli(str(path), "-c", "kbd+stats", stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "collected 250 events" in r.stdout
    bad = write_setup(tmp_path, make_setup(tmp_path, 500, double={"config": {"fail_at": 10}}))
    r = run_cli(str(bad), "-c", "stats", stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert "bad value 10" in r.stderr


def _read_until(fd: int, needle: str, timeout: float = 20.0) -> str:
    buf = ""
    end = time.monotonic() + timeout
    while needle not in buf:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen; got:\n{buf[-2000:]}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk.decode(errors="replace")
    return buf


def test_kbd_mode_through_a_pseudo_terminal(tmp_path):
    setup = make_setup(tmp_path, -1, source={"config": {"n_events": -1, "sleep": 0.001}})
    path = write_setup(tmp_path, setup)
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on a real terminal
        os.execv(sys.executable, [sys.executable, "-m", "mimocorb2", str(path), "-c", "kbd"])
    try:
        _read_until(fd, "type 'help'")
        os.write(fd, b"help\n")
        _read_until(fd, "shutdown workers")
        os.write(fd, b"pause roots\n")
        _read_until(fd, "PAUSED")
        os.write(fd, b"resume roots\n")
        os.write(fd, b"exit\n")
        _read_until(fd, "processes still run")
        os.write(fd, b"shutdown roots\n")
        out = _read_until(fd, "run finished")
        assert "collected" in out
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_in_order_then_terminates(tmp_path, presses):
    setup = make_setup(tmp_path, -1, source={"config": {"n_events": -1, "sleep": 0.0005}})
    path = write_setup(tmp_path, setup)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mimocorb2", str(path), "-c", "stats"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Ctrl-C" in err
    assert "run finished" in err
    if presses == 1:
        assert proc.returncode == 0, err
        assert "collected" in out
    else:
        assert "terminating the workers" in err
