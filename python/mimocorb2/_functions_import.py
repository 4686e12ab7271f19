"""Worker functions: import user function files and resolve prebuilt functions.

Worker functions come either from a user file (``file:`` relative to the setup directory) or,
without ``file``, from the prebuilt package: ``function: a.b`` is attribute ``b`` of module
``mimocorb2.functions.a``; or from a function pack, an installed distribution declaring entry
point group ``mimocorb2.functions`` (:class:`FunctionPack`): ``function: pack.module.name``.
User files are imported from their full path under a unique module name
(``mimocorb2_user.<stem>_<hash>``), so two files with the same stem, or a file called
``data.py``, never collide with each other or with installed modules.

Resolution errors are :class:`_ResolveError` with a message saying what to fix, including a
"did you mean" suggestion (:func:`_did_you_mean`, also used by the setup validator).
:func:`mimocorb2._setup.load_function` and the validator in :mod:`mimocorb2._setup_validate`
are the callers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import re
import sys
import threading
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

PREBUILT_PACKAGE = "mimocorb2.functions"
"""Package holding the prebuilt worker functions (``function: a.b`` → ``mimocorb2.functions.a``)."""

ENTRY_POINT_GROUP = "mimocorb2.functions"
"""Entry point group of function packs: ``name = "module"`` (see :class:`FunctionPack`)."""

USER_MODULE_PACKAGE = "mimocorb2_user"
"""Parent name under which user function files are registered in ``sys.modules``."""


# --------------------------------------------------------------------------------------------
# Function resolution
# --------------------------------------------------------------------------------------------


class _ResolveError(Exception):
    """A worker function could not be resolved; the message says why and what to do."""

    def __init__(self, message: str, key: str = "function") -> None:
        super().__init__(message)
        self.key = key


_USER_MODULES: dict[Path, types.ModuleType] = {}
_IMPORT_LOCK = threading.RLock()


def _user_module_name(path: Path) -> str:
    stem = re.sub(r"\W", "_", path.stem) or "module"
    if stem[0].isdigit():
        stem = f"_{stem}"
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return f"{USER_MODULE_PACKAGE}.{stem}_{digest}"


def _import_user_module(path: Path) -> types.ModuleType:
    """Imports a user file under a unique name; cached per absolute path.

    The module is in ``sys.modules`` before it runs (dataclasses and pickle find it). Its
    directory is on ``sys.path`` while it runs, so it can import helper modules next to it.
    No bytecode cache is written.
    """
    path = path.resolve()
    with _IMPORT_LOCK:
        cached = _USER_MODULES.get(path)
        if cached is not None:
            return cached
        parent = sys.modules.get(USER_MODULE_PACKAGE)
        if parent is None:
            parent = types.ModuleType(
                USER_MODULE_PACKAGE, "User worker function files loaded by mimocorb2."
            )
            parent.__path__ = []
            sys.modules[USER_MODULE_PACKAGE] = parent
        name = _user_module_name(path)
        loader = importlib.machinery.SourceFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, path, loader=loader)
        if spec is None:  # pragma: no cover - a loader was given
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        directory = str(path.parent)
        sys.path.insert(0, directory)
        write_bytecode = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
        try:
            loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        finally:
            sys.dont_write_bytecode = write_bytecode
            with contextlib.suppress(ValueError):
                sys.path.remove(directory)
        setattr(parent, name.rpartition(".")[2], module)
        _USER_MODULES[path] = module
        return module


def _public_callables(module: types.ModuleType) -> list[str]:
    return sorted(
        n for n, v in vars(module).items() if not n.startswith("_") and inspect.isfunction(v)
    )


def _resolve_function(function: str, file: Path | None) -> Callable[[Any], Any]:
    """Resolves a worker function; raises :class:`_ResolveError` with a helpful message."""
    if file is not None:
        if not file.is_file():
            raise _ResolveError(f"function file {file} not found", "file")
        try:
            module = _import_user_module(file)
        except (Exception, SystemExit) as e:
            raise _ResolveError(f"importing {file} failed: {type(e).__name__}: {e}", "file") from e
        obj: Any = module
        for part in function.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                defined = _public_callables(module)
                raise _ResolveError(
                    f"function {function!r} is not defined in {file}"
                    f"{_did_you_mean(function, defined)}; functions defined there: "
                    f"{', '.join(defined) or 'none'}"
                )
        if not callable(obj):
            raise _ResolveError(
                f"{function!r} in {file} has type {type(obj).__name__}, not a function"
            )
        return obj

    packs = function_packs().get(function.partition(".")[0], [])
    if packs:
        return _resolve_with_packs(function, packs)
    return _resolve_prebuilt(function)


def _resolve_prebuilt(function: str) -> Callable[[Any], Any]:
    """Resolves ``function`` in :data:`PREBUILT_PACKAGE` (no pack of that name is installed)."""
    module_part, _, attr = function.rpartition(".")
    if not module_part or not attr:
        raise _ResolveError(
            f"no prebuilt function {function!r}: prebuilt functions are named "
            "'<module>.<function>', e.g. 'exporters.drain'; for a function in your own file "
            "add 'file: <path to .py file>'"
        )
    module_name = f"{PREBUILT_PACKAGE}.{module_part}"
    try:
        prebuilt = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise _ResolveError(
                f"no prebuilt function {function!r}: there is no prebuilt module "
                f"{module_name!r} and no function pack {function.partition('.')[0]!r}"
                f"{_packs_installed()}; check the name, or add 'file: <path to .py file>' for "
                "a function in your own file"
            ) from e
        raise _ResolveError(
            f"importing prebuilt module {module_name} failed: {type(e).__name__}: {e}"
        ) from e
    except (Exception, SystemExit) as e:
        raise _ResolveError(
            f"importing prebuilt module {module_name} failed: {type(e).__name__}: {e}"
        ) from e
    func = getattr(prebuilt, attr, None)
    if func is None or not callable(func):
        defined = _public_callables(prebuilt)
        raise _ResolveError(
            f"no prebuilt function {function!r}: module {module_name} has no function "
            f"{attr!r}{_did_you_mean(attr, defined)}; available: "
            f"{', '.join(f'{module_part}.{n}' for n in defined) or 'none'}"
        )
    return func


# --------------------------------------------------------------------------------------------
# Function packs: prebuilt functions of other distributions (entry points)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FunctionPack:
    """A pack of worker functions that an installed distribution declares.

    A distribution declares it in its ``pyproject.toml``::

        [project.entry-points."mimocorb2.functions"]
        mypack = "mypack_daq.functions"

    and a setup uses ``function: mypack.scope.show`` (no ``file:``) for the function ``show``
    of module ``mypack_daq.functions.scope`` (``mypack.show`` for ``show`` of the pack's
    module itself).

    Attributes:
        name: The pack's name (the entry point's name), the first part of ``function:``.
        module: The module the pack's names are relative to (the entry point's value).
        distribution: The distribution declaring it, with its version (``mypack-daq 1.0``).
    """

    name: str
    module: str
    distribution: str

    def where(self) -> str:
        """Where the pack comes from, for messages."""
        return f"pack {self.name!r} (module {self.module}, distribution {self.distribution})"


_PACKS_CACHE: dict[tuple[str, ...], dict[str, list[FunctionPack]]] = {}


def function_packs() -> dict[str, list[FunctionPack]]:
    """The function packs installed, by name (entry point group :data:`ENTRY_POINT_GROUP`).

    Cached per ``sys.path``; a name declared by several distributions has several packs.
    """
    key = tuple(sys.path)
    cached = _PACKS_CACHE.get(key)
    if cached is not None:
        return cached
    packs: dict[str, list[FunctionPack]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
        pack = FunctionPack(ep.name, ep.value.strip(), origin)
        if pack not in packs.get(ep.name, []):  # a distribution found twice on sys.path
            packs.setdefault(ep.name, []).append(pack)
    _PACKS_CACHE.clear()
    _PACKS_CACHE[key] = packs
    return packs


def _packs_installed() -> str:
    names = sorted(function_packs())
    return f" (function packs installed: {', '.join(names)})" if names else ""


def _find_in_module(
    module_name: str, attr: str, where: str
) -> tuple[Callable[[Any], Any] | None, str | None]:
    """``(function, None)``, or ``(None, why not)``; raises for a module that fails to import."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            return None, f"{where}: no module {module_name}"
        raise _ResolveError(
            f"{where}: importing {module_name} failed: {type(e).__name__}: {e}"
        ) from e
    except (Exception, SystemExit) as e:
        raise _ResolveError(
            f"{where}: importing {module_name} failed: {type(e).__name__}: {e}"
        ) from e
    func = getattr(module, attr, None)
    if func is None or not callable(func):
        defined = _public_callables(module)
        return None, (
            f"{where}: module {module_name} has no function {attr!r}"
            f"{_did_you_mean(attr, defined)} (it has: {', '.join(defined) or 'none'})"
        )
    return func, None


def _resolve_with_packs(function: str, packs: list[FunctionPack]) -> Callable[[Any], Any]:
    """Resolves ``function`` in the packs of its first part and in the prebuilt package.

    Exactly one place must have it: none, or more than one, is an error naming every place
    looked at.
    """
    pack_name, _, rest = function.partition(".")
    if not rest:
        raise _ResolveError(
            f"function {function!r} names only the {packs[0].where()}: write "
            f"'{pack_name}.<module>.<function>' (or '{pack_name}.<function>')"
        )
    found: list[tuple[str, Callable[[Any], Any]]] = []
    misses: list[str] = []
    module_part, _, attr = function.rpartition(".")
    where = f"built in ({PREBUILT_PACKAGE})"
    try:
        func, why = _find_in_module(f"{PREBUILT_PACKAGE}.{module_part}", attr, where)
    except _ResolveError as e:
        func, why = None, str(e)
    if func is not None:
        found.append((f"{where}: {PREBUILT_PACKAGE}.{function}", func))
    elif why is not None:
        misses.append(why)
    sub, _, attr = rest.rpartition(".")
    for pack in packs:
        module_name = f"{pack.module}.{sub}" if sub else pack.module
        func, why = _find_in_module(module_name, attr, pack.where())
        if func is not None:
            found.append((f"{pack.where()}: {module_name}.{attr}", func))
        elif why is not None:
            misses.append(why)
    if len(found) == 1:
        return found[0][1]
    if found:
        raise _ResolveError(
            f"function {function!r} is found in {len(found)} places: "
            + "; ".join(place for place, _ in found)
            + "; uninstall or rename one of the packs, or use 'file:' with the function's file"
        )
    raise _ResolveError(f"no function {function!r}: " + "; ".join(misses))


def function_origin(function: str, file: Path | None) -> str:
    """Where ``function`` comes from (a file, the prebuilt package or a pack), for messages."""
    if file is not None:
        return str(file)
    packs = function_packs().get(function.partition(".")[0], [])
    if not packs:
        return f"built in ({PREBUILT_PACKAGE})"
    return "; ".join(pack.where() for pack in packs)


# --------------------------------------------------------------------------------------------
# Suggestions
# --------------------------------------------------------------------------------------------


def _close(word: Any, candidates: Iterable[str]) -> list[str]:
    """Returns the candidate closest to ``word`` (case-insensitive) as a 0- or 1-item list."""
    if not isinstance(word, str):
        return []
    by_lower: dict[str, str] = {}
    for c in candidates:
        by_lower.setdefault(c.lower(), c)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return [by_lower[c] for c in close]


def _did_you_mean(word: Any, candidates: Iterable[str]) -> str:
    """Returns `` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = _close(word, candidates)
    return f" (did you mean {close[0]!r}?)" if close else ""
