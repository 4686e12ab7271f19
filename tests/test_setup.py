"""Setup loading and validation: mimocorb2._setup (valid setups; nothing is written).

Malformed setups and their messages are in test_setup_malformed.py.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from setup_helpers import FUNCS, base, errors_of, one_error

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


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its content (None for directories)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


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
