"""Kill storms: worker processes killed with SIGKILL at random moments (start-up included),
with and without restarts. Every run must end by itself and its ledger must balance."""

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from mimocorb2._ledger import chain_mismatch

WORKERS = Path(__file__).parent / "pipelines" / "workers.py"


def storm_setup(tmp_path: Path, restart: bool, n_events: int = 6000) -> Path:
    """importer → raw → filter (2) → even → processor (2) → doubled → exporter."""
    policy = {"restart": "on-failure", "max_restarts": 2} if restart else {}
    buf = {"slot_count": 16, "data_length": 1, "data_dtype": {"value": "int64"}}
    setup = {
        "Buffers": {"raw": dict(buf), "even": dict(buf), "doubled": dict(buf)},
        "Workers": {
            "source": {
                "file": str(WORKERS),
                "function": "source",
                "config": {"n_events": n_events, "sleep": 0.0004},
                "sinks": ["raw"],
                **policy,
            },
            "filter": {
                "file": str(WORKERS),
                "function": "keep_even",
                "number_of_processes": 2,
                "sources": ["raw"],
                "sinks": ["even"],
                **policy,
            },
            "double": {
                "file": str(WORKERS),
                "function": "double",
                "number_of_processes": 2,
                "sources": ["even"],
                "sinks": ["doubled"],
                **policy,
            },
            "collect": {"file": str(WORKERS), "function": "collect", "sources": ["doubled"]},
        },
        "target_directory": str(tmp_path / "runs"),
    }
    path = tmp_path / "storm.yaml"
    path.write_text(yaml.safe_dump(setup))
    return path


def workers_of(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    return [k for k in kids if "mimocorb2._worker_main" in " ".join(k.cmdline() or [])]


def run_storm(setup: Path, seed: int, kills: int, timeout: float) -> tuple[int, dict, int]:
    """Runs the CLI on ``setup`` while killing ``kills`` random workers; returns (exit code,
    run summary, kills done). Fails the test if the run does not end within ``timeout``."""
    rng = random.Random(seed)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mimocorb2", str(setup), "-c", "stats"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = []
    last_stderr: list[str] = []

    def killer() -> None:
        if kills == 0:
            return
        # One kill early (start-up: processes still importing or attaching), then spread out.
        moments = sorted(
            [rng.uniform(0.05, 0.6)] + [rng.uniform(0.2, 2.5) for _ in range(kills - 1)]
        )
        t0 = time.monotonic()
        for t in moments:
            while time.monotonic() - t0 < t:
                if proc.poll() is not None:
                    return
                time.sleep(0.01)
            victims = workers_of(proc.pid)
            if victims:
                try:
                    rng.choice(victims).kill()
                    done.append(t)
                except psutil.NoSuchProcess:
                    pass

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    try:
        _, err = proc.communicate(timeout=timeout)
        last_stderr.append(err)
    except subprocess.TimeoutExpired:
        for k in workers_of(proc.pid):
            k.kill()
        proc.kill()
        proc.communicate()
        pytest.fail(f"run with seed {seed} hung (no end within {timeout} s)")
    th.join(5)
    runs = sorted((setup.parent / "runs").iterdir())
    summary = json.loads((runs[-1] / "run_summary.json").read_text())
    summary["stderr"] = last_stderr[-1][-3000:] if last_stderr else ""
    return proc.returncode, summary, len(done)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("restart", [False, True], ids=["no-restart", "restart"])
def test_kill_storm_ends_and_balances(tmp_path: Path, restart: bool) -> None:
    setup = storm_setup(tmp_path, restart)
    for seed in range(2):
        code, summary, kills = run_storm(setup, seed=100 * restart + seed, kills=3, timeout=45)
        assert kills >= 1
        assert chain_mismatch(summary, "raw", "collect") == 0, summary
        failed = sum(w["failed_processes"] for w in summary["workers"].values())
        assert summary["exit_status"] == code
        assert code == (1 if failed or summary["events_lost"] else 0)
        assert failed + sum(w["restarts"] for w in summary["workers"].values()) >= 1
        time.sleep(0.2)


@pytest.mark.timeout(60)
def test_a_quiet_run_balances_and_exits_zero(tmp_path: Path) -> None:
    setup = storm_setup(tmp_path, restart=False, n_events=3000)
    code, summary, _ = run_storm(setup, seed=0, kills=0, timeout=40)
    assert code == 0, summary
    assert summary["events_lost"] == 0
    assert summary["buffers"]["raw"]["committed"] == 3000
    assert summary["workers"]["collect"]["read"] == 1500
    assert summary["workers"]["filter"]["filtered_out"] == 1500
    assert summary["workers"]["filter"]["read"] == 3000
    assert summary["workers"]["double"]["written"] == 1500
    assert chain_mismatch(summary, "raw", "collect") == 0
