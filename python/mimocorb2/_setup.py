"""Setup files: load the YAML, validate every key, resolve worker functions.

A setup file describes the buffers and the workers of an experiment (spec §2.1). This module
turns it into a :class:`Setup` of :class:`BufferSpec` and :class:`WorkerSpec` records, or raises
:class:`~mimocorb2.exceptions.SetupValidationError` listing *every* problem at once, each naming
the setup file, the buffer or worker, the key and the fix. Validation creates nothing on disk;
the validator itself lives in :mod:`mimocorb2._setup_validate`, the records (re-exported
here) in :mod:`mimocorb2._setup_spec`.

Worker functions come either from a user file (``file:`` relative to the setup directory) or,
without ``file``, from the prebuilt package: ``function: a.b`` is attribute ``b`` of module
``mimocorb2.functions.a``. User files are imported from their full path under a unique module
name (``mimocorb2_user.<stem>_<hash>``), so two files with the same stem, or a file called
``data.py``, never collide with each other or with installed modules (see
:mod:`mimocorb2._functions_import`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mimocorb2._functions_import import (
    PREBUILT_PACKAGE,
    USER_MODULE_PACKAGE,
    _resolve_function,
    _ResolveError,
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
from mimocorb2._setup_validate import _Validator
from mimocorb2._yaml_limits import read_yaml_file
from mimocorb2._yaml_load import YamlError, load_yaml_text
from mimocorb2.exceptions import SetupValidationError

__all__ = [
    "BUFFER_KEYS",
    "BUFFER_LISTS",
    "DEFAULT_MAX_RESTARTS",
    "DEFAULT_TARGET_DIRECTORY",
    "PREBUILT_PACKAGE",
    "RESTART_POLICIES",
    "TEMPLATE_RULES",
    "TOP_LEVEL_KEYS",
    "USER_MODULE_PACKAGE",
    "WORKER_KEYS",
    "BufferSpec",
    "Setup",
    "WorkerSpec",
    "function_template",
    "load_function",
    "load_setup_file",
    "parse_setup",
]

# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def load_setup_file(path: str | Path) -> Setup:
    """Reads and validates a setup YAML file.

    YAML anchors, aliases and ``<<`` merge keys work as with ``yaml.safe_load`` (libyaml's
    loader when present). A key written twice in one mapping is an error naming both lines;
    syntax errors name the file and the line in plain words (see :mod:`mimocorb2._yaml_load`).
    Files over 16 MiB, with more than 100000 values or nested more than 100 levels are
    refused (see :mod:`mimocorb2._yaml_limits`).

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
        data = load_yaml_text(read_yaml_file(file), source)
    except YamlError as e:
        raise SetupValidationError(e.problems, source) from None
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SetupValidationError([f"{source}: cannot be read: {reason}"], source) from None
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
