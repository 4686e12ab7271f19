"""Which system libraries Qt's platform plugin lacks, and the command that installs them.

When Qt cannot load its platform plugin (typically ``xcb`` on a fresh Debian or Ubuntu), it
only prints "Could not load the Qt platform plugin ... even though it was found". The cause is
almost always a missing shared library of the plugin: :func:`platform_plugin_hint` runs
``ldd`` on the plugin of the Qt binding in use (:mod:`mimocorb2._qt`) and names the libraries
that are not found and the ``apt-get`` command that installs them.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["debian_package", "missing_libraries", "platform_plugin_hint", "plugin_path"]

_PACKAGES = {
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libdbus-1.so.3": "libdbus-1-3",
}
"""Libraries whose Debian package name does not follow the usual rule."""


def debian_package(library: str) -> str:
    """The Debian/Ubuntu package that usually holds a shared library.

    The rule of Debian's library packages: the name in lower case followed by the SONAME
    version, with a ``-`` between them when the name ends in a digit
    (``libxcb-icccm.so.4`` -> ``libxcb-icccm4``, ``libxkbcommon-x11.so.0`` ->
    ``libxkbcommon-x11-0``); a few exceptions are listed.

    Args:
        library: The file name, e.g. ``libxcb-icccm.so.4``.

    Returns:
        The package name.
    """
    if library in _PACKAGES:
        return _PACKAGES[library]
    m = re.match(r"(lib.+?)\.so\.(\d+)", library)
    if m is None:
        return library
    name, version = m.group(1).lower(), m.group(2)
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


_QT_DIRS = {"PyQt5": ("Qt5", "Qt"), "PyQt6": ("Qt6", "Qt"), "PySide6": ("Qt",)}
"""Where each binding's wheel keeps Qt (``plugins/`` is inside)."""


def plugin_path(platform: str = "xcb") -> Path | None:
    """The platform plugin library of the Qt binding in use (``libq<platform>.so``), or None."""
    from mimocorb2._qt import QtBindingError, binding

    try:
        name = binding()
        spec = importlib.util.find_spec(name)
    except (QtBindingError, ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        for qt in _QT_DIRS[name]:
            path = Path(root) / qt / "plugins" / "platforms" / f"libq{platform}.so"
            if path.is_file():
                return path
    return None


def missing_libraries(platform: str = "xcb", ldd_output: str | None = None) -> list[str]:
    """The shared libraries the platform plugin needs and the system lacks.

    Args:
        platform: The Qt platform plugin (``xcb``, ``wayland`` ...).
        ldd_output: ``ldd``'s output to parse (default: run ``ldd`` on the plugin).

    Returns:
        Library file names in ``ldd``'s order, each once; empty when nothing is missing
        or it cannot be told (no Qt binding, no ``ldd``).
    """
    if ldd_output is None:
        path = plugin_path(platform)
        ldd = shutil.which("ldd")
        if path is None or ldd is None:
            return []
        try:
            ldd_output = subprocess.run(
                [ldd, str(path)], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
    missing: list[str] = []
    for line in ldd_output.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+not found", line)
        if m and m.group(1) not in missing:
            missing.append(m.group(1))
    return missing


def platform_plugin_hint(platform: str = "xcb", ldd_output: str | None = None) -> str | None:
    """A sentence naming the missing libraries of Qt's platform plugin and how to install them.

    Args:
        platform: The Qt platform plugin.
        ldd_output: ``ldd``'s output to parse (default: run ``ldd`` on the plugin).

    Returns:
        E.g. "Qt's 'xcb' platform plugin needs system libraries that are missing:
        libxcb-icccm.so.4; on Debian/Ubuntu install them with: sudo apt-get install
        libxcb-icccm4", or None when nothing is known to be missing.
    """
    missing = missing_libraries(platform, ldd_output)
    if not missing:
        return None
    packages = list(dict.fromkeys(debian_package(lib) for lib in missing))
    return (
        f"Qt's '{platform}' platform plugin needs system libraries that are missing: "
        f"{', '.join(missing)}; on Debian/Ubuntu install them with: sudo apt-get install "
        f"{' '.join(packages)}"
    )
