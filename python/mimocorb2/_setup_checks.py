"""Setup validation, first part: collecting problems, and the checks of ``Buffers``.

:class:`_Problems` collects the problems of one setup (at most :data:`MAX_ERRORS`, the rest
counted); :class:`_BufferChecks` adds the checks of the buffers. The worker checks and the
walk over a whole setup are :class:`mimocorb2._setup_validate._Validator`, built on these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mimocorb2._dtypes import dtype_to_json, make_dtype
from mimocorb2._functions_import import _close, _did_you_mean
from mimocorb2._limits import (
    MAX_DTYPE_JSON,
    MAX_SLOT_DATA_BYTES,
    MAX_SLOTS,
    name_problem,
    preview,
)
from mimocorb2._setup_spec import BUFFER_KEYS, BufferSpec
from mimocorb2.exceptions import SetupValidationError


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


MAX_ERRORS = 100
"""Most problems listed in one SetupValidationError; the rest are counted."""
MAX_FUNCTION_NAME = 200
"""Longest ``function`` value (a dotted Python name)."""
MAX_FIELDS = 1000
"""Most fields of a data_dtype (their description must fit MAX_DTYPE_JSON bytes anyway)."""


def _got(value: Any) -> str:
    """Describes a wrong value for a message: its type and, if not null, a short preview."""
    return "nothing (null)" if value is None else f"{type(value).__name__} {preview(value)}"


def _did_you_mean_short(word: Any, candidates: tuple[str, ...]) -> str:
    """:func:`_did_you_mean` for plausible typos only (comparing long texts costs time)."""
    return _did_you_mean(word, candidates) if isinstance(word, str) and len(word) <= 64 else ""


def _close_short(word: Any, candidates: tuple[str, ...]) -> list[str]:
    """:func:`_close` for plausible typos only."""
    return _close(word, candidates) if isinstance(word, str) and len(word) <= 64 else []


def _os_reason(error: Exception) -> str:
    """The reason of an OSError or ValueError from a path operation, without the path."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return preview(str(error), 120)


def _path_too_long(path: Path) -> str:
    """Why the system would refuse ``path`` as too long (empty if it would not)."""
    if len(os.fsencode(str(path))) >= 4096 or any(len(os.fsencode(p)) > 255 for p in path.parts):
        return "File name too long"
    return ""


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# Reader groups a buffer with delivery every_worker can have (the core's MAX_GROUPS).
MAX_GROUPS = 16


class _Problems:
    """Collects every problem of one setup (the state the checks share)."""

    def __init__(self, setup: Any, setup_dir: str | Path, source: str) -> None:
        self.setup = setup
        self.setup_dir = Path(setup_dir).expanduser().resolve()
        self.source = source
        self.errors: list[str] = []
        self.buffer_names: list[str] = []
        self.buffer_set: set[str] = set()  # the same as a set, for lookups
        self.buffers_ok = True  # Buffers is a mapping: undefined names can be reported
        self.workers_ok = True  # Workers is a mapping: unused buffers can be reported
        self.suggested: set[str] = set()  # keys offered as "did you mean" in the current entry
        self.top_suggested: set[str] = set()  # the same for the top level
        self.more_errors = 0  # problems beyond MAX_ERRORS, counted only

    def error(self, where: str, message: str) -> None:
        self.add(f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}")

    def full(self) -> bool:
        """Whether MAX_ERRORS problems are listed; then loops only count (:meth:`skip`)."""
        return len(self.errors) >= MAX_ERRORS

    def skip(self) -> bool:
        """Counts a problem without building its message once the list is full."""
        if len(self.errors) < MAX_ERRORS:
            return False
        self.more_errors += 1
        return True

    def add(self, problem: str) -> None:
        """Records one complete problem message (beyond MAX_ERRORS: counts it)."""
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(problem)
        else:
            self.more_errors += 1

    def fail(self) -> SetupValidationError:
        """The error listing every recorded problem."""
        errors = list(self.errors)
        if self.more_errors:
            errors.append(
                f"{self.source}: {self.more_errors} more problem(s) not listed; fix the ones "
                "above first"
            )
        return SetupValidationError(errors, self.source)


class _BufferChecks(_Problems):
    """The checks of ``Buffers``."""

    def buffers(self, setup: Mapping[str, Any]) -> dict[str, BufferSpec]:
        if "Buffers" not in setup:
            self.buffers_ok = False
            if "Buffers" in self.top_suggested:
                return {}  # the typo message already points here
            self.error(
                "",
                "the key 'Buffers' is missing; add 'Buffers:' with one entry per buffer "
                "(slot_count, data_length, data_dtype)",
            )
            return {}
        raw = setup["Buffers"]
        if not isinstance(raw, Mapping):
            self.buffers_ok = False
            self.error(
                "key 'Buffers'",
                f"expected a mapping of buffer names to buffer settings, got {_got(raw)}",
            )
            return {}
        out: dict[str, BufferSpec] = {}
        for name, entry in raw.items():
            problem = name_problem(name, "buffer")
            if problem is not None:
                self.error("Buffers", problem)
                if not isinstance(name, str) or not name:
                    continue
            self.buffer_names.append(name)
            spec = self.buffer(name, entry)
            if spec is not None:
                out[name] = spec
        return out

    def buffer(self, name: str, entry: Any) -> BufferSpec | None:
        where = f"buffer {preview(name)}"
        if not isinstance(entry, Mapping):
            self.error(
                where,
                f"expected a mapping with slot_count, data_length and data_dtype, got "
                f"{_got(entry)}",
            )
            return None
        ok = True
        self.suggested = set()
        for key in entry:
            if key not in BUFFER_KEYS:
                ok = False
                if self.skip():
                    continue
                self.suggested.update(_close_short(key, BUFFER_KEYS))
                self.error(
                    where,
                    f"unknown key {preview(key)}{_did_you_mean_short(key, BUFFER_KEYS)}; allowed "
                    f"keys are {', '.join(BUFFER_KEYS)}",
                )
        slot_count = self.positive_int(
            where,
            entry,
            "slot_count",
            required=True,
            example=32,
            maximum=MAX_SLOTS,
            why="the most slots a buffer can have; fewer slots of more data_length each hold "
            "as much",
        )
        data_length = self.positive_int(where, entry, "data_length", required=True, example=1)
        dtype = self.dtype(where, entry)
        if data_length is not None and dtype is not None:
            data_length = self.slot_size(where, data_length, dtype)
        overwrite = entry.get("overwrite", False)
        if overwrite is None:
            overwrite = False
        if not isinstance(overwrite, bool):
            ok = False
            self.error(
                f"{where}, key 'overwrite'",
                f"expected true or false, got {_got(overwrite)}",
            )
        delivery = entry.get("delivery", "compete")
        if delivery is None:
            delivery = "compete"
        if delivery not in ("compete", "every_worker"):
            ok = False
            self.error(
                f"{where}, key 'delivery'",
                f"expected 'compete' (each event goes to one reading process, the default) or "
                f"'every_worker' (every worker reading the buffer gets every event), got "
                f"{_got(delivery)}",
            )
        if not ok or slot_count is None or data_length is None or dtype is None:
            return None
        return BufferSpec(name, slot_count, data_length, dtype, overwrite, str(delivery))

    def positive_int(
        self,
        where: str,
        entry: Mapping[str, Any],
        key: str,
        *,
        required: bool = False,
        default: int | None = None,
        minimum: int = 1,
        maximum: int | None = None,
        example: int = 1,
        why: str = "",
    ) -> int | None:
        if key not in entry or (entry[key] is None and not required):
            if required:
                if key not in self.suggested:  # else the typo message already points here
                    self.error(where, f"the key {key!r} is missing; add e.g. '{key}: {example}'")
                return None
            return default
        value = entry[key]
        if not _is_int(value) or value < minimum:
            self.error(
                f"{where}, key {key!r}",
                f"expected a whole number >= {minimum}, got {_got(value)}; "
                f"write e.g. '{key}: {example}'",
            )
            return None
        if maximum is not None and value > maximum:
            self.error(
                f"{where}, key {key!r}",
                f"{preview(value)} is more than the limit of {maximum} ({why}); write a number "
                f"from {minimum} to {maximum}",
            )
            return None
        return int(value)

    def slot_size(self, where: str, data_length: int, dtype: np.dtype) -> int | None:
        """Checks that one slot's data fits the core; returns data_length or None."""
        size = data_length * dtype.itemsize
        if size <= MAX_SLOT_DATA_BYTES:
            return data_length
        self.error(
            f"{where}, key 'data_length'",
            f"{preview(data_length)} elements of {dtype.itemsize} bytes need {size:.3g} bytes "
            f"per slot, more than the limit of {MAX_SLOT_DATA_BYTES} bytes (1 TiB); reduce "
            "data_length or the data_dtype",
        )
        return None

    def dtype(self, where: str, entry: Mapping[str, Any]) -> np.dtype | None:
        if "data_dtype" not in entry:
            if "data_dtype" in self.suggested:
                return None
            self.error(
                where,
                "the key 'data_dtype' is missing; add a mapping of field names to numpy types, "
                "e.g. 'data_dtype: {ch1: float32, ch2: int16}'",
            )
            return None
        spec = entry["data_dtype"]
        key = f"{where}, key 'data_dtype'"
        if not isinstance(spec, Mapping) or not spec:
            self.error(
                key,
                f"expected a mapping of field names to numpy types, got {_got(spec)}; "
                "write e.g. 'data_dtype: {{ch1: float32, ch2: int16}}'",
            )
            return None
        if len(spec) > MAX_FIELDS:
            self.error(
                key,
                f"{len(spec)} fields are more than the limit of {MAX_FIELDS}; use fewer fields, "
                "e.g. one field with data_length elements per event",
            )
            return None
        ok = True
        for field, value in spec.items():
            reason = "it is not a type name" if not isinstance(value, str) else ""
            if not reason:
                try:
                    np.dtype(value)
                except (TypeError, ValueError) as e:
                    reason = preview(str(e), 120)
            if reason:
                ok = False
                self.error(
                    f"{key}, field {preview(field)}",
                    f"{preview(value)} is not a numpy data type ({reason}); use e.g. float32, "
                    "float64, int16, int32, uint8 or S10",
                )
        if not ok:
            return None
        try:
            dtype = make_dtype(spec, key)
        except ValueError as e:
            self.add(f"{self.source}: {e}")
            return None
        size = len(dtype_to_json(dtype).encode())
        if size > MAX_DTYPE_JSON:
            self.error(
                key,
                f"the data type's description has {size} bytes, more than the limit of "
                f"{MAX_DTYPE_JSON}; use fewer or shorter field names",
            )
            return None
        return dtype
