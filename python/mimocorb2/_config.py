"""Worker configurations: a dict, a YAML file path, or a list of both, merged in order."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mimocorb2._limits import preview
from mimocorb2._yaml_limits import read_yaml_file
from mimocorb2._yaml_load import YamlError, load_yaml_text


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the file and the fix."""


def resolve_path(value: str | Path, base_dir: str | Path) -> Path:
    """Resolves a setup path: absolute stays, ``~`` expands, relative is taken from ``base_dir``."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


def load_config(value: Any, setup_dir: str | Path, where: str = "config") -> dict[str, Any]:
    """Loads a configuration given as a dict, a YAML path or a list of both.

    Later entries of a list override earlier ones (shallow, top-level keys).

    Args:
        value: The value of a ``config`` (or ``base_config``) key, or None.
        setup_dir: Directory relative paths are resolved against.
        where: Where the value came from, for error messages (e.g. "worker 'filter': config").

    Returns:
        The merged configuration.

    Raises:
        ConfigError: For a missing or malformed file or an unsupported value type.
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str | Path):
        path = resolve_path(value, setup_dir)
        try:
            found = path.is_file()
            text = read_yaml_file(path) if found else ""
        except (OSError, ValueError) as e:  # a name too long, a NUL byte, an I/O error, size
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ConfigError(
                f"{where}: config file {preview(str(value))} cannot be read ({reason}); "
                "write the path of a readable YAML file, relative to the setup file's directory"
            ) from None
        if not found:
            raise ConfigError(
                f"{where}: config file {preview(str(value))} not found (looked for "
                f"{preview(str(path), 200)}); paths are relative to the setup file's directory"
            )
        try:
            loaded = load_yaml_text(text, str(path))
        except YamlError as e:
            raise ConfigError(f"{where}: {'; '.join(e.problems)}") from None
        if loaded is None:
            return {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(
                f"{where}: config file {path} must hold a mapping of keys to values, "
                f"not a {type(loaded).__name__}"
            )
        return dict(loaded)
    if isinstance(value, list):
        merged: dict[str, Any] = {}
        for i, item in enumerate(value):
            merged.update(load_config(item, setup_dir, f"{where}[{i}]"))
        return merged
    raise ConfigError(
        f"{where}: expected a mapping, a YAML file path or a list of them, "
        f"got {type(value).__name__} {preview(value)}"
    )
