"""Setup files: load the YAML, validate every key, resolve worker functions.

A setup file describes the buffers and the workers of an experiment (spec §2.1). This module
turns it into a :class:`Setup` of :class:`BufferSpec` and :class:`WorkerSpec` records, or raises
:class:`~mimocorb2.exceptions.SetupValidationError` listing *every* problem at once, each naming
the setup file, the buffer or worker, the key and the fix. Validation creates nothing on disk.

Worker functions come either from a user file (``file:`` relative to the setup directory) or,
without ``file``, from the prebuilt package: ``function: a.b`` is attribute ``b`` of module
``mimocorb2.functions.a``. User files are imported from their full path under a unique module
name (``mimocorb2_user.<stem>_<hash>``), so two files with the same stem, or a file called
``data.py``, never collide with each other or with installed modules.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import re
import sys
import threading
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mimocorb2._config import ConfigError, load_config, resolve_path
from mimocorb2._dtypes import make_dtype
from mimocorb2.exceptions import SetupValidationError

__all__ = [
    "PREBUILT_PACKAGE",
    "TEMPLATE_RULES",
    "USER_MODULE_PACKAGE",
    "BufferSpec",
    "Setup",
    "WorkerSpec",
    "function_template",
    "load_function",
    "load_setup_file",
    "parse_setup",
]

PREBUILT_PACKAGE = "mimocorb2.functions"
"""Package holding the prebuilt worker functions (``function: a.b`` → ``mimocorb2.functions.a``)."""

USER_MODULE_PACKAGE = "mimocorb2_user"
"""Parent name under which user function files are registered in ``sys.modules``."""

DEFAULT_TARGET_DIRECTORY = "target"
DEFAULT_MAX_RESTARTS = 3
RESTART_POLICIES = ("no", "on-failure")

TOP_LEVEL_KEYS = ("Buffers", "Workers", "base_config", "target_directory", "Options")
BUFFER_KEYS = ("slot_count", "data_length", "data_dtype", "overwrite")
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
    """

    name: str
    slot_count: int
    data_length: int
    data_dtype: np.dtype
    overwrite: bool


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


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def load_setup_file(path: str | Path) -> Setup:
    """Reads and validates a setup YAML file.

    YAML anchors, aliases and ``<<`` merge keys work (``yaml.safe_load``).

    Args:
        path: The setup file.

    Returns:
        The validated setup; relative paths in it are taken from the file's directory.

    Raises:
        FileNotFoundError: If the file does not exist.
        SetupValidationError: If the file is not valid YAML or the setup is invalid.
    """
    source = str(path)
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise FileNotFoundError(f"setup file {source} not found (looked for {file})")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as e:
        raise SetupValidationError([f"{source}: not valid YAML: {e}"], source) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SetupValidationError([f"{source}: cannot be read: {e}"], source) from None
    setup = parse_setup(data, file.parent, source)
    return replace(setup, setup_file=file)


def parse_setup(setup: Mapping[str, Any], setup_dir: str | Path, source: str = "setup") -> Setup:
    """Validates a setup mapping and resolves its paths, configs and functions.

    Every problem is collected before raising, so one run reports them all. Worker functions
    are imported to check that they exist (user files under unique module names, see the
    module docstring). Nothing is created on disk.

    Args:
        setup: The parsed setup (top-level ``Buffers`` and ``Workers`` …).
        setup_dir: Directory relative paths (``file``, ``config``, ``base_config``,
            ``target_directory``) are resolved against.
        source: Name of the setup in error messages, usually the file path.

    Returns:
        The validated setup.

    Raises:
        SetupValidationError: Listing every problem found.
    """
    return _Validator(setup, setup_dir, source).run()


def load_function(worker: WorkerSpec) -> Callable[[Any], Any]:
    """Imports and returns the function of a worker.

    User files are imported once per absolute path (cached) under a unique module name;
    prebuilt functions come from :data:`PREBUILT_PACKAGE`.

    Args:
        worker: A validated worker.

    Returns:
        The worker function.

    Raises:
        ImportError: If the file or module cannot be imported or does not define the function.
    """
    try:
        return _resolve_function(worker.function, worker.file)
    except _ResolveError as e:
        raise ImportError(f"worker {worker.name!r}: {e}") from e.__cause__


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


# --------------------------------------------------------------------------------------------
# Function resolution
# --------------------------------------------------------------------------------------------


class _ResolveError(Exception):
    """A worker function could not be resolved; the message says why and what to do."""

    def __init__(self, message: str, key: str = "function") -> None:
        super().__init__(message)
        self.key = key


_USER_MODULES: dict[Path, types.ModuleType] = {}
_IMPORT_LOCK = threading.RLock()


def _user_module_name(path: Path) -> str:
    stem = re.sub(r"\W", "_", path.stem) or "module"
    if stem[0].isdigit():
        stem = f"_{stem}"
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return f"{USER_MODULE_PACKAGE}.{stem}_{digest}"


def _import_user_module(path: Path) -> types.ModuleType:
    """Imports a user file under a unique name; cached per absolute path.

    The module is in ``sys.modules`` before it runs (dataclasses and pickle find it). Its
    directory is on ``sys.path`` while it runs, so it can import helper modules next to it.
    No bytecode cache is written.
    """
    path = path.resolve()
    with _IMPORT_LOCK:
        cached = _USER_MODULES.get(path)
        if cached is not None:
            return cached
        parent = sys.modules.get(USER_MODULE_PACKAGE)
        if parent is None:
            parent = types.ModuleType(
                USER_MODULE_PACKAGE, "User worker function files loaded by mimocorb2."
            )
            parent.__path__ = []
            sys.modules[USER_MODULE_PACKAGE] = parent
        name = _user_module_name(path)
        loader = importlib.machinery.SourceFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, path, loader=loader)
        if spec is None:  # pragma: no cover - a loader was given
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        directory = str(path.parent)
        sys.path.insert(0, directory)
        write_bytecode = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
        try:
            loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        finally:
            sys.dont_write_bytecode = write_bytecode
            with contextlib.suppress(ValueError):
                sys.path.remove(directory)
        setattr(parent, name.rpartition(".")[2], module)
        _USER_MODULES[path] = module
        return module


def _public_callables(module: types.ModuleType) -> list[str]:
    return sorted(
        n for n, v in vars(module).items() if not n.startswith("_") and inspect.isfunction(v)
    )


def _resolve_function(function: str, file: Path | None) -> Callable[[Any], Any]:
    """Resolves a worker function; raises :class:`_ResolveError` with a helpful message."""
    if file is not None:
        if not file.is_file():
            raise _ResolveError(f"function file {file} not found", "file")
        try:
            module = _import_user_module(file)
        except (Exception, SystemExit) as e:
            raise _ResolveError(f"importing {file} failed: {type(e).__name__}: {e}", "file") from e
        obj: Any = module
        for part in function.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                defined = _public_callables(module)
                raise _ResolveError(
                    f"function {function!r} is not defined in {file}"
                    f"{_did_you_mean(function, defined)}; functions defined there: "
                    f"{', '.join(defined) or 'none'}"
                )
        if not callable(obj):
            raise _ResolveError(
                f"{function!r} in {file} has type {type(obj).__name__}, not a function"
            )
        return obj

    module_part, _, attr = function.rpartition(".")
    if not module_part or not attr:
        raise _ResolveError(
            f"no prebuilt function {function!r}: prebuilt functions are named "
            "'<module>.<function>', e.g. 'exporters.drain'; for a function in your own file "
            "add 'file: <path to .py file>'"
        )
    module_name = f"{PREBUILT_PACKAGE}.{module_part}"
    try:
        prebuilt = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise _ResolveError(
                f"no prebuilt function {function!r}: there is no prebuilt module "
                f"{module_name!r}; check the name, or add 'file: <path to .py file>' for a "
                "function in your own file"
            ) from e
        raise _ResolveError(
            f"importing prebuilt module {module_name} failed: {type(e).__name__}: {e}"
        ) from e
    except (Exception, SystemExit) as e:
        raise _ResolveError(
            f"importing prebuilt module {module_name} failed: {type(e).__name__}: {e}"
        ) from e
    func = getattr(prebuilt, attr, None)
    if func is None or not callable(func):
        defined = _public_callables(prebuilt)
        raise _ResolveError(
            f"no prebuilt function {function!r}: module {module_name} has no function "
            f"{attr!r}{_did_you_mean(attr, defined)}; available: "
            f"{', '.join(f'{module_part}.{n}' for n in defined) or 'none'}"
        )
    return func


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _close(word: Any, candidates: Iterable[str]) -> list[str]:
    """Returns the candidate closest to ``word`` (case-insensitive) as a 0- or 1-item list."""
    if not isinstance(word, str):
        return []
    by_lower: dict[str, str] = {}
    for c in candidates:
        by_lower.setdefault(c.lower(), c)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return [by_lower[c] for c in close]


def _did_you_mean(word: Any, candidates: Iterable[str]) -> str:
    """Returns `` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = _close(word, candidates)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _got(value: Any) -> str:
    """Describes a wrong value for a message: its type and, if not null, its repr."""
    return "nothing (null)" if value is None else f"{type(value).__name__} {value!r}"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class _Validator:
    """Collects every problem of one setup, then builds the :class:`Setup` or raises."""

    def __init__(self, setup: Any, setup_dir: str | Path, source: str) -> None:
        self.setup = setup
        self.setup_dir = Path(setup_dir).expanduser().resolve()
        self.source = source
        self.errors: list[str] = []
        self.buffer_names: list[str] = []
        self.buffers_ok = True  # Buffers is a mapping: undefined names can be reported
        self.workers_ok = True  # Workers is a mapping: unused buffers can be reported
        self.suggested: set[str] = set()  # keys offered as "did you mean" in the current entry
        self.top_suggested: set[str] = set()  # the same for the top level

    def error(self, where: str, message: str) -> None:
        self.errors.append(
            f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}"
        )

    def run(self) -> Setup:
        setup = self.setup
        if not isinstance(setup, Mapping):
            self.error(
                "",
                f"the setup must be a mapping with the keys 'Buffers' and 'Workers', "
                f"got {_got(setup)}",
            )
            raise SetupValidationError(self.errors, self.source)

        self.check_top_level_keys(setup)
        base_config = self.load_config(setup.get("base_config"), "key 'base_config'")
        target = self.target_directory(setup.get("target_directory"))
        buffers = self.buffers(setup)
        self.buffer_specs = buffers
        workers_raw = self.workers_mapping(setup)
        workers: dict[str, WorkerSpec] = {}
        for name, entry in workers_raw.items():
            spec = self.worker(name, entry, base_config or {}, buffers_defined=self.buffer_names)
            if spec is not None:
                workers[name] = spec
        if self.workers_ok:
            self.check_flow(workers_raw)

        if self.errors:
            raise SetupValidationError(self.errors, self.source)
        assert target is not None and base_config is not None
        return Setup(
            setup_file=None,
            setup_dir=self.setup_dir,
            target_directory=target,
            buffers=buffers,
            workers=workers,
            base_config=base_config,
            raw=copy.deepcopy(dict(setup)),
        )

    # ---- top level -------------------------------------------------------------------------

    def check_top_level_keys(self, setup: Mapping[str, Any]) -> None:
        for key in setup:
            if key in TOP_LEVEL_KEYS:
                continue
            if isinstance(key, str) and key.endswith("template"):
                continue  # YAML-anchor templates such as osc_template: &osc {...}
            self.top_suggested.update(_close(key, TOP_LEVEL_KEYS))
            self.error(
                "",
                f"unknown top-level key {key!r}{_did_you_mean(key, TOP_LEVEL_KEYS)}; allowed "
                f"keys are {', '.join(TOP_LEVEL_KEYS)}, and keys ending in '_template' for "
                "YAML anchors",
            )

    def load_config(self, value: Any, where: str) -> dict[str, Any] | None:
        try:
            return load_config(value, self.setup_dir, f"{self.source}: {where}")
        except ConfigError as e:
            self.errors.append(str(e))
            return None

    def target_directory(self, value: Any) -> Path | None:
        if value is None:
            value = DEFAULT_TARGET_DIRECTORY
        if not isinstance(value, str | Path) or not str(value).strip():
            self.error(
                "key 'target_directory'",
                f"expected a directory path, got {_got(value)}; write e.g. "
                "'target_directory: target' (relative to the setup file's directory, '~' and "
                "absolute paths allowed)",
            )
            return None
        return Path(resolve_path(value, self.setup_dir)).resolve()

    # ---- buffers ---------------------------------------------------------------------------

    def buffers(self, setup: Mapping[str, Any]) -> dict[str, BufferSpec]:
        if "Buffers" not in setup:
            self.buffers_ok = False
            if "Buffers" in self.top_suggested:
                return {}  # the typo message already points here
            self.error(
                "",
                "the key 'Buffers' is missing; add 'Buffers:' with one entry per buffer "
                "(slot_count, data_length, data_dtype)",
            )
            return {}
        raw = setup["Buffers"]
        if not isinstance(raw, Mapping):
            self.buffers_ok = False
            self.error(
                "key 'Buffers'",
                f"expected a mapping of buffer names to buffer settings, got {_got(raw)}",
            )
            return {}
        out: dict[str, BufferSpec] = {}
        for name, entry in raw.items():
            if not isinstance(name, str) or not name:
                self.error("Buffers", f"buffer name {name!r} must be a non-empty string")
                continue
            self.buffer_names.append(name)
            spec = self.buffer(name, entry)
            if spec is not None:
                out[name] = spec
        return out

    def buffer(self, name: str, entry: Any) -> BufferSpec | None:
        where = f"buffer {name!r}"
        if not isinstance(entry, Mapping):
            self.error(
                where,
                f"expected a mapping with slot_count, data_length and data_dtype, got "
                f"{_got(entry)}",
            )
            return None
        ok = True
        self.suggested = set()
        for key in entry:
            if key not in BUFFER_KEYS:
                ok = False
                self.suggested.update(_close(key, BUFFER_KEYS))
                self.error(
                    where,
                    f"unknown key {key!r}{_did_you_mean(key, BUFFER_KEYS)}; allowed keys are "
                    f"{', '.join(BUFFER_KEYS)}",
                )
        slot_count = self.positive_int(where, entry, "slot_count", required=True, example=32)
        data_length = self.positive_int(where, entry, "data_length", required=True, example=1)
        dtype = self.dtype(where, entry)
        overwrite = entry.get("overwrite", False)
        if overwrite is None:
            overwrite = False
        if not isinstance(overwrite, bool):
            ok = False
            self.error(
                f"{where}, key 'overwrite'",
                f"expected true or false, got {_got(overwrite)}",
            )
        if not ok or slot_count is None or data_length is None or dtype is None:
            return None
        return BufferSpec(name, slot_count, data_length, dtype, overwrite)

    def positive_int(
        self,
        where: str,
        entry: Mapping[str, Any],
        key: str,
        *,
        required: bool = False,
        default: int | None = None,
        minimum: int = 1,
        example: int = 1,
    ) -> int | None:
        if key not in entry or (entry[key] is None and not required):
            if required:
                if key not in self.suggested:  # else the typo message already points here
                    self.error(where, f"the key {key!r} is missing; add e.g. '{key}: {example}'")
                return None
            return default
        value = entry[key]
        if not _is_int(value) or value < minimum:
            self.error(
                f"{where}, key {key!r}",
                f"expected a whole number >= {minimum}, got {_got(value)}; "
                f"write e.g. '{key}: {example}'",
            )
            return None
        return int(value)

    def dtype(self, where: str, entry: Mapping[str, Any]) -> np.dtype | None:
        if "data_dtype" not in entry:
            if "data_dtype" in self.suggested:
                return None
            self.error(
                where,
                "the key 'data_dtype' is missing; add a mapping of field names to numpy types, "
                "e.g. 'data_dtype: {ch1: float32, ch2: int16}'",
            )
            return None
        spec = entry["data_dtype"]
        key = f"{where}, key 'data_dtype'"
        if not isinstance(spec, Mapping) or not spec:
            self.error(
                key,
                f"expected a mapping of field names to numpy types, got {_got(spec)}; "
                "write e.g. 'data_dtype: {{ch1: float32, ch2: int16}}'",
            )
            return None
        ok = True
        for field, value in spec.items():
            try:
                np.dtype(value)
            except (TypeError, ValueError) as e:
                ok = False
                self.error(
                    f"{key}, field {field!r}",
                    f"{value!r} is not a numpy data type ({e}); use e.g. float32, float64, "
                    "int16, int32, uint8 or S10",
                )
        if not ok:
            return None
        try:
            return make_dtype(spec, key)
        except ValueError as e:
            self.errors.append(f"{self.source}: {e}")
            return None

    # ---- workers ---------------------------------------------------------------------------

    def workers_mapping(self, setup: Mapping[str, Any]) -> Mapping[str, Any]:
        if "Workers" not in setup:
            self.workers_ok = False
            if "Workers" in self.top_suggested:
                return {}  # the typo message already points here
            self.error(
                "",
                "the key 'Workers' is missing; add 'Workers:' with one entry per worker "
                "(function, file, sources, sinks, observes, config)",
            )
            return {}
        raw = setup["Workers"]
        if not isinstance(raw, Mapping) or not raw:
            self.workers_ok = False
            self.error(
                "key 'Workers'",
                f"expected a mapping of worker names to worker settings, got {_got(raw)}",
            )
            return {}
        out: dict[str, Any] = {}
        for name, entry in raw.items():
            if not isinstance(name, str) or not name:
                self.error("Workers", f"worker name {name!r} must be a non-empty string")
                continue
            out[name] = entry
        return out

    def worker(
        self,
        name: str,
        entry: Any,
        base_config: dict[str, Any],
        buffers_defined: list[str],
    ) -> WorkerSpec | None:
        where = f"worker {name!r}"
        if not isinstance(entry, Mapping):
            self.error(
                where,
                f"expected a mapping with at least 'function', got {_got(entry)}",
            )
            return None
        n_errors = len(self.errors)
        self.suggested = set()
        for key in entry:
            if key not in WORKER_KEYS:
                self.suggested.update(_close(key, WORKER_KEYS))
                self.error(
                    where,
                    f"unknown key {key!r}{_did_you_mean(key, WORKER_KEYS)}; allowed keys are "
                    f"{', '.join(WORKER_KEYS)}",
                )

        function = entry.get("function")
        if function is None and "function" in self.suggested:
            pass  # the typo message already points here
        elif function is None:
            self.error(
                where,
                "the key 'function' is missing; add 'function: <name>' (with 'file: <path>' "
                "for your own function, without 'file' for a prebuilt one such as "
                "'exporters.drain')",
            )
        elif not isinstance(function, str) or not function.strip():
            self.error(
                f"{where}, key 'function'",
                f"expected a function name, got {_got(function)}",
            )
            function = None

        file = self.function_file(where, entry.get("file"))
        config = self.load_config(entry.get("config"), f"{where}, key 'config'")
        processes = self.positive_int(where, entry, "number_of_processes", default=1, example=1)
        lists = {key: self.buffer_list(where, entry, key, buffers_defined) for key in BUFFER_LISTS}
        restart = self.restart(where, entry)
        max_restarts = self.positive_int(
            where, entry, "max_restarts", default=DEFAULT_MAX_RESTARTS, minimum=0, example=3
        )

        func = None
        if function is not None and file is not False:
            try:
                func = _resolve_function(function, file)
            except _ResolveError as e:
                self.error(f"{where}, key {e.key!r}", str(e))
        if func is not None and all(v is not None for v in lists.values()):
            self.check_template(where, function, func, lists)
            self.check_config(where, func, {**base_config, **(config or {})}, lists["sinks"])

        if len(self.errors) != n_errors:
            return None
        assert function is not None and file is not False and config is not None
        assert processes is not None and restart is not None and max_restarts is not None
        return WorkerSpec(
            name=name,
            function=function,
            file=file,
            config={**base_config, **config},
            number_of_processes=processes,
            sources=lists["sources"] or (),
            sinks=lists["sinks"] or (),
            observes=lists["observes"] or (),
            restart=restart,
            max_restarts=max_restarts,
        )

    def function_file(self, where: str, value: Any) -> Path | bool | None:
        """Returns the resolved file, None for a prebuilt function, False on error."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str | Path):
            self.error(
                f"{where}, key 'file'",
                f"expected a path to a .py file, got {_got(value)}",
            )
            return False
        path = Path(resolve_path(value, self.setup_dir)).resolve()
        if not path.is_file():
            self.error(
                f"{where}, key 'file'",
                f"function file {value!r} not found (looked for {path}); paths are relative to "
                "the setup file's directory; leave 'file' out for a prebuilt function",
            )
            return False
        return path

    def buffer_list(
        self, where: str, entry: Mapping[str, Any], key: str, defined: list[str]
    ) -> tuple[str, ...] | None:
        value = entry.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            self.error(
                f"{where}, key {key!r}",
                f"expected a list of buffer names, got the string {value!r}; write "
                f"'{key}: [{value}]'",
            )
            return None
        if not isinstance(value, list | tuple):
            self.error(
                f"{where}, key {key!r}",
                f"expected a list of buffer names, got {_got(value)}; write "
                f"e.g. '{key}: [buffer_name]'",
            )
            return None
        ok = True
        seen: list[str] = []
        for item in value:
            if not isinstance(item, str):
                ok = False
                self.error(
                    f"{where}, key {key!r}",
                    f"buffer names must be strings, got {_got(item)}",
                )
            elif item not in defined:
                ok = False
                if not self.buffers_ok:
                    continue
                defined_text = ", ".join(defined) or "none"
                self.error(
                    f"{where}, key {key!r}",
                    f"buffer {item!r} is not defined under 'Buffers'"
                    f"{_did_you_mean(item, defined)}; defined buffers: {defined_text}",
                )
            elif item in seen:
                ok = False
                self.error(
                    f"{where}, key {key!r}",
                    f"buffer {item!r} is listed twice; list each buffer once",
                )
            else:
                seen.append(item)
        return tuple(seen) if ok else None

    def restart(self, where: str, entry: Mapping[str, Any]) -> str | None:
        value = entry.get("restart", "no")
        if value is None or value is False:  # YAML 1.1 reads a bare `no` as false
            value = "no"
        if value not in RESTART_POLICIES:
            self.error(
                f"{where}, key 'restart'",
                f"expected 'no' or 'on-failure', got {_got(value)}; write "
                "'restart: on-failure' or leave the key out",
            )
            return None
        return str(value)

    def check_config(
        self, where: str, func: Any, config: dict[str, Any], sinks: list[str] | None
    ) -> None:
        """Runs the function's own ``validate_config(config, sink_dtype, data_length)``.

        Hardware importers check their ranges there, before anything starts.
        """
        check = getattr(func, "validate_config", None)
        if not callable(check):
            return
        specs = getattr(self, "buffer_specs", {}) or {}
        spec = specs.get(sinks[0]) if sinks and len(sinks) == 1 else None
        try:
            problems = check(
                config,
                spec.data_dtype if spec else None,
                spec.data_length if spec else None,
            )
        except Exception as e:
            self.error(where, f"checking the configuration failed: {type(e).__name__}: {e}")
            return
        for problem in problems:
            self.error(f"{where}, key 'config'", problem)

    def check_template(
        self,
        where: str,
        function: str,
        func: Callable[..., Any],
        lists: Mapping[str, tuple[str, ...] | None],
    ) -> None:
        template = function_template(func)
        if template is None:
            return
        rules = TEMPLATE_RULES[template]
        counts = [len(lists[key] or ()) for key in BUFFER_LISTS]
        if all(rule.accepts(n) for rule, n in zip(rules, counts, strict=True)):
            return
        nouns = ("source", "sink", "observe")
        need = ", ".join(r.describe(n) for r, n in zip(rules, nouns, strict=True))
        have = ", ".join(_plural(c, n) for c, n in zip(counts, nouns, strict=True))
        self.error(
            where,
            f"function {function!r} is an {template} (Type in its docstring); {template} workers "
            f"need {need}, but this worker has {have}; fix its sources/sinks/observes",
        )

    # ---- data flow ---------------------------------------------------------------------------

    def check_flow(self, workers: Mapping[str, Any]) -> None:
        written: set[str] = set()
        read: set[str] = set()
        for entry in workers.values():
            if not isinstance(entry, Mapping):
                continue
            for key, target in (("sinks", written), ("sources", read), ("observes", read)):
                value = entry.get(key)
                if isinstance(value, list | tuple):
                    target.update(v for v in value if isinstance(v, str))
        for name in self.buffer_names:
            where = f"buffer {name!r}"
            if name not in written and name not in read:
                self.error(
                    where,
                    "no worker uses it; list it in one worker's 'sinks' and another's "
                    "'sources' or 'observes', or remove it",
                )
            elif name not in written:
                self.error(
                    where,
                    "no worker writes it; list it in the 'sinks' of the worker producing its data",
                )
            elif name not in read:
                self.error(
                    where,
                    "no worker reads it; list it in a worker's 'sources' or 'observes' (e.g. "
                    "an 'exporters.drain' worker), or remove it",
                )
