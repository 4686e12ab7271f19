"""Bounded YAML loading: libyaml when present, no exponential merges, limited nesting.

:data:`SAFE_LOADER` is the loader class setups and configs are read with: libyaml's
``yaml.CSafeLoader`` when PyYAML was built with it (a 1 MB setup loads in well under a second
instead of 20 s), else ``yaml.SafeLoader``; both construct the same values. Either way:

- ``<<`` merge keys keep one entry per key after merging (the one YAML says wins), so a
  chain of anchors merged ten times each cannot grow a mapping exponentially;
- :func:`structure_problem` measures the nesting depth of a document, aliases included, and
  counts its values, from the parser's event stream before anything is built: a deeply
  nested document is refused with a message instead of crashing the recursive composer
  (libyaml's crashes the interpreter, PyYAML's raises ``RecursionError``), and one with
  more than :data:`MAX_NODES` values instead of taking hundreds of MB while it is built.

Aliases themselves stay cheap: an alias refers to the anchored value, it is not copied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "SAFE_LOADER",
    "read_yaml_file",
    "structure_problem",
]

MAX_DEPTH = 100
"""Deepest nesting of lists and mappings in a setup or config file (aliases included)."""
MAX_NODES = 100_000
"""Most values (scalars, lists, mappings and aliases) in one setup or config file: a parsed
document takes a few hundred bytes per value before it is converted, so this bounds memory."""
MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest setup or config file (16 MiB; real ones have a few kB)."""


class _DedupMergeMixin:
    """Removes entries that a ``<<`` merge brought in and a later entry overrides."""

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        super().flatten_mapping(node)  # type: ignore[misc]
        # Keep each key at its first position with its last value, as building a dict from
        # all entries in order would.
        where: dict[tuple[str, str], int] = {}
        kept: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                ident = (key_node.tag, key_node.value)
                index = where.get(ident)
                if index is not None:
                    kept[index] = (kept[index][0], value_node)
                    continue
                where[ident] = len(kept)
            kept.append((key_node, value_node))
        node.value = kept


class _PySafeLoader(_DedupMergeMixin, yaml.SafeLoader):
    """``yaml.SafeLoader`` with bounded merges."""


_C_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", None)
if _C_SAFE_LOADER is not None:

    class _CSafeLoader(_DedupMergeMixin, _C_SAFE_LOADER):  # type: ignore[misc, valid-type]
        """libyaml's ``yaml.CSafeLoader`` with bounded merges."""

    SAFE_LOADER: type[Any] = _CSafeLoader
else:  # pragma: no cover - PyYAML built without libyaml
    SAFE_LOADER = _PySafeLoader

_EVENT_LOADER: type[Any] = _C_SAFE_LOADER or yaml.SafeLoader


def structure_problem(
    text: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES
) -> tuple[int, str] | None:
    """Finds a nesting of lists and mappings deeper than ``max_depth``, or too many values.

    The depth counts through aliases: an alias to an anchored list of depth 5 inside a list
    of depth 3 makes depth 8. An alias counts as one value. Only the parser's events are
    looked at (no values are built).

    Args:
        text: The YAML document.
        max_depth: The deepest nesting allowed.
        max_nodes: The most values allowed.

    Returns:
        ``(line, problem)`` for the first place that is too deep or the value beyond the
        limit, or None, also when the text is not valid YAML (the loader reports that with
        its own message).
    """
    anchors: dict[str, int] = {}
    stack: list[list[Any]] = []  # [anchor, deepest depth below] per open collection
    nodes = 0
    events = yaml.parse(text, Loader=_EVENT_LOADER)
    try:
        for event in events:
            if not isinstance(event, yaml.NodeEvent):
                if isinstance(event, yaml.CollectionEndEvent):
                    anchor, below = stack.pop()
                    if anchor is not None:
                        anchors[anchor] = below + 1
                    if stack:
                        stack[-1][1] = max(stack[-1][1], below + 1)
                continue
            nodes += 1
            if nodes > max_nodes:
                return _line(event), (
                    f"the file holds more than {max_nodes} values (each element of a list or "
                    "mapping counts); setups hold settings, not data: keep large tables in a "
                    "data file and give its path in the config"
                )
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append([event.anchor, 0])
                if len(stack) > max_depth:
                    return _line(event), _too_deep(max_depth)
            elif isinstance(event, yaml.AliasEvent) and stack:
                depth = anchors.get(event.anchor, 0)
                if len(stack) + depth > max_depth:
                    return _line(event), _too_deep(max_depth, alias=event.anchor)
                stack[-1][1] = max(stack[-1][1], depth)
    except yaml.YAMLError:
        return None
    finally:
        events.close()
    return None


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 0


def _too_deep(max_depth: int, alias: str | None = None) -> str:
    via = f" (through the alias *{alias})" if alias else ""
    return (
        f"lists and mappings are nested more than {max_depth} levels deep{via}; a setup needs "
        "only a few levels: flatten the value"
    )


def read_yaml_file(path: Path) -> str:
    """Reads a setup or config file of at most :data:`MAX_FILE_BYTES` as UTF-8 text.

    Args:
        path: The file.

    Returns:
        Its text.

    Raises:
        OSError: If it cannot be read.
        ValueError: If it is larger than the limit or not UTF-8 text; the message says so.
    """
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(
            f"it is larger than the limit of {MAX_FILE_BYTES // (1024 * 1024)} MiB; setup and "
            "config files hold settings, not data"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"it is not UTF-8 text (byte {e.start} cannot be decoded)") from None
