"""Fixture: user functions in tests/setups/b (same file stem as a/functions.py)."""


def source(buffer_io):
    """mimoCoRB2 Function: generate events (fixture b)

    Type
        Importer
    """
    return "b.source"


def which():
    return "b"
