"""The colours of the window: plot curves, bars, and the states of workers and processes."""

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
"""Curve colours, one per buffer or worker (repeating after ten)."""
FILLED_COLOR = "#1f77b4"
IN_USE_COLOR = "#ff7f0e"
EMPTY_COLOR = "#d9d9d9"
ALIVE_COLOR = "#2ca02c"
FAILED_COLOR = "#d62728"
CONFIGURED_COLOR = "#e0e0e0"
STOPPED_COLOR = "#6c757d"
"""Workers stopped by the user (Kill Workers): grey, not the red of a crash."""
