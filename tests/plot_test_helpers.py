"""The Qt skip marker shared by the plotting tests."""

from __future__ import annotations

import pytest


def _qt_installed() -> bool:
    from mimocorb2._qt import binding_problem

    return binding_problem() is None


needs_qt = pytest.mark.skipif(
    not _qt_installed(), reason="needs a Qt binding and pyqtgraph (pip install PyQt5 pyqtgraph)"
)
