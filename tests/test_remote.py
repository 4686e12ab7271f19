"""Remote run control: ``--serve``, ``--connect``, ``keygen`` and the CURVE keys (loopback)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("zmq")

from mimocorb2 import _remote
from mimocorb2._remote import RemoteClient, RemoteError, RemoteServer

WORKERS = Path(__file__).parent / "pipelines" / "remote_workers.py"
RUN_TIMEOUT = 30
WAIT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_setup(tmp: Path) -> Path:
    """A source that runs (and prints) until its buffer is shut down, and a drain."""
    setup = {
        "Buffers": {"raw": {"slot_count": 16, "data_length": 1, "data_dtype": {"value": "int64"}}},
        "Workers": {
            "source": {"file": str(WORKERS), "function": "chatty_source", "sinks": ["raw"]},
            "drain": {"function": "exporters.drain", "sources": ["raw"]},
        },
        "target_directory": str(tmp / "runs"),
    }
    path = tmp / "setup.yaml"
    path.write_text(yaml.safe_dump(setup, sort_keys=False))
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mimocorb2", *args]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, str]]]:
    """Starts ``mimocorb2 SETUP -c stats --serve ...``; kills what is still running at the end."""
    procs: list[subprocess.Popen] = []

    def start(serve: str | None = None, keys: Path | None = None) -> tuple[subprocess.Popen, str]:
        port = free_port()
        args = ["-c", "stats", "--serve", serve or str(port)]
        if keys is not None:
            args += ["--keys", str(keys)]
        proc = subprocess.Popen(
            cli(str(write_setup(tmp_path)), *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc, f"tcp://127.0.0.1:{port if serve is None else serve.rsplit(':', 1)[1]}"

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the served run did not end within {RUN_TIMEOUT} s:\n{out}")
    return proc.returncode, out


class Watcher:
    """Collects a client's messages; waits for a condition on them, bounded."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.stats: dict[str, Any] | None = None
        self.lines: list[list[str]] = []
        self.finished: dict[str, Any] | None = None
        self.eof: dict[str, Any] | None = None

    def pump(self) -> None:
        for m in self.client.messages():
            if m["type"] == "stats":
                self.stats = m["stats"]
            elif m["type"] == "lines":
                self.lines += m["lines"]
            elif m["type"] == "finished":
                self.finished = m
            elif m["type"] == "eof":
                self.eof = m

    def until(self, what: str, ok: Callable[[], Any], timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if ok():
                return
            time.sleep(0.05)
        pytest.fail(f"no {what} within {timeout} s (stats {self.stats}, {len(self.lines)} lines)")

    def root(self) -> dict[str, Any]:
        return (self.stats or {}).get("buffers", {}).get("raw", {})


# ----- addresses and keys (no run) -----


def test_serve_binds_loopback_unless_a_host_is_given_and_other_hosts_need_keys(tmp_path):
    assert _remote.check_serve("5600", None) == ("tcp://127.0.0.1:5600", True)
    assert _remote.check_serve("tcp://:5600", None) == ("tcp://127.0.0.1:5600", True)
    assert _remote.check_serve("tcp://localhost:5600", None) == ("tcp://127.0.0.1:5600", True)
    assert _remote.check_serve("tcp://[::1]:5600", None)[1]
    for address in ("tcp://*:5600", "tcp://0.0.0.0:5600", "tcp://daq-pc:5600"):
        with pytest.raises(RemoteError, match=r"mimocorb2 keygen KEYDIR.*--keys KEYDIR"):
            _remote.check_serve(address, None)
    with pytest.raises(RemoteError, match=r"server\.key_secret is missing.*mimocorb2 keygen"):
        _remote.check_serve("tcp://*:5600", tmp_path)
    for bad in ("udp://h:1", "tcp://h:70000", "h"):
        with pytest.raises(RemoteError, match=r"tcp://HOST:PORT|out of range"):
            _remote.check_serve(bad, None)
    with pytest.raises(RemoteError, match="name the host"):
        RemoteClient("tcp://:5600")


def test_keygen_writes_private_key_pairs_and_never_overwrites(tmp_path):
    keys = tmp_path / "keys"
    result = subprocess.run(cli("keygen", str(keys)), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "--keys" in result.stdout
    for name in ("server.key", "server.key_secret", "client.key", "client.key_secret"):
        assert (keys / name).is_file()
    assert (keys / "authorized_clients" / "client.key").is_file()
    for secret in ("server.key_secret", "client.key_secret"):
        assert stat.S_IMODE((keys / secret).stat().st_mode) == 0o600
    before = (keys / "server.key_secret").read_bytes()
    again = subprocess.run(cli("keygen", str(keys)), capture_output=True, text=True, timeout=30)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    assert (keys / "server.key_secret").read_bytes() == before


def test_non_loopback_serve_without_keys_is_a_clear_error_before_anything_starts(tmp_path):
    setup = write_setup(tmp_path)
    result = subprocess.run(
        cli(str(setup), "-c", "stats", "--serve", f"tcp://0.0.0.0:{free_port()}"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "needs authentication and encryption" in result.stderr
    assert "mimocorb2 keygen" in result.stderr and "--keys" in result.stderr
    assert not (tmp_path / "runs").exists()  # no run directory, no buffers, no workers


def test_serve_on_an_address_in_use_is_an_error_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            cli(str(write_setup(tmp_path)), "-c", "stats", "--serve", str(port)),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    assert f"cannot serve on tcp://127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "runs").exists()


# ----- server and client in this process (no run) -----


def test_server_and_client_lines_stats_commands_history_and_end():
    commands: list[Any] = []
    info = {"title": "t", "run_dir": "/x", "roots": ["raw"], "buffers": {}, "workers": {}}
    server = RemoteServer(str(free_port()), None, info, commands.append)
    try:
        server.send_lines([["source_0", "source", "stdout", "before anyone listened"]])
        time.sleep(0.2)  # sent to nobody: kept in the history
        client = RemoteClient(server.address, timeout=10)
        setup = client.connect()
        assert setup["roots"] == ["raw"] and setup["version"] == _remote.PROTOCOL_VERSION
        watcher = Watcher(client)
        watcher.until("history", lambda: watcher.lines)
        assert watcher.lines[0][3] == "before anyone listened"
        server.send_lines([["source_0", "source", "stdout", "later"]])
        server.send_stats({"buffers": {"raw": {"paused": False}}}, [])
        watcher.until("new line and stats", lambda: len(watcher.lines) == 2 and watcher.stats)
        client.command(["buffer", "roots", "pause"])
        client.command(None)  # exit: leaves, never reaches the control
        with pytest.raises(ValueError, match="not a command"):
            client.command(["buffer", "roots", "explode"])
        deadline = time.monotonic() + WAIT_S
        while not commands and time.monotonic() < deadline:
            time.sleep(0.05)
        assert commands == [["buffer", "roots", "pause"]]
        server.send_finished(0)
        watcher.until("finished", lambda: watcher.finished)
        server.close()
        server = None
        watcher.until("eof", lambda: watcher.eof)
        assert "has ended" in watcher.eof["reason"]
        client.close()
    finally:
        if server is not None:
            server.close()


def test_client_without_a_served_run_gives_up_with_a_clear_message():
    client = RemoteClient(f"tcp://127.0.0.1:{free_port()}", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"no answer from .* within 1 s: no run is served"):
        client.connect()
    assert time.monotonic() - started < 5


# ----- a served run (separate process) -----


@pytest.mark.timeout(90)
def test_served_run_is_watched_and_commanded_by_a_client(served):
    proc, address = served()
    client = RemoteClient(address, timeout=WAIT_S)
    try:
        setup = client.connect()
        assert setup["roots"] == ["raw"] and set(setup["workers"]) == {"source", "drain"}
        w = Watcher(client)
        w.until("worker output", lambda: any(ln[3].startswith("tick") for ln in w.lines))
        w.until("events in the stats", lambda: w.root().get("event_count", 0) > 0)
        client.command(["buffer", "roots", "pause"])
        w.until("paused roots", lambda: w.root().get("paused"))
        client.command(["buffer", "roots", "resume"])
        w.until("resumed roots", lambda: not w.root().get("paused"))
        client.command(["buffer", "roots", "shutdown"])
        w.until("the end of the run", lambda: w.finished)
        assert w.finished["exit_code"] == 0
        assert w.root()["flush_event_received"] and w.root()["paused_count"] > 0
    finally:
        client.close()
    code, out = finish(proc)
    assert code == 0, out
    assert "serving the run on tcp://127.0.0.1:" in out and "run finished" in out


@pytest.mark.timeout(90)
def test_connect_kbd_terminal_shows_the_run_and_its_commands_take_effect(served):
    proc, address = served()
    client = subprocess.Popen(
        cli("--connect", address, "-c", "kbd"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MIMOCORB2_CONNECT_TIMEOUT": str(WAIT_S)},
    )
    try:
        assert client.stdin is not None
        time.sleep(3.0)  # the run starts, the client connects and receives
        client.stdin.write("stats\nshutdown roots\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=RUN_TIMEOUT)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert client.returncode == 0, out + err
    assert "connected to the run in" in out and f"on {address}" in out
    assert "status:" in out and "raw:" in out  # the statistics arrived
    assert "[source_0]  tick 0" in out  # the worker output arrived
    assert "buffer  events" in out  # the stats table
    assert "mimocorb2: shutdown roots" in out
    assert "finished (exit code 0)" in out and "summary:" in out
    code, served_out = finish(proc)
    assert code == 0, served_out


@pytest.mark.timeout(90)
def test_with_keys_the_client_connects_and_a_wrong_or_missing_key_is_refused(tmp_path, served):
    good, other = tmp_path / "keys", tmp_path / "other"
    _remote.keygen(good)
    _remote.keygen(other)
    wrong_client = tmp_path / "wrong_client"
    wrong_client.mkdir()
    shutil.copy(good / "server.key", wrong_client)
    shutil.copy(other / "client.key_secret", wrong_client)
    wrong_server = tmp_path / "wrong_server"
    wrong_server.mkdir()
    shutil.copy(other / "server.key", wrong_server)
    shutil.copy(good / "client.key_secret", wrong_server)

    port = free_port()
    proc, address = served(f"tcp://0.0.0.0:{port}", good)
    client = RemoteClient(address, good, timeout=WAIT_S)
    try:
        client.connect()
        w = Watcher(client)
        w.until("stats over the encrypted connection", lambda: w.stats)
        for keys, why in (
            (wrong_client, "refused this client's key"),
            (wrong_server, "no answer .* keys in .* do not match"),
            (None, "handshake .* failed|no answer"),
        ):
            started = time.monotonic()
            with pytest.raises(RemoteError, match=why):
                RemoteClient(address, keys, timeout=3.0).connect()
            assert time.monotonic() - started < 8
        result = subprocess.run(
            cli("--connect", address, "-c", "kbd", "--keys", str(wrong_client)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "MIMOCORB2_CONNECT_TIMEOUT": "3"},
        )
        assert result.returncode == 2 and "refused this client's key" in result.stderr
        client.command(["buffer", "roots", "shutdown"])
        w.until("the end of the run", lambda: w.finished)
    finally:
        client.close()
    code, out = finish(proc)
    assert code == 0, out
    assert f"serving the run on tcp://0.0.0.0:{port}" in out


# ----- the window on a remote run (offscreen, in this process) -----


def test_remote_window_shows_the_run_sends_commands_and_leaves_without_ending_it(qtbot):
    pytest.importorskip("pyqtgraph")
    commands: list[Any] = []
    info = {
        "title": "mimocorb2 Buffer Manager: setup.yaml",
        "run_dir": "/x",
        "roots": ["raw"],
        "buffers": {"raw": {"slot_count": 16, "data_length": 1}},
        "workers": {
            "source": {
                "function": "chatty_source",
                "number_of_processes": 1,
                "sources": [],
                "sinks": ["raw"],
                "observes": [],
            }
        },
        "linger": 5.0,
    }
    server = RemoteServer(str(free_port()), None, info, commands.append)
    client = RemoteClient(server.address, timeout=10)
    try:
        window = _remote.remote_window(client, client.connect())
        qtbot.addWidget(window)
        assert window.windowTitle().endswith(f"on {server.address}")
        stats = {
            "buffers": {
                "raw": {
                    "event_count": 10,
                    "rate": 5.0,
                    "filled_slots": 0.0,
                    "average_deadtime": 0.0,
                    "paused": False,
                    "flush_event_received": False,
                }
            },
            "workers": {"source": {"processes": 1, "cpu_percent": 1.0}},
            "time_active": 2.0,
            "total_processes_alive": 1,
        }
        server.send_stats(stats, [])
        server.send_lines([["source_0", "source", "stdout", "tick 0"]])
        qtbot.waitUntil(lambda: window.stats_received > 0, timeout=10_000)
        window.toggle_pause()
        qtbot.waitUntil(lambda: commands == [["buffer", "roots", "pause"]], timeout=10_000)
        window.close()  # a viewer leaves: no question, no exit or kill command
        assert client.closed
        time.sleep(0.3)
        assert commands == [["buffer", "roots", "pause"]]
    finally:
        client.close()
        server.close()
