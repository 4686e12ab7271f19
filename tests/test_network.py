"""network.sender and network.receiver: two runs joined over ZeroMQ on loopback (and veth)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mimocorb2.functions import network

pytest.importorskip("zmq")

WORKERS = Path(__file__).parent / "pipelines" / "network_workers.py"
RUN_TIMEOUT = 45


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def buffer(dtype: str = "int64", slots: int = 64) -> dict:
    return {"slot_count": slots, "data_length": 1, "data_dtype": {"value": dtype}}


def sending_setup(tmp: Path, address: str, n: int, **config) -> Path:
    """source -> copy -> (local: saved here, net: sent)."""
    setup = {
        "Buffers": {"raw": buffer(), "local": buffer(), "net": buffer()},
        "Workers": {
            "source": {
                "file": str(WORKERS),
                "function": "numbered",
                "config": {"n_events": n, "sleep": config.pop("sleep", 0.0)},
                "sinks": ["raw"],
            },
            "copy": {"function": "misc.copy", "sources": ["raw"], "sinks": ["local", "net"]},
            "keep": {"file": str(WORKERS), "function": "save_all", "sources": ["local"]},
            "send": {
                "function": "network.sender",
                "sources": ["net"],
                "config": {"address": address, "timeout": 5, **config},
            },
        },
        "target_directory": str(tmp / "send_runs"),
    }
    path = tmp / "send.yaml"
    path.write_text(yaml.safe_dump(setup, sort_keys=False))
    return path


def receiving_setup(
    tmp: Path,
    address: str,
    dtype: str = "int64",
    function: str = "network.receiver",
    keep_sleep: float = 0.0,
    **config,
) -> Path:
    receive = {"sinks": ["net"], "config": {"address": address, "timeout": 5, **config}}
    if function == "network.receiver":
        receive["function"] = function
    else:
        receive.update(file=str(WORKERS), function=function, restart="on-failure")
    setup = {
        "Buffers": {"net": buffer(dtype, slots=16 if keep_sleep else 64)},
        "Workers": {
            "receive": receive,
            "keep": {
                "file": str(WORKERS),
                "function": "save_all",
                "sources": ["net"],
                "config": {"sleep": keep_sleep},
            },
        },
        "target_directory": str(tmp / "recv_runs"),
    }
    path = tmp / "recv.yaml"
    path.write_text(yaml.safe_dump(setup, sort_keys=False))
    return path


def start(setup: Path, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "mimocorb2", str(setup), "-c", "stats"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"run did not end within {RUN_TIMEOUT} s:\n{out}")
    return proc.returncode, out


def run_pair(send: Path, recv: Path, prefixes=((), ())) -> tuple[int, str, int, str]:
    """Starts the receiving run first (it waits for its sender), then the sending run."""
    receiving = start(recv, prefixes[1])
    time.sleep(0.3)
    sending = start(send, prefixes[0])
    s_code, s_out = finish(sending)
    r_code, r_out = finish(receiving)
    return s_code, s_out, r_code, r_out


def run_dir(tmp: Path, which: str) -> Path:
    (d,) = (tmp / which).iterdir()
    return d


def summary(tmp: Path, which: str) -> dict:
    return json.loads((run_dir(tmp, which) / "run_summary.json").read_text())


def saved(tmp: Path, which: str) -> tuple[np.ndarray, np.ndarray]:
    d = run_dir(tmp, which)
    return np.load(d / "keep_values.npy"), np.load(d / "keep_metadata.npy")


# ----- configuration -----


def test_config_errors_name_the_key_and_the_fix():
    _, errors = network.parse_settings({}, "receiver")
    assert any("'address'" in e and "missing" in e for e in errors)
    _, errors = network.parse_settings({"address": "tcp://*:5555"}, "receiver")
    assert any("only for the side that listens" in e for e in errors)
    _, errors = network.parse_settings({"address": "udp://h:1"}, "sender")
    assert any("tcp://HOST:PORT" in e for e in errors)
    _, errors = network.parse_settings(
        {"address": "tcp://h:70000", "pattern": "broadcast", "high_water_mark": 0, "timout": 3},
        "sender",
    )
    text = "\n".join(errors)
    for needle in ("out of range", "'broadcast' is not allowed", "high_water_mark", "'timeout'"):
        assert needle in text
    settings, errors = network.parse_settings({"address": "tcp://*:5555"}, "sender")
    assert not errors and settings.bind and settings.pattern == "push"
    assert settings.timeout == network.DEFAULT_TIMEOUT


def test_without_pyzmq_a_setup_error_names_the_pip_command(monkeypatch, tmp_path):
    real = network.importlib.util.find_spec
    monkeypatch.setattr(
        network.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "zmq" else real(name, *a),
    )
    problems = network.sender.validate_config({"address": "tcp://*:5555"}, None, None)
    assert problems and 'pip install "mimocorb2[network]"' in problems[-1]
    from mimocorb2.mimo_buffer import mimoBuffer
    from mimocorb2.mimo_worker import BufferIO
    from mimocorb2.worker_templates import SetupError

    sink = mimoBuffer("net", 4, 1, {"value": "int64"})
    io = BufferIO("receive", [], [sink], [], {"address": "tcp://h:5555"}, tmp_path, tmp_path)
    with pytest.raises(SetupError, match=r"pip install \"mimocorb2\[network\]\""):
        network.receiver(io)
    assert sink.flush_event_received  # the sink was ended, so downstream finishes


def test_setup_check_reports_a_bad_network_config_before_starting(tmp_path):
    recv = receiving_setup(tmp_path, "tcp://*:5555")
    code, out = finish(start(recv))
    assert code != 0
    assert "only for the side that listens" in out


# ----- two runs over loopback -----


@pytest.mark.timeout(90)
def test_two_runs_push_every_event_arrives_with_its_origin_metadata(tmp_path):
    n = 20000
    address = f"tcp://127.0.0.1:{free_port()}"
    send = sending_setup(tmp_path, address.replace("127.0.0.1", "*"), n)
    recv = receiving_setup(tmp_path, address)
    s_code, s_out, r_code, r_out = run_pair(send, recv)
    assert (s_code, r_code) == (0, 0), s_out + r_out
    local_values, local_meta = saved(tmp_path, "send_runs")
    values, meta = saved(tmp_path, "recv_runs")
    assert len(values) == n
    np.testing.assert_array_equal(values, np.arange(n))
    np.testing.assert_array_equal(meta, local_meta)  # counter, timestamp, deadtime kept
    np.testing.assert_array_equal(values, local_values)
    s, r = summary(tmp_path, "send_runs"), summary(tmp_path, "recv_runs")
    assert s["events_lost"] == 0 and r["events_lost"] == 0
    (net,) = s["workers"]["send"]["network"]
    assert net["sent"] == net["delivered"] == n and net["lost_in_transit"] == 0
    (rnet,) = r["workers"]["receive"]["network"]
    assert rnet["received"] == n and rnet["upstream"]["sent"] == n
    assert r["buffers"]["net"]["committed"] == n


@pytest.mark.timeout(90)
def test_receiver_binds_sender_connects_and_waits_for_it(tmp_path):
    n = 2000
    port = free_port()
    send = sending_setup(tmp_path, f"tcp://127.0.0.1:{port}", n, bind=False)
    recv = receiving_setup(tmp_path, f"tcp://*:{port}", bind=True)
    sending = start(send)  # the sender first: it waits for its receiver
    time.sleep(1.0)
    receiving = start(recv)
    s_code, s_out = finish(sending)
    r_code, r_out = finish(receiving)
    assert (s_code, r_code) == (0, 0), s_out + r_out
    assert "waiting for a network.receiver" in s_out
    values, _ = saved(tmp_path, "recv_runs")
    np.testing.assert_array_equal(values, np.arange(n))


@pytest.mark.timeout(90)
def test_dtype_mismatch_is_an_error_on_both_sides_naming_both_dtypes(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    send = sending_setup(tmp_path, address, 100)
    recv = receiving_setup(tmp_path, address, dtype="float32")
    s_code, s_out, r_code, r_out = run_pair(send, recv)
    assert s_code != 0 and r_code != 0
    for out in (s_out, r_out):
        assert "{value: int64}" in out and "{value: float32}" in out, out


@pytest.mark.timeout(90)
def test_receiver_killed_and_restarted_mid_run_loss_counted_and_runs_end(tmp_path):
    n = 3000
    address = f"tcp://127.0.0.1:{free_port()}"
    send = sending_setup(tmp_path, address, n, sleep=0.0005)
    recv = receiving_setup(
        tmp_path,
        address,
        function="receiver_killed_once",
        marker=str(tmp_path / "killed"),
        kill_after=500,
    )
    s_code, s_out, r_code, _ = run_pair(send, recv)
    assert (tmp_path / "killed").exists()
    s = summary(tmp_path, "send_runs")
    (net,) = s["workers"]["send"]["network"]
    assert net["sessions"] == 2 and net["sent"] == n
    lost = net["lost_in_transit"]
    values, _ = saved(tmp_path, "recv_runs")
    assert len(np.unique(values)) == len(values)  # nothing twice
    assert np.all(np.diff(values) > 0)
    # unacknowledged events count as lost: some may have reached the sink just before the kill
    assert n - lost <= len(values) <= n
    assert s["events_lost"] == lost
    if lost:
        assert s_code == 1
        assert any("lost in transit" in r or "not acknowledged" in r for r in s["reasons"])
    assert "connection to the receiver" in s_out
    r = summary(tmp_path, "recv_runs")
    assert r["workers"]["receive"]["restarts"] == 1
    # the replacement took over: the receiving run fails only if it lost events itself
    assert r_code == r["exit_status"]
    assert r["buffers"]["net"]["committed"] == len(values)


@pytest.mark.timeout(90)
def test_publish_never_blocks_the_sender_and_counts_every_dropped_event(tmp_path):
    n = 20000
    address = f"tcp://127.0.0.1:{free_port()}"
    send = sending_setup(tmp_path, address, n, pattern="publish", high_water_mark=1)
    recv = receiving_setup(tmp_path, address, pattern="publish", keep_sleep=0.0002)
    s_code, _, r_code, r_out = run_pair(send, recv)
    assert r_code == 0, r_out
    s = summary(tmp_path, "send_runs")
    (net,) = s["workers"]["send"]["network"]
    values, _ = saved(tmp_path, "recv_runs")
    dropped = net["dropped_publish"]
    assert dropped > 0  # the receiver's downstream is slow
    assert net["lost_in_transit"] == 0
    assert len(values) + dropped == n
    assert np.all(np.diff(values) > 0)
    assert s["workers"]["send"]["dropped_by_reason"]["sink_ended"] == 0
    # publish keeps only the newest events by design: its drops are discarded on purpose
    # (like overwritten events), counted, and do not fail the run
    reasons = s["workers"]["send"]["discarded_by_reason"]
    assert (
        reasons.get("publish_receiver_lagging", 0) + reasons.get("publish_no_receiver", 0)
        == dropped
    )
    assert s["workers"]["send"]["discarded"] == dropped
    assert s["events_lost"] == 0 and s_code == 0
    assert any("pattern publish" in r for r in s["reasons"])
    # the sending run was not slowed down by the receiver: its source saw no back-pressure
    assert s["buffers"]["raw"]["committed"] == n


# ----- real routing: two network namespaces joined by a veth pair -----


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def two_namespaces():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns) to create network namespaces")
    tag = f"{os.getpid() % 100000}"
    a, b = f"m2net_a{tag}", f"m2net_b{tag}"
    va, vb = f"m2va{tag}", f"m2vb{tag}"
    try:
        _ip("netns", "add", a)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot create network namespaces here: {e.stderr.decode().strip()}")
    try:
        _ip("netns", "add", b)
        _ip("link", "add", va, "type", "veth", "peer", "name", vb)
        _ip("link", "set", va, "netns", a)
        _ip("link", "set", vb, "netns", b)
        _ip("-n", a, "addr", "add", "10.231.77.1/24", "dev", va)
        _ip("-n", b, "addr", "add", "10.231.77.2/24", "dev", vb)
        for ns, dev in ((a, va), (b, vb)):
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.mark.timeout(90)
def test_two_runs_in_two_network_namespaces_over_veth(tmp_path, two_namespaces):
    a, b = two_namespaces
    n = 5000
    port = 5555
    send = sending_setup(tmp_path, f"tcp://10.231.77.1:{port}", n)  # host A's address
    recv = receiving_setup(tmp_path, f"tcp://10.231.77.1:{port}")
    s_code, s_out, r_code, r_out = run_pair(
        send, recv, prefixes=(("ip", "netns", "exec", a), ("ip", "netns", "exec", b))
    )
    assert (s_code, r_code) == (0, 0), s_out + r_out
    _, local_meta = saved(tmp_path, "send_runs")
    values, meta = saved(tmp_path, "recv_runs")
    np.testing.assert_array_equal(values, np.arange(n))
    np.testing.assert_array_equal(meta, local_meta)


# ----- the ledger notes -----


def test_ledger_notes_relabel_and_add_drops_and_bad_notes_are_ignored(tmp_path):
    from mimocorb2._ledger import apply_worker_notes, run_summary, worker_ledger

    workers = worker_ledger({}, {"send": 1, "other": 2}, [])
    workers["send"]["dropped"] = 5
    workers["send"]["dropped_by_reason"]["sink_ended"] = 5
    notes = tmp_path / "ledger_notes"
    notes.mkdir()
    (notes / "send.1.json").write_text(
        json.dumps(
            {
                "worker": "send",
                "relabel_dropped": {"publish_receiver_lagging": 7},  # capped at the 5 counted
                "dropped": {"lost_in_transit": 3},
                "explain": {"publish_receiver_lagging": "the receiver lagged"},
                "network": {"sent": 10},
            }
        )
    )
    (notes / "broken.json").write_text("{not json")
    (notes / "nobody.json").write_text(json.dumps({"worker": "unknown", "dropped": {"x": 1}}))
    apply_worker_notes(workers, tmp_path)
    send = workers["send"]
    assert send["dropped"] == 3
    assert send["dropped_by_reason"] == {"sink_ended": 0, "worker_error": 0, "lost_in_transit": 3}
    assert send["discarded"] == 5
    assert send["discarded_by_reason"] == {"publish_receiver_lagging": 5}
    assert send["network"] == [{"sent": 10}]
    s = run_summary({}, workers)
    assert s["events_lost"] == 3 and s["exit_status"] == 1
    assert "5 event(s) discarded on purpose by worker 'send': the receiver lagged" in s["reasons"]
    assert "3 event(s) dropped by worker 'send': lost in transit" in s["reasons"]
