"""Reading setup and config YAML with messages a newcomer understands.

:func:`load_yaml_text` parses YAML like ``yaml.safe_load`` (anchors, aliases, ``<<`` merge keys)
with two differences:

- a key written twice in one mapping is an error naming both lines (plain PyYAML keeps the
  last one silently); keys brought in by a ``<<`` merge may be overridden, as YAML intends;
- a syntax error becomes :class:`YamlError`, whose message names the file and the line in
  plain words ("line 30: the indentation does not match the lines above") instead of the
  parser's jargon and ``"<unicode string>"``.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from mimocorb2._yaml_limits import SAFE_LOADER, structure_problem

__all__ = ["YamlError", "explain_yaml_error", "load_yaml_text"]


class YamlError(ValueError):
    """A YAML text cannot be used; ``problems`` lists each one as ``<file>, line N: ...``."""

    def __init__(self, problems: list[str]) -> None:
        """Keeps the problems; the message joins them."""
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _make_loader(base: type[Any]) -> type[Any]:
    """A loader class over ``base`` that records keys written twice in one mapping."""

    class _UniqueKeyLoader(base):  # type: ignore[misc, valid-type]
        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self.duplicates: list[tuple[str, int, int]] = []

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            if isinstance(node, yaml.MappingNode):
                for key_node, _value_node in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    try:
                        key = self.construct_object(key_node, deep=True)
                        hash(key)
                    except Exception:  # unhashable: the base class reports it
                        continue
                    line = key_node.start_mark.line + 1
                    if key in seen:
                        self.duplicates.append((str(key), seen[key], line))
                    else:
                        seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return _UniqueKeyLoader


_LOADERS: dict[type[Any], type[Any]] = {}


def load_yaml_text(text: str, source: str, loader: type[Any] | None = None) -> Any:
    """Parses YAML text; duplicate keys and syntax errors raise :class:`YamlError`.

    Args:
        text: The YAML document.
        source: The file name used in messages.
        loader: The safe loader class to build on (default
            :data:`mimocorb2._yaml_limits.SAFE_LOADER`: libyaml's ``yaml.CSafeLoader`` when
            present, else ``yaml.SafeLoader``, both with bounded ``<<`` merges).

    Returns:
        The parsed document.

    Raises:
        YamlError: For a syntax error, keys written twice in one mapping, or lists and
            mappings nested deeper than :data:`mimocorb2._yaml_limits.MAX_DEPTH`, or more
            than :data:`mimocorb2._yaml_limits.MAX_NODES` values.
    """
    too_big = structure_problem(text)
    if too_big is not None:
        raise YamlError([f"{source}, line {too_big[0]}: {too_big[1]}"])
    base = loader or SAFE_LOADER
    cls = _LOADERS.get(base)
    if cls is None:
        cls = _LOADERS[base] = _make_loader(base)
    parser = cls(text)
    try:
        data = parser.get_single_data()
    except yaml.YAMLError as e:
        raise YamlError([explain_yaml_error(e, text, source)]) from None
    except RecursionError:  # structure_problem measures the depth; this is the last guard
        raise YamlError([f"{source}: lists and mappings are nested too deeply"]) from None
    finally:
        parser.dispose()
    if parser.duplicates:
        raise YamlError(
            [
                f"{source}, lines {first} and {second}: the key '{key}' is written twice in the "
                "same mapping; keep one of them"
                for key, first, second in sorted(parser.duplicates, key=lambda d: d[1:])
            ]
        )
    return data


def _line(text: str, number: int) -> str:
    lines = text.splitlines()
    return lines[number - 1] if 0 < number <= len(lines) else ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _previous_content_line(text: str, number: int) -> int:
    """The number of the closest line above ``number`` that holds more than a comment."""
    lines = text.splitlines()
    for n in range(min(number - 1, len(lines)), 0, -1):
        stripped = lines[n - 1].strip()
        if stripped and not stripped.startswith("#"):
            return n
    return 0


def _unclosed_bracket(text: str) -> tuple[int, str] | None:
    """(line, bracket) of the first ``[`` or ``{`` never closed (outside quotes and comments)."""
    stack: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        quote = ""
        for i, char in enumerate(line):
            if quote:
                if char == quote:
                    quote = ""
            elif char in "'\"":
                quote = char
            elif char == "#" and (i == 0 or line[i - 1] in " \t"):
                break
            elif char in "[{":
                stack.append((n, char))
            elif char in "]}" and stack:
                stack.pop()
    return stack[0] if stack else None


def _explain(
    problem: str, context: str, text: str, line: int, context_line: int | None
) -> tuple[int, str]:
    """(line, plain words) for one parser problem."""
    indentation = "the indentation does not match the lines above"
    if "cannot start any token" in problem and (
        "\\t" in problem or "\t" in problem or "\t" in _line(text, line)
    ):
        return line, "a tab character: YAML indents with spaces only"
    if "expected <block end>" in problem:
        if "'-'" in problem or "block sequence" in problem:
            return line, f"{indentation} (a '-' list item where a key was expected)"
        if "'?'" in problem and context_line is not None:
            return line, f"{indentation} (a key inside a '-' list, or a list item missing its '-')"
        return line, indentation
    if "did not find expected key" in problem:
        return line, indentation
    if "did not find expected '-'" in problem:
        return line, f"{indentation} (a '-' list item was expected)"
    if "could not find expected ':'" in problem and context_line is not None:
        if re.match(r"\s*-[^\s-]", _line(text, context_line)):
            return context_line, "a '-' list item needs a space after the '-'"
        return context_line, "this line has no ':' (write 'key: value', or quote the text)"
    if "mapping values are not allowed" in problem:
        here = _line(text, line)
        prev_no = _previous_content_line(text, line)
        prev = _line(text, prev_no)
        head = here.strip()
        colon = head.find(":")
        if prev_no and ":" not in prev and not prev.strip().startswith("-"):
            return prev_no, "this line has no ':' (write 'key: value', or quote the text)"
        if colon >= 0 and ": " in head[colon + 1 :] + " " and head.count(":") > 1:
            return line, (
                "a second ': ' on this line; put quotes around a value that contains ': '"
            )
        if prev_no and _indent(here) > _indent(prev) and not prev.rstrip().endswith(":"):
            return line, f"{indentation} (this line is indented deeper than the one above)"
        return line, f"{indentation}, or a value contains ': ' and needs quotes"
    if "found unexpected end of stream" in problem and "quoted" in context:
        return context_line or line, "a quote opened on this line is never closed"
    if "<stream end>" in problem or "end of stream" in problem:
        opened = _unclosed_bracket(text)
        if opened is not None:
            n, char = opened
            close = "]" if char == "[" else "}"
            return n, f"a '{char}' opened on this line is never closed with '{close}'"
        return line, "the file ends in the middle of a value"
    if "found unknown escape character" in problem:
        return line, (
            "an unknown escape sequence inside double quotes (write \\\\ for a backslash, or "
            "use single quotes)"
        )
    if re.search(r"expected ',' or '\]'", problem):
        return context_line or line, "a '[' opened on this line is never closed with ']'"
    if re.search(r"expected ',' or '\}'", problem):
        return context_line or line, "a '{' opened on this line is never closed with '}'"
    if "found undefined alias" in problem:
        m = re.search(r"found undefined alias '([^']*)'", problem) or re.search(
            r"\*([^\s,\]}]+)", _line(text, line)
        )
        name = m.group(1) if m else "name"
        return line, f"the alias *{name} has no anchor &{name} above it"
    if "found duplicate anchor" in problem:
        return line, "an anchor (&name) is defined twice"
    if "found character" in problem and "cannot start any token" in problem:
        char = re.search(r"found character '(.*?)'", problem)
        what = char.group(1) if char else "this character"
        return line, f"'{what}' cannot start a value here; put the value in quotes"
    return line, f"the YAML cannot be read ({problem.strip() or context.strip()})"


def explain_yaml_error(error: yaml.YAMLError, text: str, source: str) -> str:
    """A one-line, plain-words description of a YAML error: ``<source>, line N: ...``.

    Args:
        error: The parser's exception.
        text: The parsed text (to look at the offending lines).
        source: The file name for the message.

    Returns:
        The message.
    """
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f"{source}: not valid YAML ({error})"
    problem = error.problem or ""
    context = error.context or ""
    line = error.problem_mark.line + 1
    context_line = error.context_mark.line + 1 if error.context_mark is not None else None
    where, words = _explain(problem, context, text, line, context_line)
    shown = _line(text, where).strip()
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{source}, line {where}: not valid YAML: {words}" + (
        f"; the line reads: {shown}" if shown else ""
    )
