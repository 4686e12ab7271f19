"""Setup loading and validation: mimocorb2._setup."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import mimocorb2
from mimocorb2._setup import (
    Setup,
    function_template,
    load_function,
    load_setup_file,
    parse_setup,
)
from mimocorb2.exceptions import SetupValidationError

SETUPS = Path(__file__).parent / "setups"

FUNCS = '''
"""User functions for the tests, one per template."""


def gen(buffer_io):
    """mimoCoRB2 Function: generate

    Type
    ----
    Importer
    """
    return "gen"


def drain(buffer_io):
    """mimoCoRB2 Function: drain

    Type
    ----
    Exporter
    """
    return "drain"


def filt(buffer_io):
    """mimoCoRB2 Function: filter

    Type
        Filter
    """


def proc(buffer_io):
    """mimoCoRB2 Function: process

    Type: Processor
    """


def obs(buffer_io):
    """mimoCoRB2 Function: observe

    Type
    ----
    Observer
    """


def alive(buffer_io):
    """mimoCoRB2 Function: show

    Type
    ----
    IsAlive
    """


def plain(buffer_io):
    return "plain"


NOT_A_FUNCTION = 3
'''


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its content (None for directories)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def d(tmp_path: Path) -> Path:
    """A setup directory holding funcs.py."""
    (tmp_path / "funcs.py").write_text(FUNCS)
    return tmp_path


def base() -> dict[str, Any]:
    """A minimal valid setup (relative to the `d` fixture): gen -> raw -> out."""
    return {
        "Buffers": {
            "raw": {"slot_count": 8, "data_length": 4, "data_dtype": {"ch1": "float32"}},
        },
        "Workers": {
            "gen": {"file": "funcs.py", "function": "gen", "sinks": ["raw"]},
            "out": {"file": "funcs.py", "function": "drain", "sources": ["raw"]},
        },
    }


def errors_of(setup: Any, setup_dir: Path, source: str = "my_setup.yaml") -> list[str]:
    with pytest.raises(SetupValidationError) as info:
        parse_setup(setup, setup_dir, source)
    err = info.value
    assert err.source == source
    assert err.errors
    for msg in err.errors:
        assert msg.startswith(f"{source}: "), msg
        assert msg in str(err)
    return err.errors


def one_error(setup: Any, setup_dir: Path, *parts: str) -> str:
    errors = errors_of(setup, setup_dir)
    assert len(errors) == 1, errors
    for part in parts:
        assert part in errors[0], (part, errors[0])
    return errors[0]


# ---------------------------------------------------------------------------------------------
# Valid setups
# ---------------------------------------------------------------------------------------------


def test_minimal_setup(d: Path) -> None:
    s = parse_setup(base(), d)
    assert isinstance(s, Setup)
    assert s.setup_file is None
    assert s.setup_dir == d.resolve()
    assert s.target_directory == d.resolve() / "target"
    assert list(s.buffers) == ["raw"]
    raw = s.buffers["raw"]
    assert (raw.slot_count, raw.data_length, raw.overwrite) == (8, 4, False)
    assert raw.data_dtype == np.dtype([("ch1", "<f4")])
    gen = s.workers["gen"]
    assert gen.file == (d / "funcs.py").resolve()
    assert gen.file.is_absolute()
    assert (gen.sources, gen.sinks, gen.observes) == ((), ("raw",), ())
    assert (gen.number_of_processes, gen.restart, gen.max_restarts) == (1, "no", 3)
    assert gen.config == {}
    assert s.base_config == {}
    assert load_function(gen)(None) == "gen"
    assert s.raw == base()


def test_fixture_file_with_anchors_options_overwrite() -> None:
    s = load_setup_file(SETUPS / "valid.yaml")
    assert s.setup_file == (SETUPS / "valid.yaml").resolve()
    assert s.setup_dir == SETUPS.resolve()
    assert s.target_directory == SETUPS.resolve() / "runs"
    # <<: *buf merged the template, local keys win
    assert s.buffers["raw_a"].slot_count == 8
    assert s.buffers["raw_b"].slot_count == 4
    assert s.buffers["raw_b"].data_length == 16
    assert s.buffers["raw_b"].data_dtype.names == ("ch1", "ch2")
    assert s.buffers["raw_a"].overwrite is False
    scope = s.workers["scope"]
    assert scope.function == "watch"
    assert scope.file == (SETUPS / "data.py").resolve()
    assert scope.observes == ("raw_a",)
    assert scope.config["update_interval"] == 1
    assert "Options" in s.raw
    assert "osc_template" in s.raw
    assert s.workers["source_b"].restart == "on-failure"
    assert s.workers["source_b"].max_restarts == 5


def test_same_stem_files_in_different_dirs_do_not_collide() -> None:
    s = load_setup_file(SETUPS / "valid.yaml")
    fa = load_function(s.workers["source_a"])
    fb = load_function(s.workers["source_b"])
    assert fa(None) == "a.source"
    assert fb(None) == "b.source"
    ma, mb = sys.modules[fa.__module__], sys.modules[fb.__module__]
    assert ma is not mb
    assert ma.which() == "a"
    assert mb.which() == "b"
    assert fa.__module__.startswith("mimocorb2_user.functions_")
    assert fb.__module__.startswith("mimocorb2_user.functions_")
    assert Path(ma.__file__).resolve() == (SETUPS / "a" / "functions.py").resolve()
    # cached per absolute path
    assert load_function(s.workers["source_a"]) is fa


def test_user_file_named_data_py() -> None:
    s = load_setup_file(SETUPS / "valid.yaml")
    sink = load_function(s.workers["export_a"])
    assert sink(None) == "data.sink"
    assert sink.__module__.startswith("mimocorb2_user.data_")
    assert sys.modules.get("data") is not sys.modules[sink.__module__]
    assert load_function(s.workers["join"])(None) == "data.untyped"


def test_user_module_pickles_and_dataclasses_work() -> None:
    s = load_setup_file(SETUPS / "valid.yaml")
    fa = load_function(s.workers["source_a"])
    module = sys.modules[fa.__module__]
    assert pickle.loads(pickle.dumps(fa)) is fa
    event = module.Event(3)
    assert pickle.loads(pickle.dumps(event)) == event


def test_specs_pickle() -> None:
    s = load_setup_file(SETUPS / "valid.yaml")
    again = pickle.loads(pickle.dumps(s))
    assert again.workers == s.workers
    assert again.buffers == s.buffers
    assert again.target_directory == s.target_directory


def test_user_module_name_is_stable_across_processes() -> None:
    """A child process loading the same file gets the same module name, so user objects pickle."""
    s = load_setup_file(SETUPS / "valid.yaml")
    fa = load_function(s.workers["source_a"])
    event = sys.modules[fa.__module__].Event(5)
    child = textwrap.dedent(
        f"""
        import pickle, sys
        from mimocorb2._setup import load_function
        worker = pickle.loads(sys.stdin.buffer.read())
        func = load_function(worker)
        event = pickle.loads({pickle.dumps(event)!r})
        print(func.__module__, event.value, func(None))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(mimocorb2.__file__).parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", child],
        input=pickle.dumps(s.workers["source_a"]),
        capture_output=True,
        env=env,
        check=True,
        timeout=30,
    )
    assert out.stdout.decode().split() == [fa.__module__, "5", "a.source"]


def test_config_dict_path_list_merge_over_base_config() -> None:
    s = load_setup_file(SETUPS / "valid.yaml")
    assert s.base_config == {"threshold": 10, "rate": 5.0}
    # no config: the base config
    assert s.workers["source_a"].config == {"threshold": 10, "rate": 5.0}
    # a dict overrides one key
    assert s.workers["export_a"].config == {"threshold": 10, "rate": 1.0}
    # a path
    assert s.workers["join"].config == {"threshold": 10, "rate": 20.0, "channel": "IN1"}
    # a list: later entries win
    assert s.workers["source_b"].config == {"threshold": 3, "rate": 20.0, "channel": "IN1"}


def test_base_config_as_list_and_dict(d: Path) -> None:
    (d / "b.yaml").write_text("x: 1\ny: 1\n")
    setup = base()
    setup["base_config"] = ["b.yaml", {"y": 2, "z": 2}]
    setup["Workers"]["gen"]["config"] = {"z": 3}
    s = parse_setup(setup, d)
    assert s.base_config == {"x": 1, "y": 2, "z": 2}
    assert s.workers["gen"].config == {"x": 1, "y": 2, "z": 3}
    assert s.workers["out"].config == {"x": 1, "y": 2, "z": 2}
    # shallow copies: changing one worker's config does not touch the base
    s.workers["gen"].config["x"] = 99
    assert s.base_config["x"] == 1


def test_target_directory_tilde_absolute_relative(
    d: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    setup = base()
    setup["target_directory"] = "~/runs"
    assert parse_setup(setup, d).target_directory == home.resolve() / "runs"
    setup["target_directory"] = str(home / "abs")
    assert parse_setup(setup, d).target_directory == home.resolve() / "abs"
    setup["target_directory"] = "rel/dir"
    assert parse_setup(setup, d).target_directory == d.resolve() / "rel" / "dir"
    assert not (home / "runs").exists()
    assert not (d / "rel").exists()


def test_file_with_tilde(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(d))
    setup = base()
    for worker in setup["Workers"].values():
        worker["file"] = "~/funcs.py"
    s = parse_setup(setup, "/")
    assert s.workers["gen"].file == (d / "funcs.py").resolve()
    assert load_function(s.workers["gen"])(None) == "gen"


def test_effective_dict(d: Path) -> None:
    (d / "b.yaml").write_text("x: 1\n")
    setup = base()
    setup["base_config"] = "b.yaml"
    setup["Workers"]["gen"]["config"] = {"y": 2}
    setup["Options"] = {"debug_workers": True}
    s = parse_setup(setup, d)
    eff = s.effective_dict()
    assert eff["Workers"]["gen"]["config"] == {"x": 1, "y": 2}
    assert eff["Workers"]["out"]["config"] == {"x": 1}
    assert eff["base_config"] == {"x": 1}
    assert eff["Buffers"] == setup["Buffers"]
    assert eff["Options"] == {"debug_workers": True}
    # the raw setup is untouched and the result is plain YAML
    assert s.raw["Workers"]["gen"]["config"] == {"y": 2}
    assert s.raw["base_config"] == "b.yaml"
    assert yaml.safe_load(yaml.safe_dump(eff)) == eff
    # re-validating the effective dict gives the same workers
    again = parse_setup(eff, d)
    assert again.workers == s.workers


def test_raw_is_a_copy(d: Path) -> None:
    setup = base()
    s = parse_setup(setup, d)
    setup["Workers"]["gen"]["sinks"].append("other")
    assert s.raw["Workers"]["gen"]["sinks"] == ["raw"]


def test_writers_of_and_roots(d: Path) -> None:
    setup = {
        "Buffers": {
            name: {"slot_count": 4, "data_length": 1, "data_dtype": {"v": "f8"}}
            for name in ("a", "b", "c")
        },
        "Workers": {
            "gen1": {
                "file": "funcs.py",
                "function": "gen",
                "sinks": ["a"],
                "number_of_processes": 3,
            },
            "gen2": {"file": "funcs.py", "function": "gen", "sinks": ["b"]},
            "merge_a": {
                "file": "funcs.py",
                "function": "filt",
                "sources": ["a"],
                "sinks": ["c"],
                "number_of_processes": 2,
            },
            "merge_b": {"file": "funcs.py", "function": "proc", "sources": ["b"], "sinks": ["c"]},
            "out": {"file": "funcs.py", "function": "drain", "sources": ["c"]},
            "scope": {"file": "funcs.py", "function": "obs", "observes": ["a"]},
            "live": {"file": "funcs.py", "function": "alive", "observes": ["c"]},
        },
    }
    s = parse_setup(setup, d)
    assert s.writers_of("a") == 3
    assert s.writers_of("b") == 1
    assert s.writers_of("c") == 3
    assert s.roots() == ["a", "b"]
    with pytest.raises(KeyError, match="no buffer named 'nope'"):
        s.writers_of("nope")


def test_restart_no_parsed_as_false_by_yaml(d: Path) -> None:
    setup = base()
    setup["Workers"]["gen"].update(yaml.safe_load("restart: no\nmax_restarts: 0"))
    assert setup["Workers"]["gen"]["restart"] is False
    w = parse_setup(setup, d).workers["gen"]
    assert (w.restart, w.max_restarts) == ("no", 0)


def test_function_template_variants() -> None:
    def numpydoc(io: Any) -> None:
        """mimoCoRB2 Function: x

        Type
        ----
        Importer
        """

    def indented(io: Any) -> None:
        """mimoCoRB2 Function: x

        Type
            exporter
        """

    def inline(io: Any) -> None:
        """mimoCoRB2 Function: x

        Type: IsAlive (plots)
        """

    def attribute_type(io: Any) -> None:
        """Something.

        Type
            np.ndarray
        """

    def nodoc(io: Any) -> None:
        pass

    assert function_template(numpydoc) == "Importer"
    assert function_template(indented) == "Exporter"
    assert function_template(inline) == "IsAlive"
    assert function_template(attribute_type) is None
    assert function_template(nodoc) is None
    assert function_template(print) is None


def test_template_keys_and_options_accepted(d: Path) -> None:
    setup = base()
    setup["param_template"] = {"a": 1}
    setup["osc_buffer_template"] = [1, 2]
    setup["template"] = None
    setup["Options"] = {"output_directory": "x"}
    setup["Buffers"]["raw"]["overwrite"] = True
    s = parse_setup(setup, d)
    assert s.buffers["raw"].overwrite is True


def test_prebuilt_resolution(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``function: a.b`` without ``file`` is attribute b of mimocorb2.functions.a."""

    def waveform(io: Any) -> str:
        """mimoCoRB2 Function: fake

        Type
        ----
        Importer
        """
        return "waveform"

    pkg = types.ModuleType("mimocorb2.functions")
    pkg.__path__ = []
    importers = types.ModuleType("mimocorb2.functions.importers")
    importers.__path__ = []
    redpitaya = types.ModuleType("mimocorb2.functions.importers.redpitaya")
    redpitaya.waveform = waveform
    for mod in (pkg, importers, redpitaya):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)

    setup = base()
    setup["Workers"]["gen"] = {"function": "importers.redpitaya.waveform", "sinks": ["raw"]}
    s = parse_setup(setup, d)
    assert s.workers["gen"].file is None
    assert load_function(s.workers["gen"]) is waveform

    setup["Workers"]["gen"]["file"] = ""  # an empty file means prebuilt too
    assert parse_setup(setup, d).workers["gen"].file is None

    setup["Workers"]["gen"]["function"] = "importers.redpitaya.wavefrom"
    msg = one_error(setup, d, "worker 'gen'", "no prebuilt function", "did you mean 'waveform'")
    assert "importers.redpitaya.waveform" in msg

    setup["Workers"]["gen"] = {"function": "importers.redpitaya.waveform", "sources": ["raw"]}
    setup["Workers"]["out"]["sinks"] = ["raw"]
    one_error(setup, d, "worker 'gen'", "Importer", "0 sources, 1 sink")


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


# ---------------------------------------------------------------------------------------------
# Nothing is written
# ---------------------------------------------------------------------------------------------


def test_validation_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "funcs.py").write_text(FUNCS)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "helper.py").write_text("VALUE = 7\n")
    (tmp_path / "sub" / "uses_helper.py").write_text(
        textwrap.dedent(
            '''
            import helper


            def gen(io):
                """mimoCoRB2 Function: x

                Type
                ----
                Importer
                """
                return helper.VALUE
            '''
        )
    )
    (tmp_path / "cfg.yaml").write_text("a: 1\n")
    setup = base()
    setup["base_config"] = "cfg.yaml"
    setup["target_directory"] = "runs/deep"
    setup["Workers"]["gen"]["file"] = "sub/uses_helper.py"
    (tmp_path / "setup.yaml").write_text(yaml.safe_dump(setup))
    before = tree(tmp_path)

    s = load_setup_file(tmp_path / "setup.yaml")
    assert load_function(s.workers["gen"])(None) == 7
    s.effective_dict()
    assert str(tmp_path.resolve()) not in sys.path
    assert tree(tmp_path) == before
    assert not s.target_directory.exists()

    setup["Workers"]["out"]["function"] = "drian"
    setup["Buffers"]["raw"]["slot_count"] = 0
    with pytest.raises(SetupValidationError):
        parse_setup(setup, tmp_path)
    assert tree(tmp_path) == before


def test_failed_import_is_not_cached(d: Path) -> None:
    (d / "flaky.py").write_text("raise ImportError('not yet')\n")
    setup = base()
    setup["Workers"]["out"]["file"] = "flaky.py"
    errors = errors_of(setup, d)
    assert any("ImportError: not yet" in e for e in errors)
    (d / "flaky.py").write_text(
        'def drain(io):\n    """Type\n    ----\n    Exporter\n    """\n    return "fixed"\n'
    )
    s = parse_setup(setup, d)
    assert load_function(s.workers["out"])(None) == "fixed"
