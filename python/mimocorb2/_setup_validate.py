"""Setup validation: the collector behind :func:`mimocorb2._setup.parse_setup`.

:class:`_Validator` walks a setup mapping once and collects *every* problem, each naming the
setup file, the buffer or worker, the key and the fix, then either builds the
:class:`~mimocorb2._setup.Setup` or raises :class:`~mimocorb2.exceptions.SetupValidationError`
listing them all. Worker functions are resolved (imported) through
:mod:`mimocorb2._functions_import` to check that they exist, fit the template named in their
docstring and accept their configuration. Validation creates nothing on disk.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2._config import ConfigError, load_config, resolve_path
from mimocorb2._dtypes import dtype_to_json, make_dtype
from mimocorb2._functions_import import _close, _did_you_mean, _resolve_function, _ResolveError
from mimocorb2._limits import (
    MAX_DTYPE_JSON,
    MAX_PROCESSES,
    MAX_RESTARTS,
    MAX_SLOT_DATA_BYTES,
    MAX_SLOTS,
    MAX_WRITERS,
    name_problem,
    preview,
)
from mimocorb2._setup_spec import (
    BUFFER_KEYS,
    BUFFER_LISTS,
    DEFAULT_MAX_RESTARTS,
    DEFAULT_TARGET_DIRECTORY,
    RESTART_POLICIES,
    TEMPLATE_RULES,
    TOP_LEVEL_KEYS,
    WORKER_KEYS,
    BufferSpec,
    Setup,
    WorkerSpec,
    function_template,
)
from mimocorb2.exceptions import SetupValidationError


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


MAX_ERRORS = 100
"""Most problems listed in one SetupValidationError; the rest are counted."""
MAX_FUNCTION_NAME = 200
"""Longest ``function`` value (a dotted Python name)."""
MAX_FIELDS = 1000
"""Most fields of a data_dtype (their description must fit MAX_DTYPE_JSON bytes anyway)."""


def _got(value: Any) -> str:
    """Describes a wrong value for a message: its type and, if not null, a short preview."""
    return "nothing (null)" if value is None else f"{type(value).__name__} {preview(value)}"


def _did_you_mean_short(word: Any, candidates: tuple[str, ...]) -> str:
    """:func:`_did_you_mean` for plausible typos only (comparing long texts costs time)."""
    return _did_you_mean(word, candidates) if isinstance(word, str) and len(word) <= 64 else ""


def _close_short(word: Any, candidates: tuple[str, ...]) -> list[str]:
    """:func:`_close` for plausible typos only."""
    return _close(word, candidates) if isinstance(word, str) and len(word) <= 64 else []


def _os_reason(error: Exception) -> str:
    """The reason of an OSError or ValueError from a path operation, without the path."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return preview(str(error), 120)


def _path_too_long(path: Path) -> str:
    """Why the system would refuse ``path`` as too long (empty if it would not)."""
    if len(os.fsencode(str(path))) >= 4096 or any(len(os.fsencode(p)) > 255 for p in path.parts):
        return "File name too long"
    return ""


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# Reader groups a buffer with delivery every_worker can have (the core's MAX_GROUPS).
MAX_GROUPS = 16


class _Validator:
    """Collects every problem of one setup, then builds the :class:`Setup` or raises."""

    def __init__(self, setup: Any, setup_dir: str | Path, source: str) -> None:
        self.setup = setup
        self.setup_dir = Path(setup_dir).expanduser().resolve()
        self.source = source
        self.errors: list[str] = []
        self.buffer_names: list[str] = []
        self.buffer_set: set[str] = set()  # the same as a set, for lookups
        self.buffers_ok = True  # Buffers is a mapping: undefined names can be reported
        self.workers_ok = True  # Workers is a mapping: unused buffers can be reported
        self.suggested: set[str] = set()  # keys offered as "did you mean" in the current entry
        self.top_suggested: set[str] = set()  # the same for the top level
        self.more_errors = 0  # problems beyond MAX_ERRORS, counted only

    def error(self, where: str, message: str) -> None:
        self.add(f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}")

    def full(self) -> bool:
        """Whether MAX_ERRORS problems are listed; then loops only count (:meth:`skip`)."""
        return len(self.errors) >= MAX_ERRORS

    def skip(self) -> bool:
        """Counts a problem without building its message once the list is full."""
        if len(self.errors) < MAX_ERRORS:
            return False
        self.more_errors += 1
        return True

    def add(self, problem: str) -> None:
        """Records one complete problem message (beyond MAX_ERRORS: counts it)."""
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(problem)
        else:
            self.more_errors += 1

    def fail(self) -> SetupValidationError:
        """The error listing every recorded problem."""
        errors = list(self.errors)
        if self.more_errors:
            errors.append(
                f"{self.source}: {self.more_errors} more problem(s) not listed; fix the ones "
                "above first"
            )
        return SetupValidationError(errors, self.source)

    def run(self) -> Setup:
        setup = self.setup
        if not isinstance(setup, Mapping):
            self.error(
                "",
                f"the setup must be a mapping with the keys 'Buffers' and 'Workers', "
                f"got {_got(setup)}",
            )
            raise self.fail()

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
            self.check_writers(workers)
            self.check_groups(buffers, workers)

        if self.errors or self.more_errors:
            raise self.fail()
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
            if self.skip():
                continue
            self.top_suggested.update(_close_short(key, TOP_LEVEL_KEYS))
            self.error(
                "",
                f"unknown top-level key {preview(key)}{_did_you_mean_short(key, TOP_LEVEL_KEYS)}; "
                "allowed "
                f"keys are {', '.join(TOP_LEVEL_KEYS)}, and keys ending in '_template' for "
                "YAML anchors",
            )
        from mimocorb2._report import options_problems  # Options: report, report_hooks

        for where, problem in options_problems(setup.get("Options"), self.setup_dir):
            self.error(where, problem)

    def load_config(self, value: Any, where: str) -> dict[str, Any] | None:
        try:
            return load_config(value, self.setup_dir, f"{self.source}: {where}")
        except ConfigError as e:
            self.add(str(e))
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
        try:
            path = Path(resolve_path(value, self.setup_dir)).resolve()
            reason = _path_too_long(path)
        except (OSError, ValueError) as e:  # a name too long, a NUL byte
            reason = _os_reason(e)
        if reason:
            self.error(
                "key 'target_directory'",
                f"the directory {preview(str(value))} cannot be used ({reason}); write "
                "an existing or creatable directory path",
            )
            return None
        return path

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
            problem = name_problem(name, "buffer")
            if problem is not None:
                self.error("Buffers", problem)
                if not isinstance(name, str) or not name:
                    continue
            self.buffer_names.append(name)
            spec = self.buffer(name, entry)
            if spec is not None:
                out[name] = spec
        return out

    def buffer(self, name: str, entry: Any) -> BufferSpec | None:
        where = f"buffer {preview(name)}"
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
                if self.skip():
                    continue
                self.suggested.update(_close_short(key, BUFFER_KEYS))
                self.error(
                    where,
                    f"unknown key {preview(key)}{_did_you_mean_short(key, BUFFER_KEYS)}; allowed "
                    f"keys are {', '.join(BUFFER_KEYS)}",
                )
        slot_count = self.positive_int(
            where,
            entry,
            "slot_count",
            required=True,
            example=32,
            maximum=MAX_SLOTS,
            why="the most slots a buffer can have; fewer slots of more data_length each hold "
            "as much",
        )
        data_length = self.positive_int(where, entry, "data_length", required=True, example=1)
        dtype = self.dtype(where, entry)
        if data_length is not None and dtype is not None:
            data_length = self.slot_size(where, data_length, dtype)
        overwrite = entry.get("overwrite", False)
        if overwrite is None:
            overwrite = False
        if not isinstance(overwrite, bool):
            ok = False
            self.error(
                f"{where}, key 'overwrite'",
                f"expected true or false, got {_got(overwrite)}",
            )
        delivery = entry.get("delivery", "compete")
        if delivery is None:
            delivery = "compete"
        if delivery not in ("compete", "every_worker"):
            ok = False
            self.error(
                f"{where}, key 'delivery'",
                f"expected 'compete' (each event goes to one reading process, the default) or "
                f"'every_worker' (every worker reading the buffer gets every event), got "
                f"{_got(delivery)}",
            )
        if not ok or slot_count is None or data_length is None or dtype is None:
            return None
        return BufferSpec(name, slot_count, data_length, dtype, overwrite, str(delivery))

    def positive_int(
        self,
        where: str,
        entry: Mapping[str, Any],
        key: str,
        *,
        required: bool = False,
        default: int | None = None,
        minimum: int = 1,
        maximum: int | None = None,
        example: int = 1,
        why: str = "",
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
        if maximum is not None and value > maximum:
            self.error(
                f"{where}, key {key!r}",
                f"{preview(value)} is more than the limit of {maximum} ({why}); write a number "
                f"from {minimum} to {maximum}",
            )
            return None
        return int(value)

    def slot_size(self, where: str, data_length: int, dtype: np.dtype) -> int | None:
        """Checks that one slot's data fits the core; returns data_length or None."""
        size = data_length * dtype.itemsize
        if size <= MAX_SLOT_DATA_BYTES:
            return data_length
        self.error(
            f"{where}, key 'data_length'",
            f"{preview(data_length)} elements of {dtype.itemsize} bytes need {size:.3g} bytes "
            f"per slot, more than the limit of {MAX_SLOT_DATA_BYTES} bytes (1 TiB); reduce "
            "data_length or the data_dtype",
        )
        return None

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
        if len(spec) > MAX_FIELDS:
            self.error(
                key,
                f"{len(spec)} fields are more than the limit of {MAX_FIELDS}; use fewer fields, "
                "e.g. one field with data_length elements per event",
            )
            return None
        ok = True
        for field, value in spec.items():
            reason = "it is not a type name" if not isinstance(value, str) else ""
            if not reason:
                try:
                    np.dtype(value)
                except (TypeError, ValueError) as e:
                    reason = preview(str(e), 120)
            if reason:
                ok = False
                self.error(
                    f"{key}, field {preview(field)}",
                    f"{preview(value)} is not a numpy data type ({reason}); use e.g. float32, "
                    "float64, int16, int32, uint8 or S10",
                )
        if not ok:
            return None
        try:
            dtype = make_dtype(spec, key)
        except ValueError as e:
            self.add(f"{self.source}: {e}")
            return None
        size = len(dtype_to_json(dtype).encode())
        if size > MAX_DTYPE_JSON:
            self.error(
                key,
                f"the data type's description has {size} bytes, more than the limit of "
                f"{MAX_DTYPE_JSON}; use fewer or shorter field names",
            )
            return None
        return dtype

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
            problem = name_problem(name, "worker")
            if problem is not None:
                self.error("Workers", problem)
                if not isinstance(name, str) or not name:
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
        where = f"worker {preview(name)}"
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
                if self.skip():
                    continue
                self.suggested.update(_close_short(key, WORKER_KEYS))
                self.error(
                    where,
                    f"unknown key {preview(key)}{_did_you_mean_short(key, WORKER_KEYS)}; allowed "
                    f"keys are {', '.join(WORKER_KEYS)}",
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
        elif len(function) > MAX_FUNCTION_NAME:
            self.error(
                f"{where}, key 'function'",
                f"the function name {preview(function)} has {len(function)} characters, more "
                f"than the limit of {MAX_FUNCTION_NAME}; write the name of a function, e.g. "
                "'exporters.drain'",
            )
            function = None

        file = self.function_file(where, entry.get("file"))
        config = self.load_config(entry.get("config"), f"{where}, key 'config'")
        processes = self.positive_int(
            where,
            entry,
            "number_of_processes",
            default=1,
            example=1,
            maximum=MAX_PROCESSES,
            why="a buffer can register at most that many writers",
        )
        lists = {key: self.buffer_list(where, entry, key, buffers_defined) for key in BUFFER_LISTS}
        restart = self.restart(where, entry)
        max_restarts = self.positive_int(
            where,
            entry,
            "max_restarts",
            default=DEFAULT_MAX_RESTARTS,
            minimum=0,
            example=3,
            maximum=MAX_RESTARTS,
            why="a worker failing that often needs fixing, not restarting",
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
        try:
            path = Path(resolve_path(value, self.setup_dir)).resolve()
            found = path.is_file()
        except (OSError, ValueError) as e:  # a name too long, a NUL byte, an I/O error
            self.error(
                f"{where}, key 'file'",
                f"function file {preview(str(value))} cannot be used ({_os_reason(e)}); write "
                "the path of a .py file, relative to the setup file's directory",
            )
            return False
        if not found:
            self.error(
                f"{where}, key 'file'",
                f"function file {preview(str(value))} not found (looked for "
                f"{preview(str(path), 200)}); paths are relative to the setup file's directory; "
                "leave 'file' out for a prebuilt function",
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
                f"expected a list of buffer names, got the string {preview(value)}; write "
                f"'{key}: [{preview(value)[1:-1]}]'",
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
        if defined is not self.buffer_names:
            known = set(defined)
        elif len(self.buffer_set) == len(defined):
            known = self.buffer_set
        else:
            known = self.buffer_set = set(defined)
        for item in value:
            is_known = isinstance(item, str) and item in known
            if not is_known or item in seen:
                ok = False
                reported = is_known or self.buffers_ok or not isinstance(item, str)
                if reported and self.skip():
                    continue
            if not isinstance(item, str):
                self.error(
                    f"{where}, key {key!r}",
                    f"buffer names must be strings, got {_got(item)}",
                )
            elif item not in known:
                if not self.buffers_ok:
                    continue
                shown = [preview(b) for b in defined[:20]]
                defined_text = ", ".join(shown) + (", ..." if len(defined) > 20 else "")
                self.error(
                    f"{where}, key {key!r}",
                    f"buffer {preview(item)} is not defined under 'Buffers'"
                    f"{_did_you_mean_short(item, tuple(defined[:1000]))}; defined buffers: "
                    f"{defined_text or 'none'}",
                )
            elif item in seen:
                self.error(
                    f"{where}, key {key!r}",
                    f"buffer {preview(item)} is listed twice; list each buffer once",
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
            f"function {preview(function)} is an {template} (Type in its docstring); "
            f"{template} workers need {need}, but this worker has {have}; fix its "
            "sources/sinks/observes",
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
            where = f"buffer {preview(name)}"
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

    def check_groups(
        self, buffers: Mapping[str, BufferSpec], workers: Mapping[str, WorkerSpec]
    ) -> None:
        """A buffer with ``delivery: every_worker`` has at most MAX_GROUPS reading workers."""
        for name, spec in buffers.items():
            if spec.delivery != "every_worker":
                continue
            readers = [w for w, ws in workers.items() if name in ws.sources]
            if len(readers) > MAX_GROUPS:
                self.error(
                    f"buffer {preview(name)}, key 'delivery'",
                    f"{len(readers)} workers read it ({', '.join(readers)}), but a buffer with "
                    f"'delivery: every_worker' delivers to at most {MAX_GROUPS} workers; "
                    "split the readers over two buffers (e.g. with a misc.copy worker)",
                )

    def check_writers(self, workers: Mapping[str, WorkerSpec]) -> None:
        """Every buffer can register all the processes writing it."""
        writers_of: dict[str, list[WorkerSpec]] = {}
        for w in workers.values():
            for sink in w.sinks:
                writers_of.setdefault(sink, []).append(w)
        for name, writers in writers_of.items():
            total = sum(w.number_of_processes for w in writers)
            if total > MAX_WRITERS:
                self.error(
                    f"buffer {preview(name)}",
                    f"{total} processes write it ("
                    + ", ".join(f"{preview(w.name)}: {w.number_of_processes}" for w in writers[:5])
                    + (", ..." if len(writers) > 5 else "")
                    + f"), more than the limit of {MAX_WRITERS} writers of one buffer; lower "
                    "their number_of_processes or let fewer workers write it",
                )
