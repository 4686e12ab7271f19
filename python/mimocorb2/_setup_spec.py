"""Records of a validated setup: the keys, :class:`BufferSpec`, :class:`WorkerSpec`, :class:`Setup`.

Shared by the loader (:mod:`mimocorb2._setup`, which re-exports them) and the validator
(:mod:`mimocorb2._setup_validate`), so that neither imports the other's module for them.
"""

from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_TARGET_DIRECTORY = "target"
DEFAULT_MAX_RESTARTS = 3
RESTART_POLICIES = ("no", "on-failure")

TOP_LEVEL_KEYS = ("Buffers", "Workers", "base_config", "target_directory", "Options")
BUFFER_KEYS = ("slot_count", "data_length", "data_dtype", "overwrite", "delivery")
WORKER_KEYS = (
    "function",
    "file",
    "config",
    "number_of_processes",
    "sources",
    "sinks",
    "observes",
    "restart",
    "max_restarts",
)
BUFFER_LISTS = ("sources", "sinks", "observes")


@dataclass(frozen=True)
class _Range:
    """An allowed number of buffers: ``low`` up to ``high`` (None = unbounded)."""

    low: int
    high: int | None

    def accepts(self, n: int) -> bool:
        return n >= self.low and (self.high is None or n <= self.high)

    def describe(self, noun: str) -> str:
        plural = noun if noun.endswith("s") else f"{noun}s"
        if self.high is None:
            return f"any number of {plural}" if self.low == 0 else f"at least {self.low} {noun}"
        if self.low == self.high:
            return f"{self.low} {noun if self.low == 1 else plural}"
        return f"{self.low} to {self.high} {plural}"


TEMPLATE_RULES: dict[str, tuple[_Range, _Range, _Range]] = {
    "Importer": (_Range(0, 0), _Range(1, 1), _Range(0, 0)),
    "Exporter": (_Range(1, 1), _Range(0, None), _Range(0, 0)),
    "Filter": (_Range(1, 1), _Range(1, None), _Range(0, 0)),
    "Processor": (_Range(1, 1), _Range(1, None), _Range(0, 0)),
    "Observer": (_Range(0, 0), _Range(0, 0), _Range(1, 1)),
    "IsAlive": (_Range(0, 0), _Range(0, 0), _Range(1, 1)),
}
"""Allowed (sources, sinks, observes) counts of a worker per template named in its docstring."""

_TEMPLATE_BY_LOWER = {name.lower(): name for name in TEMPLATE_RULES}


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BufferSpec:
    """One validated entry of ``Buffers``.

    Attributes:
        name: The buffer name (the key under ``Buffers``).
        slot_count: Number of slots of the ring.
        data_length: Elements per slot.
        data_dtype: Structured dtype of one element.
        overwrite: The ``overwrite`` key (a mimoCoRB v1 leftover; False when absent).
        delivery: ``compete`` (default: each event goes to one reading process) or
            ``every_worker`` (every worker listing the buffer in ``sources`` receives every
            event; the processes of one worker compete).
    """

    name: str
    slot_count: int
    data_length: int
    data_dtype: np.dtype
    overwrite: bool
    delivery: str = "compete"


@dataclass(frozen=True)
class WorkerSpec:
    """One validated entry of ``Workers``.

    Attributes:
        name: The worker name (the key under ``Workers``).
        function: The ``function`` key as written.
        file: Resolved absolute path of the function file, or None for a prebuilt function.
        config: Effective configuration: ``base_config`` with the worker's config merged over
            it (shallow, the worker wins).
        number_of_processes: Processes running the function.
        sources: Buffers read.
        sinks: Buffers written.
        observes: Buffers observed.
        restart: ``"no"`` or ``"on-failure"``.
        max_restarts: Restarts allowed with ``restart: on-failure``.
    """

    name: str
    function: str
    file: Path | None
    config: dict[str, Any]
    number_of_processes: int
    sources: tuple[str, ...]
    sinks: tuple[str, ...]
    observes: tuple[str, ...]
    restart: str
    max_restarts: int

    def to_dict(self) -> dict[str, Any]:
        """The worker as plain data (YAML and JSON safe); :meth:`from_dict` reads it back."""
        return {
            "name": self.name,
            "function": self.function,
            "file": str(self.file) if self.file is not None else None,
            "config": self.config,
            "number_of_processes": self.number_of_processes,
            "sources": list(self.sources),
            "sinks": list(self.sinks),
            "observes": list(self.observes),
            "restart": self.restart,
            "max_restarts": self.max_restarts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerSpec:
        """The worker :meth:`to_dict` wrote."""
        return cls(
            name=str(d["name"]),
            function=str(d["function"]),
            file=Path(d["file"]) if d["file"] is not None else None,
            config=dict(d["config"]),
            number_of_processes=int(d["number_of_processes"]),
            sources=tuple(d["sources"]),
            sinks=tuple(d["sinks"]),
            observes=tuple(d["observes"]),
            restart=str(d["restart"]),
            max_restarts=int(d["max_restarts"]),
        )


@dataclass(frozen=True)
class Setup:
    """A validated setup.

    Attributes:
        setup_file: The YAML file it was read from, or None for a setup given as a mapping.
        setup_dir: Absolute directory relative paths are resolved against.
        target_directory: Absolute directory run directories are created in.
        buffers: Buffers by name, in file order.
        workers: Workers by name, in file order.
        base_config: The loaded ``base_config``.
        raw: The setup mapping as given.
    """

    setup_file: Path | None
    setup_dir: Path
    target_directory: Path
    buffers: dict[str, BufferSpec]
    workers: dict[str, WorkerSpec]
    base_config: dict[str, Any]
    raw: dict[str, Any]

    def effective_dict(self) -> dict[str, Any]:
        """Returns the raw setup with each worker's config replaced by its effective config.

        ``base_config`` (if present) is replaced by the loaded mapping, so the result no longer
        refers to config files; it is what a run directory's ``setup.yaml`` records.
        """
        out = copy.deepcopy(self.raw)
        if "base_config" in out:
            out["base_config"] = copy.deepcopy(self.base_config)
        workers = out.get("Workers")
        if isinstance(workers, dict):
            for name, spec in self.workers.items():
                entry = workers.get(name)
                if isinstance(entry, dict):
                    entry["config"] = copy.deepcopy(spec.config)
        return out

    def writers_of(self, buffer: str) -> int:
        """Returns the number of processes writing ``buffer``.

        Raises:
            KeyError: If no buffer of that name is defined.
        """
        if buffer not in self.buffers:
            raise KeyError(f"no buffer named {buffer!r}; defined: {', '.join(self.buffers)}")
        return sum(w.number_of_processes for w in self.workers.values() if buffer in w.sinks)

    def roots(self) -> list[str]:
        """Returns the sinks of workers with no sources and no observes (the data entry points)."""
        out: list[str] = []
        for w in self.workers.values():
            if not w.sources and not w.observes:
                out.extend(s for s in w.sinks if s not in out)
        return out


def function_template(func: Any) -> str | None:
    """Returns the worker template named in a function's docstring ``Type`` section.

    Accepted forms (case-insensitive, indentation ignored): ``Type`` followed by a line with
    the template name, optionally with a numpydoc underline in between, or ``Type: Name`` on
    one line.

    Args:
        func: The worker function.

    Returns:
        One of ``Importer``, ``Exporter``, ``Filter``, ``Processor``, ``Observer``,
        ``IsAlive``, or None if the docstring names no template.
    """
    doc = func.__doc__ if isinstance(getattr(func, "__doc__", None), str) else None
    if not doc:
        return None
    lines = [line.strip() for line in inspect.cleandoc(doc).splitlines()]
    for i, line in enumerate(lines):
        m = re.match(r"type\b\s*:?\s*(.*)$", line, re.IGNORECASE)
        if m is None:
            continue
        candidate = m.group(1).strip()
        if not candidate:
            candidate = next(
                (s for s in lines[i + 1 :] if s and not set(s) <= set("-=~^*")),
                "",
            )
        word = re.split(r"[^A-Za-z]", candidate, maxsplit=1)[0]
        name = _TEMPLATE_BY_LOWER.get(word.lower())
        if name is not None:
            return name
    return None
