"""The setup file's JSON Schema (mimocorb2 schema) stays in step with the setup validator.

The keys are compared with the validator's own key lists, and a table of setups, each one
change away from a valid one, must be accepted or refused alike by the schema and the
validator (for everything a schema can express: keys, types, enumerations and limits).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mimocorb2._limits import MAX_PROCESSES, MAX_SLOTS
from mimocorb2._report import _HOOK_KEYS
from mimocorb2._schema import DELIVERY_MODES, setup_schema
from mimocorb2._setup import (
    BUFFER_KEYS,
    RESTART_POLICIES,
    TOP_LEVEL_KEYS,
    WORKER_KEYS,
    parse_setup,
)
from mimocorb2.exceptions import SetupValidationError

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).parent.parent
WORKERS = Path(__file__).parent / "pipelines" / "workers.py"
SCHEMA = setup_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def schema_accepts(setup: Any) -> bool:
    return VALIDATOR.is_valid(setup)


def validator_accepts(setup: Any, setup_dir: Path) -> bool:
    try:
        parse_setup(setup, setup_dir)
    except SetupValidationError:
        return False
    return True


def base() -> dict[str, Any]:
    return {
        "Buffers": {"raw": {"slot_count": 8, "data_length": 4, "data_dtype": {"ch1": "float32"}}},
        "Workers": {
            "gen": {"file": str(WORKERS), "function": "source", "sinks": ["raw"]},
            "out": {"function": "exporters.drain", "sources": ["raw"]},
        },
    }


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_has_every_key_the_validator_accepts_and_no_other() -> None:
    assert set(SCHEMA["properties"]) == set(TOP_LEVEL_KEYS)
    assert SCHEMA["additionalProperties"] is False
    buffer, worker = SCHEMA["$defs"]["buffer"], SCHEMA["$defs"]["worker"]
    assert set(buffer["properties"]) == set(BUFFER_KEYS)
    assert set(worker["properties"]) == set(WORKER_KEYS)
    assert buffer["additionalProperties"] is False and worker["additionalProperties"] is False
    options = SCHEMA["properties"]["Options"]
    assert set(options["properties"]) == {"report", "report_hooks"}
    assert set(options["properties"]["report_hooks"]["items"]["properties"]) == set(_HOOK_KEYS)
    restart = worker["properties"]["restart"]["anyOf"][0]["enum"]
    assert restart == list(RESTART_POLICIES)
    assert buffer["properties"]["delivery"]["anyOf"][1]["enum"] == list(DELIVERY_MODES)
    for spec in (buffer, worker):
        for key, value in spec["properties"].items():
            assert value.get("description") or value.get("$ref"), key


def test_the_examples_and_the_test_setups_follow_the_schema() -> None:
    files = [*sorted(ROOT.glob("examples/**/*.yaml")), ROOT / "tests/setups/valid.yaml"]
    checked = 0
    for path in files:
        setup = yaml.safe_load(path.read_text())
        if not isinstance(setup, dict) or "Workers" not in setup:
            continue  # a worker configuration file
        errors = [e.message for e in VALIDATOR.iter_errors(setup)]
        assert errors == [], (path, errors)
        checked += 1
    assert checked >= 3


def _set(path: str, value: Any) -> Any:
    """A change of base(): set the value at a '/'-separated path (None deletes the key)."""

    def change(setup: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = setup
        for part in parents:
            node = node.setdefault(part, {})
        if value is _DELETE:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)

    change.__name__ = f"{path}={value!r}"[:60]
    return change


def _rename_raw(name: str) -> Any:
    """A change of base(): the buffer raw renamed."""

    def change(setup: dict[str, Any]) -> None:
        setup["Buffers"] = {name: setup["Buffers"]["raw"]}
        setup["Workers"]["gen"]["sinks"] = [name]
        setup["Workers"]["out"]["sources"] = [name]

    change.__name__ = f"rename raw to {name!r}"[:60]
    return change


_DELETE = object()
RAW = "Buffers/raw"
GEN = "Workers/gen"
OUT = "Workers/out"

VALID = [
    _set(f"{RAW}/delivery", "every_worker"),
    _set(f"{RAW}/delivery", None),
    _set(f"{RAW}/overwrite", True),
    _set(f"{RAW}/overwrite", None),
    _set(f"{RAW}/slot_count", MAX_SLOTS),
    _set(f"{GEN}/restart", "on-failure"),
    _set(f"{GEN}/restart", False),  # YAML 1.1 reads a bare `no` as false
    _set(f"{GEN}/restart", None),
    _set(f"{GEN}/max_restarts", 0),
    _set(f"{GEN}/max_restarts", None),
    _set(f"{OUT}/number_of_processes", None),
    _set(f"{OUT}/number_of_processes", MAX_PROCESSES),
    _set(f"{OUT}/file", ""),
    _set(f"{OUT}/file", None),
    _set(f"{OUT}/config", [{"a": 1}, {"b": 2}]),
    _set(f"{OUT}/config", None),
    _set(f"{OUT}/observes", None),
    _set(f"{OUT}/sinks", []),
    _set("base_config", {"a": 1}),
    _set("target_directory", "out"),
    _set("target_directory", None),
    _set("Options", {"report": False}),
    _set("Options", {"report_hooks": None, "anything": 1}),
    _set("Options", 5),  # only the report keys of Options are looked at
    _set("osc_template", {"slot_count": 4}),
    _rename_raw("b-2.x_y"),
]

INVALID = [
    _set("Buffer", {}),
    _set("Workers", {}),
    _set("Workers", []),
    _set("Buffers", []),
    _set("Buffers", _DELETE),
    _set("Workers", _DELETE),
    _rename_raw(".hidden"),
    _rename_raw("a/b"),
    _rename_raw("x" * 241),
    _set("Workers/a b", {"function": "exporters.drain", "sources": []}),
    _set(f"{RAW}/slots", 8),
    _set(f"{RAW}/slot_count", 0),
    _set(f"{RAW}/slot_count", "8"),
    _set(f"{RAW}/slot_count", 1.5),
    _set(f"{RAW}/slot_count", True),
    _set(f"{RAW}/slot_count", MAX_SLOTS + 1),
    _set(f"{RAW}/slot_count", _DELETE),
    _set(f"{RAW}/data_length", 0),
    _set(f"{RAW}/data_dtype", {}),
    _set(f"{RAW}/data_dtype", "float32"),
    _set(f"{RAW}/data_dtype", {"ch1": 5}),
    _set(f"{RAW}/overwrite", "yes"),
    _set(f"{RAW}/delivery", "all"),
    _set(f"{GEN}/proceses", 2),
    _set(f"{GEN}/function", ""),
    _set(f"{GEN}/function", 5),
    _set(f"{GEN}/function", _DELETE),
    _set(f"{OUT}/function", "x" * 201),
    _set(f"{GEN}/file", 5),
    _set(f"{OUT}/number_of_processes", 0),
    _set(f"{OUT}/number_of_processes", MAX_PROCESSES + 1),
    _set(f"{GEN}/max_restarts", -1),
    _set(f"{GEN}/restart", "always"),
    _set(f"{GEN}/restart", True),
    _set(f"{OUT}/sources", "raw"),
    _set(f"{OUT}/sources", [5]),
    _set(f"{GEN}/sinks", ["raw", "raw"]),
    _set(f"{OUT}/config", 5),
    _set("base_config", 5),
    _set("target_directory", ""),
    _set("target_directory", 5),
    _set("Options", {"report": "yes"}),
    _set("Options", {"report_hooks": 5}),
    _set("Options", {"report_hooks": [{"file": "x.py"}]}),
    _set("Options", {"report_hooks": [{"file": "x.py", "function": "f", "extra": 1}]}),
]


@pytest.mark.parametrize(
    ("change", "valid"),
    [(c, True) for c in VALID] + [(c, False) for c in INVALID],
    ids=lambda x: getattr(x, "__name__", str(x)),
)
def test_schema_and_validator_agree(change: Any, valid: bool, tmp_path: Path) -> None:
    setup = base()
    change(setup)
    assert validator_accepts(setup, tmp_path) is valid
    assert schema_accepts(setup) is valid


def test_the_cli_prints_the_schema() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mimocorb2", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == SCHEMA
