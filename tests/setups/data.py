"""Fixture: a user module named like the reference's prebuilt `data` module (B25)."""


def sink(buffer_io):
    """mimoCoRB2 Function: consume events

    Type
    ----
    Exporter

    Buffers
    -------
    sources
        1
    sinks
        0
    observes
        0
    """
    return "data.sink"


def watch(buffer_io):
    """mimoCoRB2 Function: watch a buffer

    Type
    ----
    Observer
    """
    return "data.watch"


def untyped(buffer_io):
    return "data.untyped"
