"""The Qt shim (mimocorb2._qt): one binding per process, chosen once, honouring QT_API.

The choice is tested with the installed bindings faked; the imports in child interpreters
with the bindings really installed. CI runs the GUI tests once with PyQt5 and once with
``QT_API=pyside6`` while PyQt5 is installed too (the case where pyqtgraph alone would pick
PySide6 and the GUI used PyQt5).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mimocorb2 import _qt

PACKAGE = Path(_qt.__file__).parent
INSTALLED = [b for b in _qt.BINDINGS if importlib.util.find_spec(b) is not None]
HAS_PYQTGRAPH = importlib.util.find_spec("pyqtgraph") is not None


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """Fakes which bindings are installed and imported; clears the variables that choose."""
    for var in ("QT_API", "PYQTGRAPH_QT_LIB"):
        monkeypatch.delenv(var, raising=False)
    modules = {m: v for m, v in sys.modules.items() if m not in _qt.BINDINGS}
    monkeypatch.setattr(sys, "modules", modules)

    def install(*names: str) -> None:
        monkeypatch.setattr(_qt, "_installed", lambda name: name in (*names, "pyqtgraph"))

    return install


def test_pyqt5_is_the_default_when_several_are_installed(fake) -> None:
    fake("PySide6", "PyQt6", "PyQt5")
    assert _qt.binding() == "PyQt5"
    fake("PySide6", "PyQt6")
    assert _qt.binding() == "PyQt6"
    fake("PySide6")
    assert _qt.binding() == "PySide6"


def test_qt_api_chooses(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    fake("PyQt5", "PySide6")
    for value, name in (("pyside6", "PySide6"), ("PyQt5", "PyQt5"), (" pyqt5 ", "PyQt5")):
        monkeypatch.setenv("QT_API", value)
        assert _qt.binding() == name
    monkeypatch.setenv("QT_API", "pyqt6")
    with pytest.raises(_qt.QtBindingError, match=r"chooses PyQt6, which is not installed"):
        _qt.binding()
    assert "pip install PyQt6" in _qt.binding_problem()
    monkeypatch.setenv("QT_API", "tkinter")
    with pytest.raises(_qt.QtBindingError, match="use one of pyqt5, pyqt6, pyside6"):
        _qt.binding()


def test_pyqtgraph_variable_and_an_imported_binding_choose(
    fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake("PyQt5", "PySide6")
    monkeypatch.setenv("PYQTGRAPH_QT_LIB", "PySide6")
    assert _qt.binding() == "PySide6"
    monkeypatch.setenv("QT_API", "pyqt5")  # QT_API first
    assert _qt.binding() == "PyQt5"
    monkeypatch.delenv("QT_API")
    monkeypatch.setenv("PYQTGRAPH_QT_LIB", "PyQt4")
    with pytest.raises(_qt.QtBindingError, match="PYQTGRAPH_QT_LIB='PyQt4'"):
        _qt.binding()
    monkeypatch.delenv("PYQTGRAPH_QT_LIB")
    monkeypatch.setitem(sys.modules, "PySide6", object())  # imported already: keep it
    assert _qt.binding() == "PySide6"


def test_no_binding_or_no_pyqtgraph(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    fake()
    with pytest.raises(_qt.QtBindingError, match="pip install PyQt5 pyqtgraph"):
        _qt.binding()
    assert "no Qt binding is installed" in _qt.binding_problem()
    monkeypatch.setattr(_qt, "_installed", lambda name: name == "PyQt5")
    assert _qt.binding_problem() == "pyqtgraph is not installed (pip install PyQt5 pyqtgraph)"
    from mimocorb2 import _gui

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert "the GUI cannot use Qt: pyqtgraph is not installed" in _gui.unavailable_reason()


def test_importing_the_shim_imports_no_qt() -> None:
    code = (
        "import sys, mimocorb2._qt, mimocorb2._plotting, mimocorb2._gui\n"
        "print([m for m in sys.modules if m.startswith(('PyQt', 'PySide', 'pyqtgraph'))])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_no_module_imports_a_binding_or_pyqtgraph_but_the_shim() -> None:
    roots = ("PyQt5", "PyQt6", "PySide6", "PySide2", "pyqtgraph", "sip", "shiboken6")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_qt.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{path.relative_to(PACKAGE)}:{node.lineno}: {n}"
                for n in names
                if n.split(".")[0] in roots
            ]
    assert offenders == []


CHILD = """
import os, sys
from mimocorb2 import _qt
from mimocorb2._qt import QtCore, QtWidgets, pg
app = QtWidgets.QApplication([])
w = pg.PlotWidget()
w.plot([1, 2, 3])
w.show()
app.processEvents()
loaded = sorted(b for b in ("PyQt5", "PyQt6", "PySide6") if b in sys.modules)
print("RESULT", _qt.binding(), pg.Qt.QT_LIB, os.environ["QT_API"], ",".join(loaded))
"""


def run_child(env_changes: dict[str, str | None]) -> str:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))


@pytest.mark.skipif(not (INSTALLED and HAS_PYQTGRAPH), reason="needs a Qt binding and pyqtgraph")
@pytest.mark.parametrize("name", INSTALLED)
def test_every_installed_binding_is_used_alone_when_chosen(name: str) -> None:
    result = run_child({"QT_API": name.lower(), "PYQTGRAPH_QT_LIB": None})
    assert result == f"RESULT {name} {name} {name.lower()} {name}"


@pytest.mark.skipif(
    not ({"PyQt5", "PySide6"} <= set(INSTALLED) and HAS_PYQTGRAPH),
    reason="needs PyQt5 and PySide6 installed side by side",
)
def test_pyqt5_and_pyside6_side_by_side_the_gui_runs_with_one(tmp_path: Path) -> None:
    """The issue's case: pyqtgraph alone would pick PySide6 while the GUI imported PyQt5."""
    assert run_child({"QT_API": None, "PYQTGRAPH_QT_LIB": None}) == (
        "RESULT PyQt5 PyQt5 pyqt5 PyQt5"
    )
    setup = tmp_path / "setup.yaml"
    setup.write_text(
        "Buffers:\n  raw: {slot_count: 4, data_length: 1, data_dtype: {value: int64}}\n"
        f"Workers:\n  src:\n    file: {Path(__file__).parent}/pipelines/workers.py\n"
        "    function: source\n    config: {n_events: 300, sleep: 0.002}\n    sinks: [raw]\n"
        "  out: {function: exporters.drain, sources: [raw]}\n"
        f"target_directory: {tmp_path / 'runs'}\n"
    )
    for api, shown in ((None, "PyQt5"), ("pyside6", "PySide6")):
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "MIMOCORB2_GUI_LINGER": "0.3"}
        env.pop("PYQTGRAPH_QT_LIB", None)
        env.pop("QT_API", None)
        if api:
            env["QT_API"] = api
        r = subprocess.run(
            [sys.executable, "-m", "mimocorb2", str(setup), "-c", "gui"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert "GUI" not in r.stderr.replace("mimocorb2 GUI", ""), r.stderr
        log = sorted((tmp_path / "runs").glob("run_*/logs/gui.log"))[-1].read_text()
        assert f"window shown (Qt platform offscreen) with {shown} " in log, log
