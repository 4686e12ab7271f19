"""ROOT files of events (``exporters.root``, ``.mimo`` → ``.root``), written with uproot.

Layout: a TTree ``events`` with branches ``counter``, ``timestamp``, ``deadtime`` and one per
data field (a fixed-length array ``[data_length]`` when ``data_length > 1``; fixed byte
strings as ``uint8`` arrays of their width); one basket per branch per written group of
events; TObjStrings ``mimocorb2`` (JSON) and ``setup_yaml``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE
from mimocorb2._event_files import EventFileWriter, claim
from mimocorb2._format_registry import require


def _root_compression(uproot: ModuleType, name: str | None, level: int | None) -> Any:
    if name in (None, "none"):
        return None
    cls = {"lz4": "LZ4", "zlib": "ZLIB", "lzma": "LZMA", "zstd": "ZSTD"}[str(name).lower()]
    codec = getattr(uproot, cls)
    return codec(level) if level is not None else codec(1 if cls == "LZ4" else 4)


class RootWriter(EventFileWriter):
    """Writes events to a ROOT file with uproot: a TTree ``events`` (see the module).

    Events are collected and written as one basket per branch at every :meth:`flush` and
    whenever ``group_bytes`` are pending. uproot updates the tree on the file with every
    basket, so a crash of the writer loses only the events written since the last flush.
    Fixed byte strings ``S<n>`` become ``uint8`` arrays of ``n`` (``arr.view("S<n>")`` turns
    them back). Uncompressed by default (uproot's default, ZLIB, is many times slower).

    Args:
        path: The file; created, never overwritten.
        data_dtype: Structured dtype of the data.
        data_length: Elements per event.
        attrs: Values stored as JSON in the TObjString ``mimocorb2`` (with
            ``mimocorb2_version``, ``data_dtype``, ``data_length``, ``created``); the value of
            ``setup_yaml`` goes into the TObjString ``setup_yaml``; ``buffer`` is also the
            tree's title.
        compression: None (default), ``lz4``, ``zlib``, ``lzma`` or ``zstd``.
        compression_level: Level of the codec (default 1 for lz4, 4 otherwise).
        group_bytes: Pending bytes that trigger a basket before the next flush.

    Raises:
        MissingExtraError: If uproot is not installed.
        FileExistsError: If the file exists.
        ValueError: For fields ROOT files cannot store here.
    """

    fmt = "root"

    def __init__(
        self,
        path: str | os.PathLike[str],
        data_dtype: Any,
        data_length: int,
        *,
        attrs: Mapping[str, Any] | None = None,
        compression: str | None = None,
        compression_level: int | None = None,
        group_bytes: int = EventFileWriter.group_bytes,
    ) -> None:
        """Creates the file, its info strings and the tree."""
        super().__init__(path, data_dtype, data_length)
        uproot = require("root", "writing ROOT files")
        codec = _root_compression(uproot, compression, compression_level)
        self.group_bytes = int(group_bytes)
        self._shapes: dict[str, tuple[int, ...]] = {}
        types: dict[str, Any] = {n: METADATA_DTYPE[n] for n in METADATA_DTYPE.names or ()}
        for name in self.data_dtype.names or ():
            dt = self.data_dtype[name]
            shape: tuple[int, ...] = () if self.data_length == 1 else (self.data_length,)
            if dt.kind == "S":
                shape, dt = (*shape, dt.itemsize), np.dtype(np.uint8)
            self._shapes[name] = shape
            types[name] = np.dtype((dt.newbyteorder("="), shape)) if shape else dt
        info = self.info_json(attrs)
        claim(self.path)
        try:
            self._file = uproot.recreate(self.path, compression=codec)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        try:
            self._file["mimocorb2"] = json.dumps(info, default=str)
            setup_yaml = (attrs or {}).get("setup_yaml")
            if setup_yaml:
                self._file["setup_yaml"] = str(setup_yaml)
            self._tree = self._file.mktree(
                "events", types, title=str(info.get("buffer") or ""), initial_basket_capacity=64
            )
        except BaseException:
            self._file.close()
            raise

    def _write_group(self, metadata: np.ndarray, data: np.ndarray) -> None:
        """Writes one basket per branch, big-endian (as ROOT stores it)."""
        k = len(data)
        branches: dict[str, np.ndarray] = {}
        for name in METADATA_DTYPE.names or ():
            branches[name] = metadata[name].astype(METADATA_DTYPE[name].newbyteorder(">"))
        for name, shape in self._shapes.items():
            dt = self.data_dtype[name]
            column = data[name].astype(dt if dt.kind == "S" else dt.newbyteorder(">"))
            if dt.kind == "S":
                column = column.view(np.uint8)
            branches[name] = column.reshape((k, *shape))
        self._tree.extend(branches)

    def _sync(self) -> None:
        """Nothing more to do: uproot updates the tree on the file with every basket."""

    def _finish(self) -> None:
        """Closes the file."""
        self._file.close()
