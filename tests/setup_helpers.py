"""Setup-validation helpers shared by test_setup.py and test_setup_malformed.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mimocorb2._setup import parse_setup
from mimocorb2.exceptions import SetupValidationError

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
