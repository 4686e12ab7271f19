"""What the control says at the end of a run: failed and stopped processes, losses, the outcome.

Also the run's exit code: 1 when a worker failed or the ledger does not close (events lost
without a reason the user asked for), else 0.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mimocorb2._control_types import ProcessInfo

__all__ = ["PARTIAL_MARKER", "exit_code", "how_ended", "report_run"]

PARTIAL_MARKER = "PARTIAL_RESULTS.txt"
"""Written into the run directory when a worker failed or workers were stopped by the user."""

_log = logging.getLogger("mimocorb2.control")


def how_ended(p: ProcessInfo) -> str:
    """``ended with exit code 1`` or ``was killed by signal 9 (SIGKILL)``."""
    if p.get("exit_code") is not None:
        return f"ended with exit code {p['exit_code']}"
    try:
        name = f" ({signal.Signals(int(p['signal'])).name})"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        name = ""
    return f"was killed by signal {p.get('signal')}{name}"


def exit_code(failed: Sequence[ProcessInfo], summary: dict[str, Any]) -> int:
    """1 when a process failed or the ledger's exit status says so, else 0."""
    return 1 if failed or summary["exit_status"] else 0


def _report_ledger(summary: dict[str, Any]) -> None:
    """Names every loss with its reason."""
    for why in summary["reasons"]:
        _log.warning(why)
    if summary["events_lost"]:
        print(
            f"mimocorb2: {summary['events_lost']} event(s) lost: "
            + "; ".join(r for r in summary["reasons"] if "lost" in r or "dropped" in r)
            + " (see run_summary.json)",
            file=sys.stderr,
        )


def _report_failed(failed: Sequence[ProcessInfo]) -> None:
    """Each failed process once, with its last line and where its traceback is."""
    for p in failed:
        tail = [line for line in p["tail"] if line.strip()]
        _log.error(
            "process %s failed (%s); last output:\n    %s",
            p["name"],
            how_ended(p),
            "\n    ".join(p["tail"][-10:]),
        )
        where = f"logs/{p['worker']}.log"
        if any(line.startswith("Traceback") for line in tail):
            where = f"the traceback is above and in {where}"
        last = f": {tail[-1].strip()}" if tail else ""
        print(
            f"mimocorb2: worker '{p['worker']}' failed: process {p['name']} "
            f"{how_ended(p)}{last} ({where})",
            file=sys.stderr,
        )


def report_run(
    run_dir: Path,
    workers: Sequence[str],
    failed: Sequence[ProcessInfo],
    stopped: Sequence[ProcessInfo],
    summary: dict[str, Any],
) -> None:
    """The final summary: failed workers (once, no traceback), stopped ones, the outcome.

    Args:
        run_dir: The run directory (a partial run is marked there).
        workers: The workers of the setup, in order.
        failed: Processes that failed.
        stopped: Processes stopped by the user.
        summary: The run summary of the ledger.
    """
    _report_failed(failed)
    if stopped:
        by_worker = {w: sum(p["worker"] == w for p in stopped) for w in workers}
        names = ", ".join(f"{w} ({n})" for w, n in by_worker.items() if n)
        print(f"mimocorb2: processes stopped by the user: {names}", file=sys.stderr)
    _report_ledger(summary)
    if failed or stopped:
        failed_workers = sorted({p["worker"] for p in failed})
        why = (
            f"worker{'s' if len(failed_workers) > 1 else ''} {', '.join(failed_workers)} failed"
            if failed
            else "workers were stopped by the user"
        )
        (run_dir / PARTIAL_MARKER).write_text(
            f"The results in this directory are partial: {why}.\n"
            "See mimocorb2.log and logs/ for what happened.\n"
        )
        outcome = f"FAILED ({why})" if failed else "stopped by the user"
        print(
            f"mimocorb2: run finished: {outcome}; the results in {run_dir} are "
            f"PARTIAL (see {PARTIAL_MARKER} there)",
            file=sys.stderr,
        )
    elif summary["events_lost"]:
        print(
            f"mimocorb2: run finished: {summary['events_lost']} event(s) LOST (see "
            f"run_summary.json); results in {run_dir}",
            file=sys.stderr,
        )
    else:
        print(f"mimocorb2: run finished; results in {run_dir}", file=sys.stderr)


def report_face_failure(problem: str, code: int) -> None:
    """A face (the GUI) that failed: the run's data are complete, but it exits ``code``."""
    _log.error("the GUI failed: %s", problem)
    print(
        f"mimocorb2: the GUI failed ({problem}); the run's data are complete, "
        f"but the exit code is {code}",
        file=sys.stderr,
    )
