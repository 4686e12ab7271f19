"""The one Qt binding of mimocorb2: every GUI and plot module takes Qt and pyqtgraph from here.

The binding is chosen once per process, in this order:

1. ``QT_API`` (``pyqt5``, ``pyqt6`` or ``pyside6``, as qtpy and matplotlib spell it), when set;
2. ``PYQTGRAPH_QT_LIB`` (``PyQt5``, ``PyQt6``, ``PySide6``), pyqtgraph's own variable;
3. a binding this process has imported already;
4. the first installed of PyQt5 (the default dependency), PyQt6, PySide6.

:func:`load` imports the chosen binding *before* pyqtgraph and points pyqtgraph at it
(``PYQTGRAPH_QT_LIB``), so with PyQt5 and PySide6 both installed the widgets and pyqtgraph use the
same one. It also sets ``QT_API`` so that the processes started from here (the GUI window, the
plot workers) choose the same binding.

Importing this module imports no Qt: ``from mimocorb2._qt import QtWidgets`` (or ``QtCore``,
``QtGui``, ``pg``) does, through the module's ``__getattr__``. Code that only needs to know
whether Qt can be used calls :func:`binding` or :func:`binding_problem`, which import nothing.

GUI code uses the fully scoped enum names (``QtCore.Qt.AlignmentFlag.AlignRight``), which every
binding accepts, and the Qt 6 module layout that pyqtgraph provides for Qt 5 too
(``QtGui.QShortcut``, ``QtGui.QAction``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

__all__ = [
    "BINDINGS",
    "INSTALL_HINT",
    "QtBindingError",
    "binding",
    "binding_problem",
    "load",
]

BINDINGS = ("PyQt5", "PyQt6", "PySide6")
"""The supported bindings, in the order they are tried when nothing chooses one."""

QT_API_NAMES = {name.lower(): name for name in BINDINGS}
"""``QT_API`` values and the binding each names."""

INSTALL_HINT = "pip install PyQt5 pyqtgraph"
"""How to install the default binding and pyqtgraph."""

_MODULES = ("QtCore", "QtGui", "QtWidgets", "pg")


class QtBindingError(ImportError):
    """No usable Qt binding: none installed, or ``QT_API`` names one that is not."""


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def binding() -> str:
    """The Qt binding this process uses (see the module docstring); imports nothing.

    Returns:
        ``"PyQt5"``, ``"PyQt6"`` or ``"PySide6"``.

    Raises:
        QtBindingError: ``QT_API`` or ``PYQTGRAPH_QT_LIB`` is unknown or names a binding that
            is not installed, or no binding is installed.
    """
    api = os.environ.get("QT_API", "").strip()
    if api:
        name = QT_API_NAMES.get(api.lower())
        if name is None:
            raise QtBindingError(
                f"QT_API={api!r} is not a Qt binding mimocorb2 supports; use one of "
                f"{', '.join(QT_API_NAMES)}, or unset it"
            )
        if not _installed(name):
            raise QtBindingError(
                f"QT_API={api!r} chooses {name}, which is not installed (pip install {name})"
            )
        return name
    lib = os.environ.get("PYQTGRAPH_QT_LIB", "").strip()
    if lib:
        if lib not in BINDINGS:
            raise QtBindingError(
                f"PYQTGRAPH_QT_LIB={lib!r} is not a Qt binding mimocorb2 supports; use one of "
                f"{', '.join(BINDINGS)}, or unset it"
            )
        if not _installed(lib):
            raise QtBindingError(f"PYQTGRAPH_QT_LIB={lib!r} is not installed (pip install {lib})")
        return lib
    for name in BINDINGS:
        if name in sys.modules:
            return name
    for name in BINDINGS:
        if _installed(name):
            return name
    raise QtBindingError(f"no Qt binding is installed ({INSTALL_HINT}; PyQt6 and PySide6 work too)")


def binding_problem() -> str | None:
    """Why Qt and pyqtgraph cannot be used here (not installed, a bad ``QT_API``), or None.

    Imports nothing: a binding that is installed but broken is only found by :func:`load`.
    """
    try:
        binding()
    except QtBindingError as e:
        return str(e)
    if not _installed("pyqtgraph"):
        return f"pyqtgraph is not installed ({INSTALL_HINT})"
    return None


def load() -> dict[str, Any]:
    """Imports the chosen binding, then pyqtgraph on top of it (once per process).

    Returns:
        ``{"QtCore": ..., "QtGui": ..., "QtWidgets": ..., "pg": pyqtgraph}``; QtCore, QtGui
        and QtWidgets are pyqtgraph's (``pyqtgraph.Qt``), which give Qt 5 the Qt 6 layout.

    Raises:
        QtBindingError: No usable binding (see :func:`binding`), or pyqtgraph was already
            imported with another binding in this process.
        ImportError: The binding or pyqtgraph cannot be imported.
    """
    name = binding()
    importlib.import_module(f"{name}.QtCore")  # before pyqtgraph, which looks at sys.modules
    os.environ["PYQTGRAPH_QT_LIB"] = name
    os.environ["QT_API"] = name.lower()  # the processes started from here choose the same
    import pyqtgraph
    from pyqtgraph import Qt

    if name != Qt.QT_LIB:
        raise QtBindingError(
            f"pyqtgraph was imported with {Qt.QT_LIB} before mimocorb2 chose {name}; import "
            "Qt through mimocorb2._qt, or set QT_API"
        )
    modules = {"QtCore": Qt.QtCore, "QtGui": Qt.QtGui, "QtWidgets": Qt.QtWidgets, "pg": pyqtgraph}
    globals().update(modules)
    return modules


def __getattr__(attr: str) -> Any:
    """``QtCore``, ``QtGui``, ``QtWidgets`` and ``pg`` (pyqtgraph), imported on first use."""
    if attr in _MODULES:
        return load()[attr]
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
