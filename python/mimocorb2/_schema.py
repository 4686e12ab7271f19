"""A JSON Schema of the setup file, for editors: ``mimocorb2 schema`` prints it.

An editor that knows the schema (VS Code with the YAML extension, PyCharm, ...) completes the
keys of a setup file, shows their descriptions and marks unknown keys and wrong types while
typing. The schema describes what :mod:`mimocorb2._setup_validate` accepts as far as a schema
can: keys, types, enumerations and limits. What needs the files or the running Python (that a
``file`` exists, that a function fits its buffers, that every buffer is written and read) is
only checked by the validator. ``tests/test_schema.py`` keeps the two in step.

To use it, save it next to the setups and point the editor at it, e.g. with a first line
``# yaml-language-server: $schema=mimocorb2-setup.schema.json`` in the setup file::

    mimocorb2 schema > mimocorb2-setup.schema.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mimocorb2._limits import MAX_NAME_BYTES, MAX_PROCESSES, MAX_RESTARTS, MAX_SLOTS
from mimocorb2._setup import DEFAULT_MAX_RESTARTS, DEFAULT_TARGET_DIRECTORY, RESTART_POLICIES
from mimocorb2._setup_checks import MAX_FIELDS, MAX_FUNCTION_NAME

__all__ = ["main", "setup_schema"]

DELIVERY_MODES = ("compete", "every_worker")
"""The values of a buffer's ``delivery`` key."""

_NAME = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$",
    "maxLength": MAX_NAME_BYTES,
    "description": "Letters, digits, '_', '-' and '.', not starting with '.' (it becomes part "
    "of file names).",
}

_CONFIG = {
    "description": "A mapping of keys to values, the path of a YAML file holding one (relative "
    "to the setup file), or a list of these, merged in order (later keys win).",
    "anyOf": [
        {"type": "null"},
        {"type": "object"},
        {"type": "string", "pattern": r"\S"},
        {"type": "array", "items": {"$ref": "#/$defs/config"}},
    ],
}


def _buffer_list(what: str) -> dict[str, Any]:
    return {
        "description": f"The buffers this worker {what} (names under Buffers, each once).",
        "anyOf": [
            {"type": "null"},
            {"type": "array", "items": {"$ref": "#/$defs/name"}, "uniqueItems": True},
        ],
    }


def _whole(minimum: int, maximum: int | None, description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if description:
        schema["description"] = description
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _buffer() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A ring buffer of slots in shared memory; each slot holds data_length "
        "elements of data_dtype.",
        "required": ["slot_count", "data_length", "data_dtype"],
        "additionalProperties": False,
        "properties": {
            "slot_count": _whole(1, MAX_SLOTS, "Number of slots of the ring."),
            "data_length": _whole(1, None, "Elements of data_dtype per slot (one event)."),
            "data_dtype": {
                "type": "object",
                "description": "Field names and numpy types, e.g. {ch1: float32, ch2: int16}.",
                "minProperties": 1,
                "maxProperties": MAX_FIELDS,
                "additionalProperties": {
                    "type": "string",
                    "description": "A numpy type name: float32, float64, int16, uint8, S10 ...",
                },
            },
            "overwrite": {
                "description": "A mimoCoRB v1 leftover, accepted and ignored.",
                "type": ["boolean", "null"],
            },
            "delivery": {
                "description": "compete (default): each event goes to one reading process; "
                "every_worker: every worker listing the buffer in sources gets every event.",
                "anyOf": [{"type": "null"}, {"enum": list(DELIVERY_MODES)}],
                "default": DELIVERY_MODES[0],
            },
        },
    }


def _worker() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "One or more processes running a worker function.",
        "required": ["function"],
        "additionalProperties": False,
        "properties": {
            "function": {
                "type": "string",
                "pattern": r"\S",
                "maxLength": MAX_FUNCTION_NAME,
                "description": "The function's name: in 'file' if given, else a prebuilt "
                "function '<module>.<name>' (e.g. exporters.drain) or a function pack's "
                "'<pack>.<module>.<name>'.",
            },
            "file": {
                "type": ["string", "null"],
                "description": "The .py file defining the function, relative to the setup "
                "file; leave it out for a prebuilt function.",
            },
            "config": {"$ref": "#/$defs/config"},
            "number_of_processes": {
                "description": "Processes running the function (default 1).",
                "anyOf": [{"type": "null"}, _whole(1, MAX_PROCESSES)],
                "default": 1,
            },
            "sources": _buffer_list("reads"),
            "sinks": _buffer_list("writes"),
            "observes": _buffer_list("looks at without consuming (plots)"),
            "restart": {
                "description": "no (default), or on-failure: start a failed process again.",
                "anyOf": [
                    {"enum": list(RESTART_POLICIES)},
                    {"type": "null"},
                    {"const": False},
                ],
                "default": RESTART_POLICIES[0],
            },
            "max_restarts": {
                "description": "Restarts per process at most (restart: on-failure).",
                "anyOf": [{"type": "null"}, _whole(0, MAX_RESTARTS)],
                "default": DEFAULT_MAX_RESTARTS,
            },
        },
    }


def _options() -> dict[str, Any]:
    from mimocorb2._report_options import _HOOK_KEYS, MAX_HOOKS

    return {
        "description": "Run options (a mapping); keys other than these are kept and not looked at.",
        "properties": {
            "report": {"type": "boolean", "description": "Write report/ after the run."},
            "report_hooks": {
                "type": ["array", "null"],
                "maxItems": MAX_HOOKS,
                "description": "Functions adding figures to the run report.",
                "items": {
                    "type": "object",
                    "required": list(_HOOK_KEYS),
                    "additionalProperties": False,
                    "properties": {key: {"type": "string", "pattern": r"\S"} for key in _HOOK_KEYS},
                },
            },
        },
    }


def setup_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a mimocorb2 setup file.

    Returns:
        The schema as a JSON-compatible dict.
    """
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mimocorb2 setup",
        "description": "Buffers and workers of a mimocorb2 data-acquisition run "
        "(mimocorb2 SETUP.yaml).",
        "type": "object",
        "required": ["Buffers", "Workers"],
        "properties": {
            "Buffers": {
                "type": "object",
                "description": "The buffers, by name.",
                "propertyNames": {"$ref": "#/$defs/name"},
                "additionalProperties": {"$ref": "#/$defs/buffer"},
            },
            "Workers": {
                "type": "object",
                "minProperties": 1,
                "description": "The workers, by name.",
                "propertyNames": {"$ref": "#/$defs/name"},
                "additionalProperties": {"$ref": "#/$defs/worker"},
            },
            "base_config": {
                "$ref": "#/$defs/config",
                "description": "Merged under every worker's config.",
            },
            "target_directory": {
                "type": ["string", "null"],
                "pattern": r"\S",
                "default": DEFAULT_TARGET_DIRECTORY,
                "description": "Where run directories are made, relative to the setup file "
                "('~' and absolute paths allowed).",
            },
            "Options": _options(),
        },
        "patternProperties": {
            "template$": {"description": "A YAML anchor to reuse (e.g. osc_template: &osc)."}
        },
        "additionalProperties": False,
        "$defs": {"name": _NAME, "config": _CONFIG, "buffer": _buffer(), "worker": _worker()},
    }


def main(argv: list[str] | None = None) -> int:
    """``mimocorb2 schema``: prints the JSON Schema of the setup file.

    Args:
        argv: The arguments after ``schema``.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        prog="mimocorb2 schema",
        description="Print the JSON Schema of the setup file (for editor completion and "
        "checking): mimocorb2 schema > mimocorb2-setup.schema.json",
    )
    parser.parse_args(argv)
    json.dump(setup_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
