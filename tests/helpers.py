"""Helpers shared by tests that run small setups through Control and read what they wrote."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np

from mimocorb2.control import Control

# Source of a user Exporter, appended to a test's user_functions.py (which must import
# os, Path, numpy as np and Exporter): saves data and counters of every event it reads.
COLLECT_FUNCTION = textwrap.dedent(
    '''
    def collect(io):
        """mimoCoRB2 Function: saves data and counters of every event it reads.

        Type
            Exporter
        """
        data, counters = [], []
        for d, m in Exporter(io):
            data.append(d.copy())
            counters.append(int(m["counter"][0]))
        dtype = io.data_in_examples[0].dtype
        arr = np.concatenate(data) if data else np.zeros(0, dtype=dtype)
        np.save(Path(io.run_dir) / f"{io.name}_{os.getpid()}_data.npy", arr)
        np.save(
            Path(io.run_dir) / f"{io.name}_{os.getpid()}_counter.npy",
            np.array(counters, dtype=np.int64),
        )
    '''
)


def run_control(setup: dict, setup_dir: Path) -> Control:
    """Run ``setup`` to its end in stats mode; it must finish within 45 s."""
    control = Control(setup, setup_dir, mode="stats")
    t0 = time.monotonic()
    control()
    assert time.monotonic() - t0 < 45
    return control


def collected(run_dir: Path, worker: str) -> tuple[np.ndarray, np.ndarray]:
    """Data and counters that the ``collect`` exporter named ``worker`` saved (all processes)."""
    data = [np.load(p) for p in sorted(run_dir.glob(f"{worker}_*_data.npy"))]
    counters = [np.load(p) for p in sorted(run_dir.glob(f"{worker}_*_counter.npy"))]
    assert data, f"no output of {worker}"
    return np.concatenate(data), np.concatenate(counters)


def failure_text(control: Control) -> str:
    return "\n".join(line for p in control.failures() for line in p["tail"])
