"""Entry point of one worker process: ``python -m mimocorb2._worker_main SPEC INDEX``.

The control writes a spec per worker (:mod:`mimocorb2._launch_spec`: the worker, its buffer
handles, directories) and the supervisor starts one fresh interpreter per process with it. The
process dies with the control (parent-death signal), attaches to its buffers, builds its
:class:`BufferIO`, loads the worker function and runs it. The exit code tells the control how
it went.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mimocorb2 import _core
from mimocorb2._launch_spec import BufferHandle, read_launch_spec


class _WorkerFormatter(logging.Formatter):
    """``LEVEL: message``; other loggers than the worker's own add their name.

    The control shows every output line with its process name (``[filter_1]``) and writes it
    to the worker's log file, so the line itself does not repeat the worker.
    """

    def __init__(self, own_logger: str) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self._own = logging.Formatter("%(levelname)s: %(message)s")
        self._own_logger = own_logger

    def format(self, record: logging.LogRecord) -> str:
        if record.name == self._own_logger:
            return self._own.format(record)
        return super().format(record)


def _attach_buffers(handles: Mapping[str, BufferHandle]) -> dict[str, Any]:
    from mimocorb2.mimo_buffer import _attach

    return {
        name: _attach(h["pid"], h["fd"], (h["instance"][0], h["instance"][1]), h["data_length"])
        for name, h in handles.items()
    }


def _package_mismatch(expected: str | None) -> str | None:
    """Why this process runs another mimocorb2 than its control (None: the same one).

    Args:
        expected: Directory of the control's ``mimocorb2`` package (None: not checked).
    """
    here = Path(__file__).resolve().parent
    if expected is None or Path(expected).resolve() == here:
        return None
    return (
        f"mimocorb2: this worker process imported mimocorb2 from {here}, but the control runs "
        f"{expected}; make the control's installation the one Python finds (check "
        "PYTHONPATH and mimocorb2/ folders next to the script that starts the control)"
    )


def main(argv: list[str] | None = None) -> int:
    """Runs one worker process; returns its exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m mimocorb2._worker_main SPEC_FILE INDEX", file=sys.stderr)
        return 2
    spec = read_launch_spec(Path(args[0]))
    if not _core.die_with_parent(spec.control_pid):
        return 2
    problem = _package_mismatch(str(spec.package_dir))
    if problem:
        print(problem, file=sys.stderr)
        return 2
    worker = spec.worker
    name = worker.name
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_WorkerFormatter(f"mimocorb2.mimo_worker.{name}"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    from mimocorb2._setup import load_function
    from mimocorb2.mimo_worker import BufferIO, Config, run_worker

    buffers = _attach_buffers(spec.buffers)
    function = load_function(worker)
    io = BufferIO(
        name,
        [buffers[b] for b in worker.sources],
        [buffers[b] for b in worker.sinks],
        [buffers[b] for b in worker.observes],
        Config(worker.config),
        spec.setup_dir,
        spec.run_dir,
    )
    os.environ["MIMOCORB2_PROCESS"] = f"{name}_{args[1]}"
    # A worker that will be restarted after a failure keeps its sinks open for its successor;
    # the supervisor closes its writer registrations once no restart is left.
    io.shutdown_sinks_on_error = worker.restart != "on-failure"
    return run_worker(function, io)


if __name__ == "__main__":
    sys.exit(main())
