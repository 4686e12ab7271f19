"""Entry point of one worker process: ``python -m mimocorb2._worker_main SPEC INDEX``.

The control writes a YAML spec per worker (buffer handles, function, config, directories) and
the supervisor starts one fresh interpreter per process with it. The process dies with the
control (parent-death signal), attaches to its buffers, builds its :class:`BufferIO`, loads the
worker function and runs it. The exit code tells the control how it went.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from mimocorb2 import _core


def _attach_buffers(handles: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from mimocorb2.mimo_buffer import _attach

    return {
        name: _attach(h["pid"], h["fd"], tuple(h["instance"]), h["data_length"])
        for name, h in handles.items()
    }


def main(argv: list[str] | None = None) -> int:
    """Runs one worker process; returns its exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m mimocorb2._worker_main SPEC_FILE INDEX", file=sys.stderr)
        return 2
    spec = yaml.safe_load(Path(args[0]).read_text())
    if not _core.die_with_parent(int(spec["control_pid"])):
        return 2
    name = spec["worker"]
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(levelname)s [{name}_{args[1]}] %(name)s: %(message)s",
    )
    from mimocorb2._setup import WorkerSpec, load_function
    from mimocorb2.mimo_worker import BufferIO, Config, run_worker

    buffers = _attach_buffers(spec["buffers"])
    worker = WorkerSpec(
        name=name,
        function=spec["function"],
        file=Path(spec["file"]) if spec.get("file") else None,
        config=spec["config"],
        number_of_processes=int(spec["number_of_processes"]),
        sources=tuple(spec["sources"]),
        sinks=tuple(spec["sinks"]),
        observes=tuple(spec["observes"]),
        restart=spec.get("restart", "no"),
        max_restarts=int(spec.get("max_restarts", 0)),
    )
    function = load_function(worker)
    io = BufferIO(
        name,
        [buffers[b] for b in worker.sources],
        [buffers[b] for b in worker.sinks],
        [buffers[b] for b in worker.observes],
        Config(spec["config"]),
        Path(spec["setup_dir"]),
        Path(spec["run_dir"]),
    )
    os.environ["MIMOCORB2_PROCESS"] = f"{name}_{args[1]}"
    # A worker that will be restarted after a failure keeps its sinks open for its successor;
    # the supervisor closes its writer registrations once no restart is left.
    io.shutdown_sinks_on_error = worker.restart != "on-failure"
    return run_worker(function, io)


if __name__ == "__main__":
    sys.exit(main())
