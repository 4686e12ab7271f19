"""Function packs: prebuilt functions of other distributions (entry points mimocorb2.functions).

The packs are tiny distributions written into a temporary directory (a package and its
``.dist-info`` with ``entry_points.txt``) and put on ``sys.path`` and ``PYTHONPATH``, as pip
would install them; nothing is installed into the environment.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mimocorb2._functions_import import ENTRY_POINT_GROUP, function_origin, function_packs
from mimocorb2._setup import load_function, parse_setup
from mimocorb2.control import Control
from mimocorb2.exceptions import SetupValidationError

WORKERS = Path(__file__).parent / "pipelines" / "workers.py"

SCOPE = '''
"""A module of the test pack."""

from pathlib import Path

from mimocorb2 import Exporter


def count(buffer_io):
    """mimoCoRB2 Function: counts the events and writes the number to count.txt.

    Type
        Exporter
    """
    n = 0
    for data, _metadata in Exporter(buffer_io):
        if data is not None:
            n += 1
    (Path(buffer_io.run_dir) / "count.txt").write_text(str(n))
'''

DRAIN = '''
"""A pack that shadows a built-in module name (exporters)."""

from mimocorb2 import Exporter


def drain(buffer_io):
    """mimoCoRB2 Function: discards (the same name as the built-in one).

    Type
        Exporter
    """
    for _ in Exporter(buffer_io):
        pass


def keep(buffer_io):
    """mimoCoRB2 Function: discards too (a name only this pack has).

    Type
        Exporter
    """
    drain(buffer_io)
'''


def write_distribution(
    site: Path, dist: str, version: str, packs: dict[str, str], files: dict[str, str]
) -> None:
    """A distribution as pip installs it: its files and ``<dist>-<version>.dist-info``."""
    for rel, text in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {module}\n" for name, module in packs.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path and PYTHONPATH (the worker processes inherit it)."""
    site = tmp_path / "site"
    site.mkdir()
    write_distribution(
        site,
        "m2-labpack",
        "1.2",
        {"labpack": "m2_labpack.functions"},
        {
            "m2_labpack/__init__.py": "",
            "m2_labpack/functions/__init__.py": "",
            "m2_labpack/functions/scope.py": SCOPE,
        },
    )
    monkeypatch.syspath_prepend(str(site))
    old = [p for p in (os.environ.get("PYTHONPATH"),) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *old]))
    yield site
    for name in [m for m in sys.modules if m.startswith("m2_")]:  # the next test's own files
        del sys.modules[name]


def setup_with(function: str, tmp_path: Path) -> dict[str, Any]:
    buffer = {"slot_count": 8, "data_length": 1, "data_dtype": {"value": "int64"}}
    return {
        "Buffers": {"raw": buffer},
        "Workers": {
            "src": {
                "file": str(WORKERS),
                "function": "source",
                "config": {"n_events": 57},
                "sinks": ["raw"],
            },
            "out": {"function": function, "sources": ["raw"]},
        },
        "target_directory": str(tmp_path / "runs"),
    }


def errors(setup: dict[str, Any], d: Path) -> list[str]:
    with pytest.raises(SetupValidationError) as info:
        parse_setup(setup, d)
    return info.value.errors


def test_a_pack_function_is_found_without_file(site: Path, tmp_path: Path) -> None:
    packs = function_packs()
    assert [p.where() for p in packs["labpack"]] == [
        "pack 'labpack' (module m2_labpack.functions, distribution m2-labpack 1.2)"
    ]
    setup = parse_setup(setup_with("labpack.scope.count", tmp_path), tmp_path)
    worker = setup.workers["out"]
    assert worker.file is None
    func = load_function(worker)
    assert func.__module__ == "m2_labpack.functions.scope" and func.__name__ == "count"
    assert "distribution m2-labpack 1.2" in function_origin("labpack.scope.count", None)
    assert function_origin("exporters.drain", None) == "built in (mimocorb2.functions)"


def test_a_run_uses_the_pack_in_its_worker_processes(site: Path, tmp_path: Path) -> None:
    control = Control(setup_with("labpack.scope.count", tmp_path), tmp_path, mode="stats")
    control()
    assert control.exit_code == 0
    assert (control.run_dir / "count.txt").read_text() == "57"


def test_validation_says_where_it_looked(site: Path, tmp_path: Path) -> None:
    (msg,) = errors(setup_with("labpack.scope.cuont", tmp_path), tmp_path)
    assert "worker 'out', key 'function'" in msg
    assert "no function 'labpack.scope.cuont'" in msg
    assert "pack 'labpack' (module m2_labpack.functions, distribution m2-labpack 1.2)" in msg
    assert "module m2_labpack.functions.scope has no function 'cuont'" in msg
    assert "did you mean 'count'" in msg
    assert "built in (mimocorb2.functions): no module mimocorb2.functions.labpack.scope" in msg

    (msg,) = errors(setup_with("labpack.nosuch.count", tmp_path), tmp_path)
    assert "no module m2_labpack.functions.nosuch" in msg

    (msg,) = errors(setup_with("labpack", tmp_path), tmp_path)
    assert "names only the pack 'labpack'" in msg

    (msg,) = errors(setup_with("nopack.scope.count", tmp_path), tmp_path)
    assert "no function pack 'nopack' (function packs installed: labpack)" in msg


def test_a_name_found_in_two_places_is_an_error_naming_both(site: Path, tmp_path: Path) -> None:
    write_distribution(
        site,
        "m2-shadow",
        "0.1",
        {"exporters": "m2_shadow"},
        {"m2_shadow/__init__.py": DRAIN},
    )
    (msg,) = errors(setup_with("exporters.drain", tmp_path), tmp_path)
    assert "function 'exporters.drain' is found in 2 places" in msg
    assert "built in (mimocorb2.functions): mimocorb2.functions.exporters.drain" in msg
    assert "pack 'exporters' (module m2_shadow, distribution m2-shadow 0.1): m2_shadow.drain" in msg
    # a name only the pack has is the pack's; '<pack>.<function>' for the pack's module itself
    setup = parse_setup(setup_with("exporters.keep", tmp_path), tmp_path)
    assert load_function(setup.workers["out"]).__module__ == "m2_shadow"
    # the built-in functions of that module that the pack lacks stay usable
    setup = parse_setup(setup_with("exporters.histogram", tmp_path), tmp_path)
    assert load_function(setup.workers["out"]).__module__ == "mimocorb2.functions.exporters"


def test_a_pack_that_fails_to_import_is_named(site: Path, tmp_path: Path) -> None:
    write_distribution(
        site,
        "m2-broken",
        "3.0",
        {"broken": "m2_broken"},
        {"m2_broken/__init__.py": "raise RuntimeError('needs hardware')\n"},
    )
    (msg,) = errors(setup_with("broken.scope.count", tmp_path), tmp_path)
    assert "pack 'broken' (module m2_broken, distribution m2-broken 3.0)" in msg
    assert "RuntimeError: needs hardware" in msg


def test_no_packs_installed_changes_nothing(tmp_path: Path) -> None:
    assert "labpack" not in function_packs()
    (msg,) = errors(setup_with("labpack.scope.count", tmp_path), tmp_path)
    assert "no prebuilt function 'labpack.scope.count'" in msg
