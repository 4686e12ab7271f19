"""The spec file a worker process starts from: written by the control, read by ``_worker_main``.

One YAML file per worker in the run's ``.runtime/`` directory holds the worker
(:meth:`WorkerSpec.to_dict`), the handles of the buffers it uses, the directories, the control's
process id and the package it runs. :func:`write_launch_spec` and :func:`read_launch_spec` are
its only writer and reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import yaml

from mimocorb2._setup_spec import WorkerSpec

__all__ = ["BufferHandle", "LaunchSpec", "read_launch_spec", "write_launch_spec"]


class BufferHandle(TypedDict):
    """What a process needs to attach to a buffer (``_core.Buffer.handle()`` and its length)."""

    pid: int
    fd: int
    instance: list[int]
    data_length: int


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a worker process starts from.

    Attributes:
        worker: The worker.
        buffers: Handles of the buffers it reads, writes or observes, by name.
        setup_dir: Directory relative paths of the setup are resolved against.
        run_dir: The run directory.
        control_pid: The control's process id (the worker dies with it).
        package_dir: Directory of the control's ``mimocorb2`` package.
    """

    worker: WorkerSpec
    buffers: dict[str, BufferHandle]
    setup_dir: Path
    run_dir: Path
    control_pid: int
    package_dir: Path


def write_launch_spec(path: Path, spec: LaunchSpec) -> None:
    """Writes ``spec`` to ``path`` (YAML)."""
    data = {
        "worker": spec.worker.to_dict(),
        "buffers": {name: dict(h) for name, h in spec.buffers.items()},
        "setup_dir": str(spec.setup_dir),
        "run_dir": str(spec.run_dir),
        "control_pid": spec.control_pid,
        "package_dir": str(spec.package_dir),
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def read_launch_spec(path: Path) -> LaunchSpec:
    """The spec :func:`write_launch_spec` wrote to ``path``."""
    data = yaml.safe_load(path.read_text())
    return LaunchSpec(
        worker=WorkerSpec.from_dict(data["worker"]),
        buffers={
            name: BufferHandle(
                pid=int(h["pid"]),
                fd=int(h["fd"]),
                instance=[int(x) for x in h["instance"]],
                data_length=int(h["data_length"]),
            )
            for name, h in data["buffers"].items()
        },
        setup_dir=Path(data["setup_dir"]),
        run_dir=Path(data["run_dir"]),
        control_pid=int(data["control_pid"]),
        package_dir=Path(data["package_dir"]),
    )
