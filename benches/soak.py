"""Soak test of crash handling: kill -9 storms on a 4-stage chain for minutes.

Runs importer → filter → processor → exporter again and again (with and without restarts),
killing random worker processes at random moments (start-up included), and prints the runs,
kills, hangs, ledger mismatches (``run_summary.json`` must balance exactly) and recovery times
(extra run time per kill against quiet runs of the same sitting). The kill-storm test of the
suite (tests/test_kill_storm.py) runs a few of these runs.

Usage::

    python benches/soak.py --minutes 5
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from mimocorb2._ledger import chain_mismatch


class HangError(Exception):
    """A run did not end by itself."""


WORKERS = Path(__file__).resolve().parent.parent / "tests" / "pipelines" / "workers.py"


def storm_setup(tmp_path: Path, restart: bool, n_events: int = 4000) -> Path:
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
    out = []
    for k in kids:
        try:
            if "mimocorb2._worker_main" in " ".join(k.cmdline() or []):
                out.append(k)
        except psutil.Error:  # gone or a zombie meanwhile
            continue
    return out


def run_storm(
    setup: Path, seed: int, kills: int, timeout: float
) -> tuple[int, dict[str, Any], int]:
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
        # Moments count from the first worker process seen (a loaded machine starts them
        # late): one kill early (start-up: processes still importing or attaching), then
        # spread over the run. A moment with no worker alive waits for one.
        moments = sorted(
            [rng.uniform(0.0, 0.5)] + [rng.uniform(0.2, 2.5) for _ in range(kills - 1)]
        )
        while not workers_of(proc.pid):
            if proc.poll() is not None:
                return
            time.sleep(0.005)
        t0 = time.monotonic()
        for t in moments:
            while time.monotonic() - t0 < t or not workers_of(proc.pid):
                if proc.poll() is not None:
                    return
                time.sleep(0.01)
            try:
                rng.choice(workers_of(proc.pid)).kill()
                done.append(t)
            except (psutil.NoSuchProcess, IndexError):
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
        raise HangError(f"run with seed {seed} hung (no end within {timeout} s)") from None
    th.join(5)
    runs = sorted((setup.parent / "runs").iterdir())
    summary = json.loads((runs[-1] / "run_summary.json").read_text())
    summary["stderr"] = last_stderr[-1][-3000:] if last_stderr else ""
    return proc.returncode, summary, len(done)


def main() -> None:
    """Runs storms until the time is up and prints the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--kills", type=int, default=4, help="kills per storm run")
    ap.add_argument("--events", type=int, default=6000)
    args = ap.parse_args()
    end = time.monotonic() + 60 * args.minutes
    runs = kills = hangs = mismatches = lost = repairs = 0
    quiet: list[float] = []
    stormy: list[float] = []
    seed = 0
    with tempfile.TemporaryDirectory() as tmp:
        while time.monotonic() < end or not quiet:
            seed += 1
            restart = seed % 2 == 0
            d = Path(tmp) / f"run{seed}"
            d.mkdir()
            setup = storm_setup(d, restart, args.events)
            n = 0 if seed % 5 == 1 else args.kills
            t0 = time.monotonic()
            try:
                _code, summary, done = run_storm(setup, seed, n, timeout=120)
            except HangError as e:
                hangs += 1
                print(f"HANG: {e}", flush=True)
                continue
            took = time.monotonic() - t0
            runs += 1
            kills += done
            (quiet if n == 0 else stormy).append(took)
            bad = chain_mismatch(summary, "raw", "collect")
            lost += summary["events_lost"]
            repairs += sum(b.get("repairs", 0) for b in summary["buffers"].values())
            if bad:
                mismatches += 1
                print(f"MISMATCH seed {seed}: {bad}", json.dumps(summary)[:2000], flush=True)
            print(
                f"run {runs}: seed {seed} restart={restart} kills={done} {took:.1f} s "
                f"lost={summary['events_lost']} mismatch={bad}",
                flush=True,
            )
    q = statistics.median(quiet)
    per_kill = [(t - q) / max(1, args.kills) for t in stormy]
    print(
        json.dumps(
            {
                "runs": runs,
                "kills": kills,
                "hangs": hangs,
                "ledger_mismatches": mismatches,
                "events_lost_total": lost,
                "lock_repairs": repairs,
                "quiet_run_s_median": round(q, 2),
                "storm_run_s_median": round(statistics.median(stormy), 2) if stormy else None,
                "recovery_s_per_kill_median": round(statistics.median(per_kill), 3)
                if per_kill
                else None,
            },
            indent=2,
        )
    )
    sys.exit(1 if hangs or mismatches else 0)


if __name__ == "__main__":
    main()
