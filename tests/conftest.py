"""Shared fixtures: unique buffer names and leak guards run after every test."""

from __future__ import annotations

import contextlib
import multiprocessing.resource_tracker
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from buffer_test_helpers import DTYPE as BUFFER_DTYPE
from setup_helpers import FUNCS
from template_test_helpers import DTYPE, LENGTH

from mimocorb2.mimo_buffer import mimoBuffer

# Qt windows of plotting workers and the GUI render offscreen in tests (no display needed).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# No run report (matplotlib, a few seconds per run) except in test_report.py, which turns it on.
os.environ.setdefault("MIMOCORB2_REPORT", "0")


def _same_qt_binding_for_pytest_qt() -> None:
    """pytest-qt (qtbot) uses the binding mimocorb2._qt chooses (QT_API), not its own guess."""
    from mimocorb2._qt import QtBindingError, binding

    with contextlib.suppress(QtBindingError):  # no binding: the GUI tests skip themselves
        os.environ.setdefault("PYTEST_QT_API", binding().lower())


_same_qt_binding_for_pytest_qt()

SHM_DIR = "/dev/shm"
SHM_PREFIXES = ("mimocorb2", "psm_")
CHILD_GRACE_S = 2.0


def _shm_entries() -> set[str]:
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return set()
    return {n for n in names if n.startswith(SHM_PREFIXES)}


def _helper_pids() -> set[int]:
    """Long-lived helpers of the multiprocessing machinery itself, not started by a test.

    The spawn context registers its semaphores (``ctx.Queue``, ``ctx.Barrier``) with the
    resource tracker, which runs as a child process for the rest of the session.
    """
    tracker = getattr(multiprocessing.resource_tracker, "_resource_tracker", None)
    pid = getattr(tracker, "_pid", None)
    return {pid} if pid else set()


def _live_children() -> list[psutil.Process]:
    helpers = _helper_pids()
    out = []
    for child in psutil.Process().children(recursive=True):
        if child.pid in helpers:
            continue
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(autouse=True)
def no_residue() -> Iterator[None]:
    """Fails a test that leaves shared-memory files or live child processes behind."""
    before = _shm_entries()
    yield
    problems = []
    children = _live_children()
    if children:
        _, alive = psutil.wait_procs(children, timeout=CHILD_GRACE_S)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        for p in alive:
            try:
                problems.append(f"child process still alive: pid {p.pid}: {' '.join(p.cmdline())}")
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=CHILD_GRACE_S)
    leaked = _shm_entries() - before
    if leaked:
        problems.append(f"shared-memory files left in {SHM_DIR}: {sorted(leaked)}")
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Returns a function making a buffer name unique to this test run."""

    def make(prefix: str = "buf") -> str:
        return f"{prefix}_{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
def d(tmp_path: Path) -> Path:
    """A setup directory holding funcs.py (the user functions of setup_helpers.FUNCS)."""
    (tmp_path / "funcs.py").write_text(FUNCS)
    return tmp_path


@pytest.fixture
def make_buffer(unique_name: Callable[[str], str]) -> Callable[..., mimoBuffer]:
    """Makes buffers of the worker-template tests (template_test_helpers.DTYPE, LENGTH)."""

    def make(slot_count=32, data_length=LENGTH, dtype=None, prefix="buf"):
        return mimoBuffer(unique_name(prefix), slot_count, data_length, dtype or DTYPE)

    return make


@pytest.fixture
def buf(unique_name: Callable[[str], str]) -> mimoBuffer:
    """A small buffer of the mimo_buffer tests (4 slots, 3 elements; test files may override)."""
    return mimoBuffer(unique_name("api"), 4, 3, BUFFER_DTYPE)
