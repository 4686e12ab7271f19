"""Report hooks for tests/test_report.py: one that draws, one that fails, one that is slow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def draws(run_dir: Path, figure: Any) -> str:
    """Draws the number of log files of the run; returns a text for the page."""
    n = len(list((run_dir / "logs").glob("*.log")))
    fig = figure("hook figure", caption="drawn by a test hook")
    ax = fig.subplots()
    ax.bar(["log files"], [n])
    ax.set_title(f"{n} log files")
    return f"the hook saw {n} log files"


def fails(run_dir: Path, figure: Any) -> None:
    """Starts a figure, then raises."""
    figure("never saved")
    raise ValueError("this hook fails on purpose")


def slow(run_dir: Path, figure: Any) -> None:
    """Takes 5 s."""
    time.sleep(5.0)
