"""``data_flow.svg``: the setup as a graph (buffers as ellipses, roots blue; workers as boxes)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any


def dot_source(setup: Any) -> str:
    """The graph in graphviz ``dot`` language."""
    roots = set(setup.roots())
    lines = ["digraph mimocorb2 {", "  rankdir=LR;"]
    for name in setup.buffers:
        color = ', style=filled, fillcolor="#9ecae1"' if name in roots else ""
        lines.append(f'  "b:{name}" [label="{name}", shape=ellipse{color}];')
    for name, w in setup.workers.items():
        label = f"{name}\\n{w.function} x{w.number_of_processes}"
        lines.append(f'  "w:{name}" [label="{label}", shape=box];')
        lines += [f'  "b:{b}" -> "w:{name}";' for b in w.sources]
        lines += [f'  "w:{name}" -> "b:{b}";' for b in w.sinks]
        lines += [f'  "b:{b}" -> "w:{name}" [style=dotted];' for b in w.observes]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_data_flow(setup: Any, svg_path: Path) -> str | None:
    """Writes the ``.dot`` source and, if graphviz's ``dot`` exists, the SVG.

    Returns:
        A note for the user when the SVG could not be made, else None.
    """
    src = dot_source(setup)
    svg_path.with_suffix(".dot").write_text(src)
    dot = shutil.which("dot")
    if dot is None:
        return "graphviz 'dot' not found: wrote data_flow.dot only (install graphviz for the SVG)"
    try:
        subprocess.run(
            [dot, "-Tsvg", "-o", str(svg_path)], input=src, text=True, check=True, timeout=20
        )
    except (subprocess.SubprocessError, OSError) as e:
        return f"graphviz failed to draw data_flow.svg: {e}"
    return None
