"""Malformed setups: every mistake gives one clear message naming the file (mimocorb2._setup)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from setup_helpers import FUNCS, base, errors_of, one_error

from mimocorb2._setup import (
    load_setup_file,
    parse_setup,
)
from mimocorb2.exceptions import SetupValidationError

# ---------------------------------------------------------------------------------------------
# Malformed setups
# ---------------------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any], Path], None]:
    def mutate(setup: dict[str, Any], d: Path) -> None:
        *parents, last = path.split(".")
        node = setup
        for p in parents:
            node = node[p]
        node[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any], Path], None]:
    def mutate(setup: dict[str, Any], d: Path) -> None:
        *parents, last = path.split(".")
        node = setup
        for p in parents:
            node = node[p]
        del node[last]

    return mutate


def _rename(path: str, new: str) -> Callable[[dict[str, Any], Path], None]:
    def mutate(setup: dict[str, Any], d: Path) -> None:
        *parents, last = path.split(".")
        node = setup
        for p in parents:
            node = node[p]
        node[new] = node.pop(last)

    return mutate


def _add_unread_buffer(setup: dict[str, Any], d: Path) -> None:
    setup["Buffers"]["spare"] = copy.deepcopy(setup["Buffers"]["raw"])
    setup["Workers"]["gen2"] = {"file": "funcs.py", "function": "gen", "sinks": ["spare"]}


def _add_unwritten_buffer(setup: dict[str, Any], d: Path) -> None:
    setup["Buffers"]["spare"] = copy.deepcopy(setup["Buffers"]["raw"])
    setup["Workers"]["out2"] = {"file": "funcs.py", "function": "drain", "sources": ["spare"]}


def _add_unused_buffer(setup: dict[str, Any], d: Path) -> None:
    setup["Buffers"]["spare"] = copy.deepcopy(setup["Buffers"]["raw"])


def _config_not_mapping(setup: dict[str, Any], d: Path) -> None:
    (d / "list.yaml").write_text("- 1\n- 2\n")
    setup["Workers"]["out"]["config"] = "list.yaml"


def _config_bad_yaml(setup: dict[str, Any], d: Path) -> None:
    (d / "bad.yaml").write_text("a: [1, 2\n")
    setup["Workers"]["out"]["config"] = ["bad.yaml"]


def _import_error(setup: dict[str, Any], d: Path) -> None:
    (d / "broken.py").write_text("def f(io):\n    pass\n\nraise RuntimeError('boom at import')\n")
    setup["Workers"]["out"]["file"] = "broken.py"
    setup["Workers"]["out"]["function"] = "f"


def _syntax_error(setup: dict[str, Any], d: Path) -> None:
    (d / "syntax.py").write_text("def f(io)\n    pass\n")
    setup["Workers"]["out"]["file"] = "syntax.py"


MALFORMED = [
    pytest.param(
        _rename("Workers", "Worker"),
        ["unknown top-level key 'Worker'", "did you mean 'Workers'"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        _set("Optoins", {}),
        ["unknown top-level key 'Optoins'", "did you mean 'Options'", "_template"],
        id="unknown-top-level-key-options",
    ),
    pytest.param(
        _rename("Buffers.raw.slot_count", "slot_cout"),
        ["buffer 'raw'", "unknown key 'slot_cout'", "did you mean 'slot_count'"],
        id="buffer-key-typo",
    ),
    pytest.param(
        _set("Buffers.raw.slot_count", "ten"),
        ["buffer 'raw', key 'slot_count'", "'ten'", "whole number", "slot_count: 32"],
        id="slot-count-string",
    ),
    pytest.param(
        _set("Buffers.raw.slot_count", True),
        ["buffer 'raw', key 'slot_count'", "bool"],
        id="slot-count-bool",
    ),
    pytest.param(
        _set("Buffers.raw.data_length", 0),
        ["buffer 'raw', key 'data_length'", ">= 1"],
        id="data-length-zero",
    ),
    pytest.param(
        _delete("Buffers.raw.data_length"),
        ["buffer 'raw'", "'data_length' is missing"],
        id="data-length-missing",
    ),
    pytest.param(
        _set("Buffers.raw.data_dtype", {"ch1": "float32", "ch2": "float99"}),
        ["buffer 'raw', key 'data_dtype', field 'ch2'", "'float99'", "float32"],
        id="bad-dtype",
    ),
    pytest.param(
        _set("Buffers.raw.data_dtype", "float32"),
        ["buffer 'raw', key 'data_dtype'", "mapping of field names"],
        id="dtype-not-mapping",
    ),
    pytest.param(
        _set("Buffers.raw.overwrite", "yes please"),
        ["buffer 'raw', key 'overwrite'", "true or false"],
        id="overwrite-not-bool",
    ),
    pytest.param(
        _set("Workers.gen.sinks", ["rwa"]),
        ["worker 'gen', key 'sinks'", "'rwa' is not defined", "did you mean 'raw'"],
        id="undefined-buffer-in-sinks",
    ),
    pytest.param(
        _add_unread_buffer,
        ["buffer 'spare'", "no worker reads it"],
        id="buffer-nobody-reads",
    ),
    pytest.param(
        _add_unwritten_buffer,
        ["buffer 'spare'", "no worker writes it", "'sinks'"],
        id="buffer-nobody-writes",
    ),
    pytest.param(
        _add_unused_buffer,
        ["buffer 'spare'", "no worker uses it"],
        id="buffer-unused",
    ),
    pytest.param(
        _set("Workers.out.file", "missing/funcs.py"),
        ["worker 'out', key 'file'", "'missing/funcs.py' not found", "relative to the setup"],
        id="missing-function-file",
    ),
    pytest.param(
        _set("Workers.out.function", "drian"),
        [
            "worker 'out', key 'function'",
            "'drian' is not defined in",
            "funcs.py",
            "did you mean 'drain'",
        ],
        id="function-not-in-file",
    ),
    pytest.param(
        _set("Workers.out.function", "NOT_A_FUNCTION"),
        ["worker 'out'", "'NOT_A_FUNCTION'", "not a function"],
        id="not-callable",
    ),
    pytest.param(
        _import_error,
        ["worker 'out', key 'file'", "importing", "broken.py", "RuntimeError: boom at import"],
        id="import-error",
    ),
    pytest.param(
        _syntax_error,
        ["worker 'out', key 'file'", "SyntaxError"],
        id="syntax-error",
    ),
    pytest.param(
        _set("Workers.out", {"function": "nosuchmodule_xyz.drain", "sources": ["raw"]}),
        ["worker 'out', key 'function'", "no prebuilt function 'nosuchmodule_xyz.drain'"],
        id="missing-prebuilt-function",
    ),
    pytest.param(
        _set("Workers.out", {"function": "drain", "sources": ["raw"]}),
        ["worker 'out'", "no prebuilt function 'drain'", "exporters.drain", "file:"],
        id="prebuilt-without-module",
    ),
    pytest.param(
        _set("Workers.gen.sources", ["raw"]),
        [
            "worker 'gen'",
            "Importer",
            "0 sources, 1 sink, 0 observes",
            "1 source, 1 sink, 0 observes",
        ],
        id="template-mismatch-importer-with-source",
    ),
    pytest.param(
        _set("Workers.out.observes", ["raw"]),
        ["worker 'out'", "Exporter", "1 source, any number of sinks, 0 observes"],
        id="template-mismatch-exporter-observes",
    ),
    pytest.param(
        _set("Workers.out.sources", "raw"),
        ["worker 'out', key 'sources'", "got the string 'raw'", "sources: [raw]"],
        id="sources-as-string",
    ),
    pytest.param(
        _set("Workers.out.number_of_processes", 0),
        ["worker 'out', key 'number_of_processes'", ">= 1", "got int 0"],
        id="number-of-processes-zero",
    ),
    pytest.param(
        _set("Workers.out.config", "nope.yaml"),
        ["worker 'out', key 'config'", "'nope.yaml' not found"],
        id="config-file-missing",
    ),
    pytest.param(
        _config_not_mapping,
        ["worker 'out', key 'config'", "list.yaml", "must hold a mapping", "not a list"],
        id="config-file-not-mapping",
    ),
    pytest.param(
        _config_bad_yaml,
        ["worker 'out', key 'config'[0]", "bad.yaml", "not valid YAML"],
        id="config-file-bad-yaml",
    ),
    pytest.param(
        _set("Workers.out.config", 42),
        ["worker 'out', key 'config'", "int 42"],
        id="config-wrong-type",
    ),
    pytest.param(
        _set("base_config", "missing_base.yaml"),
        ["key 'base_config'", "'missing_base.yaml' not found"],
        id="base-config-missing",
    ),
    pytest.param(
        _set("Workers.out.sourcse", ["raw"]),
        ["worker 'out'", "unknown key 'sourcse'", "did you mean 'sources'"],
        id="worker-key-typo",
    ),
    pytest.param(
        _delete("Workers.out.function"),
        ["worker 'out'", "'function' is missing"],
        id="function-missing",
    ),
    pytest.param(
        _set("Workers.out.restart", "always"),
        ["worker 'out', key 'restart'", "'no' or 'on-failure'", "'always'"],
        id="restart-invalid",
    ),
    pytest.param(
        _set("Workers.out.max_restarts", -1),
        ["worker 'out', key 'max_restarts'", ">= 0"],
        id="max-restarts-negative",
    ),
    pytest.param(
        _set("Workers.gen.sinks", ["raw", "raw"]),
        ["worker 'gen', key 'sinks'", "listed twice"],
        id="duplicate-buffer",
    ),
    pytest.param(
        _set("target_directory", 5),
        ["key 'target_directory'", "int 5"],
        id="target-directory-wrong-type",
    ),
    pytest.param(
        _set("Buffers", ["raw"]),
        ["key 'Buffers'", "expected a mapping", "list"],
        id="buffers-not-mapping",
    ),
    pytest.param(
        _set("Workers", None),
        ["key 'Workers'", "expected a mapping"],
        id="workers-none",
    ),
]


@pytest.mark.parametrize(("mutate", "parts"), MALFORMED)
def test_malformed(
    d: Path, mutate: Callable[[dict[str, Any], Path], None], parts: list[str]
) -> None:
    setup = base()
    mutate(setup, d)
    errors = errors_of(setup, d)
    joined = "\n".join(errors)
    for part in parts:
        assert part in joined, (part, errors)


def test_single_errors_are_single(d: Path) -> None:
    """The common mistakes produce exactly one message, not follow-up noise."""
    setup = base()
    setup["Buffers"]["raw"]["slot_count"] = "ten"
    one_error(setup, d, "slot_count")
    setup = base()
    setup["Workers"]["gen"]["sinks"] = ["rwa"]
    # the undefined name, and raw now has no writer
    assert len(errors_of(setup, d)) == 2
    # a typo in a required key is reported once, not also as "missing"
    setup = base()
    setup["Buffers"]["raw"]["slot_cout"] = setup["Buffers"]["raw"].pop("slot_count")
    one_error(setup, d, "unknown key 'slot_cout'", "did you mean 'slot_count'")
    setup = base()
    setup["Workers"]["out"]["fucntion"] = setup["Workers"]["out"].pop("function")
    one_error(setup, d, "worker 'out'", "did you mean 'function'")
    setup = base()
    setup["Worker"] = setup.pop("Workers")
    one_error(setup, d, "unknown top-level key 'Worker'", "did you mean 'Workers'")
    setup = base()
    setup["Buffers"] = {}
    # undefined names are reported, but not as a broken Buffers section
    assert len(errors_of(setup, d)) == 2
    setup = base()
    setup["Workers"]["out"]["sources"] = "raw"
    # the string, and raw now has no reader
    errors = errors_of(setup, d)
    assert any("got the string 'raw'" in e for e in errors)


def test_missing_sections(d: Path) -> None:
    errors = errors_of({"Workers": base()["Workers"]}, d)
    assert len(errors) == 1
    assert "the key 'Buffers' is missing" in errors[0]
    errors = errors_of({"Buffers": base()["Buffers"]}, d)
    assert len(errors) == 1
    assert "the key 'Workers' is missing" in errors[0]
    errors = errors_of({}, d)
    assert len(errors) == 2


def test_setup_not_a_mapping(d: Path) -> None:
    errors = errors_of(["Buffers"], d)
    assert len(errors) == 1
    assert "must be a mapping with the keys 'Buffers' and 'Workers'" in errors[0]
    errors = errors_of(None, d)
    assert "got nothing (null)" in errors[0]


def test_several_errors_at_once(d: Path) -> None:
    setup = base()
    setup["Bufers_extra"] = 1
    setup["Buffers"]["raw"]["slot_count"] = "ten"
    setup["Buffers"]["raw"]["data_dtype"] = {"ch1": "float99"}
    setup["Workers"]["gen"]["number_of_processes"] = 0
    setup["Workers"]["out"]["file"] = "missing.py"
    setup["Workers"]["out"]["config"] = "missing.yaml"
    with pytest.raises(SetupValidationError) as info:
        parse_setup(setup, d, "many.yaml")
    err = info.value
    assert len(err.errors) >= 3
    text = str(err)
    assert text.startswith(f"many.yaml has {len(err.errors)} problem(s):")
    for part in (
        "'Bufers_extra'",
        "slot_count",
        "'float99'",
        "number_of_processes",
        "missing.py",
        "missing.yaml",
    ):
        assert part in text, part
    assert isinstance(err, ValueError)


def test_load_setup_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_setup_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("Buffers: [\n")
    with pytest.raises(SetupValidationError, match="not valid YAML") as info:
        load_setup_file(bad)
    assert info.value.source == str(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SetupValidationError, match="must be a mapping"):
        load_setup_file(empty)


def test_messages_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "funcs.py").write_text(FUNCS)
    setup = base()
    setup["Buffers"]["raw"]["slot_cout"] = setup["Buffers"]["raw"].pop("slot_count")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(setup))
    with pytest.raises(SetupValidationError) as info:
        load_setup_file(path)
    assert info.value.errors[0].startswith(f"{path}: buffer 'raw'")
