"""Kill storms: worker processes killed with SIGKILL at random moments (start-up included),
with and without restarts. Every run must end by itself and its ledger must balance."""

import sys
import time
from pathlib import Path

import pytest
import yaml

from mimocorb2._ledger import chain_mismatch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benches"))
from soak import HangError, run_storm, storm_setup


def run_or_fail(setup: Path, seed: int, kills: int, timeout: float) -> tuple[int, dict, int]:
    try:
        return run_storm(setup, seed, kills, timeout)
    except HangError as e:
        pytest.fail(str(e))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("restart", [False, True], ids=["no-restart", "restart"])
def test_kill_storm_ends_and_balances(tmp_path: Path, restart: bool) -> None:
    setup = storm_setup(tmp_path, restart)
    for seed in range(2):
        code, summary, kills = run_or_fail(setup, seed=100 * restart + seed, kills=3, timeout=45)
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
    code, summary, _ = run_or_fail(setup, seed=0, kills=0, timeout=40)
    assert code == 0, summary
    assert summary["events_lost"] == 0
    assert summary["buffers"]["raw"]["committed"] == 3000
    assert summary["workers"]["collect"]["read"] == 1500
    assert summary["workers"]["filter"]["filtered_out"] == 1500
    assert summary["workers"]["filter"]["read"] == 3000
    assert summary["workers"]["double"]["written"] == 1500
    assert chain_mismatch(summary, "raw", "collect") == 0


FLAKY_MODULE = '''
import os
from pathlib import Path

from mimocorb2 import BufferIO, Importer

_marker = Path(__file__).with_suffix(".imported")
# Only in a worker process (the control validates the setup by importing it too).
if os.environ.get("MIMOCORB2_WORKER_TAG") and not _marker.exists():
    _marker.write_text("x")
    raise ImportError("this process fails while importing the worker module")


def source(buffer_io: BufferIO):
    """mimoCoRB2 Function: 500 numbered events.

    Type
        Importer
    """
    importer = Importer(buffer_io)
    event = importer.data_example.copy()

    def gen():
        for i in range(500):
            event["value"] = i
            yield event
        yield None

    importer(gen)
'''


@pytest.mark.timeout(60)
def test_an_import_error_in_one_process_does_not_hang_the_run(tmp_path: Path) -> None:
    """One of two importer processes fails while importing: its sink must not wait for it."""
    module = tmp_path / "flaky.py"
    module.write_text(FLAKY_MODULE)
    setup = storm_setup(tmp_path, restart=False, n_events=500)
    spec = yaml.safe_load(setup.read_text())
    spec["Workers"]["source"].update(
        {"file": str(module), "function": "source", "number_of_processes": 2, "config": {}}
    )
    setup.write_text(yaml.safe_dump(spec))
    code, summary, _ = run_or_fail(setup, seed=0, kills=0, timeout=40)
    assert code == 1
    assert summary["workers"]["source"]["failed_processes"] == 1
    assert summary["buffers"]["raw"]["committed"] == 500
    assert summary["workers"]["collect"]["read"] == 250
    assert chain_mismatch(summary, "raw", "collect") == 0
