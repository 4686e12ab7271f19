"""The report keys of a setup's ``Options``: ``report`` (on or off) and ``report_hooks``.

Checked by the setup validator (:func:`options_problems`) and used by the report
(:mod:`mimocorb2._report`), which re-exports these names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mimocorb2._config import resolve_path
from mimocorb2._functions_import import _resolve_function, _ResolveError
from mimocorb2._limits import preview

__all__ = ["MAX_HOOKS", "REPORT_ENV", "options_problems", "report_enabled", "resolve_hook"]

REPORT_ENV = "MIMOCORB2_REPORT"
"""Environment variable: ``0`` turns the report off for every run (the test suite does)."""
MAX_HOOKS = 20
"""Most report hooks one setup may name."""
_HOOK_KEYS = ("file", "function")


def report_enabled(raw_setup: Mapping[str, Any]) -> bool:
    """Whether a run gets a report.

    ``Options: {report: false}`` in the setup, or :data:`REPORT_ENV` set to ``0``, turn it off.
    """
    if os.environ.get(REPORT_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    options = raw_setup.get("Options")
    return not (isinstance(options, Mapping) and options.get("report") is False)


def _got(value: Any) -> str:
    return "nothing (null)" if value is None else f"{type(value).__name__} {preview(value)}"


def resolve_hook(entry: Any, setup_dirs: list[Path]) -> tuple[str, Callable[..., Any]]:
    """The name and function of one ``report_hooks`` entry.

    Args:
        entry: ``{file: PATH, function: NAME}``.
        setup_dirs: Directories a relative ``file`` is looked for in, in order.

    Returns:
        ``(function name, function)``.

    Raises:
        ValueError: Saying what is wrong and how to write the entry.
    """
    form = "write {file: <path of a .py file>, function: <name>}"
    if not isinstance(entry, Mapping):
        raise ValueError(f"expected a mapping, got {_got(entry)}; {form}")
    unknown = [k for k in entry if k not in _HOOK_KEYS]
    if unknown:
        raise ValueError(f"unknown key {preview(unknown[0])}; {form}")
    file, function = entry.get("file"), entry.get("function")
    for key, value in (("file", file), ("function", function)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"key '{key}': expected a text, got {_got(value)}; {form}")
    assert isinstance(file, str) and isinstance(function, str)
    try:
        candidates = [Path(resolve_path(file, d)) for d in setup_dirs]
        path = next((p.resolve() for p in candidates if p.is_file()), None)
    except (OSError, ValueError) as e:
        raise ValueError(f"key 'file': {preview(file)} cannot be used ({e})") from None
    if path is None:
        where = ", ".join(preview(str(d), 200) for d in setup_dirs) or "nowhere"
        raise ValueError(
            f"key 'file': hook file {preview(file)} not found (looked in {where}); paths are "
            "relative to the setup file's directory"
        )
    try:
        return function, _resolve_function(function, path)
    except _ResolveError as e:
        raise ValueError(f"key '{e.key}': {e}") from None


def options_problems(options: Any, setup_dir: Path) -> list[tuple[str, str]]:
    """The problems of the report keys of a setup's ``Options``, for the setup validator.

    ``report`` must be true or false; ``report_hooks`` a list of ``{file, function}``
    entries naming existing functions (their files are imported). Other keys of ``Options``
    are not looked at.

    Args:
        options: The value of ``Options``.
        setup_dir: Directory relative hook files are taken from.

    Returns:
        ``(where, message)`` per problem.
    """
    if not isinstance(options, Mapping):
        return []
    problems = []
    where = "key 'Options'"
    if "report" in options and not isinstance(options["report"], bool):
        problems.append(
            (
                f"{where}, key 'report'",
                f"expected true or false, got {_got(options['report'])}; write "
                "'report: false' to turn the run report off",
            )
        )
    hooks = options.get("report_hooks")
    if hooks is None:
        return problems
    if not isinstance(hooks, list):
        problems.append(
            (
                f"{where}, key 'report_hooks'",
                f"expected a list of {{file, function}} entries, got {_got(hooks)}",
            )
        )
        return problems
    if len(hooks) > MAX_HOOKS:
        problems.append(
            (f"{where}, key 'report_hooks'", f"{len(hooks)} hooks; at most {MAX_HOOKS} are allowed")
        )
        return problems
    for i, entry in enumerate(hooks):
        try:
            resolve_hook(entry, [setup_dir])
        except ValueError as e:
            problems.append((f"{where}, key 'report_hooks', entry {i + 1}", str(e)))
    return problems
