"""Fixture: user functions in tests/setups/a (same file stem as b/functions.py)."""

from dataclasses import dataclass


@dataclass
class Event:
    value: int


def source(buffer_io):
    """mimoCoRB2 Function: generate events (fixture a)

    Type
    ----
    Importer
    """
    return "a.source"


def which():
    return "a"
