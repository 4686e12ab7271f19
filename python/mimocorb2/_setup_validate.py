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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mimocorb2._config import ConfigError, load_config, resolve_path
from mimocorb2._functions_import import _resolve_function, _ResolveError
from mimocorb2._limits import (
    MAX_PROCESSES,
    MAX_RESTARTS,
    MAX_WRITERS,
    name_problem,
    preview,
)
from mimocorb2._setup_checks import MAX_ERRORS as MAX_ERRORS
from mimocorb2._setup_checks import (
    MAX_FUNCTION_NAME,
    MAX_GROUPS,
    _BufferChecks,
    _close_short,
    _did_you_mean_short,
    _got,
    _os_reason,
    _path_too_long,
    _plural,
)
from mimocorb2._setup_spec import (
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


class _Validator(_BufferChecks):
    """Collects every problem of one setup, then builds the :class:`Setup` or raises."""

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
        from mimocorb2._report_options import options_problems  # report, report_hooks

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
