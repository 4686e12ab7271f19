"""HDF5, Parquet and ROOT files of events: the writers behind the exporters and converters.

``exporters.hdf5``, ``exporters.parquet`` and ``exporters.root`` (worker functions in
:mod:`mimocorb2.functions.exporters`) and the converters of ``.mimo`` files
(:func:`mimocorb2.mimo_file.convert_to`, ``mimocorb2 convert``, in
:mod:`mimocorb2._mimo_convert`) write through the classes named here. Each format needs one
optional library, installed with an extra of the package:

=========  ===========  ==================================  =========================
format     library      install                             file
=========  ===========  ==================================  =========================
hdf5       ``h5py``     ``pip install "mimocorb2[hdf5]"``   ``<name>.h5``
parquet    ``pyarrow``  ``pip install "mimocorb2[parquet]"`` ``<name>.parquet``
root       ``uproot``   ``pip install "mimocorb2[root]"``   ``<name>.root``
=========  ===========  ==================================  =========================

The libraries are imported only when a file is opened; a missing one raises
:class:`MissingExtraError`, whose message names the ``pip`` command.

Where what lives:

- :mod:`mimocorb2._format_registry`: names, endings, compressions, extras, configuration and
  dtype checks;
- :mod:`mimocorb2._event_files`: the write loop every writer shares (checks, staging of small
  batches, flush, close);
- :mod:`mimocorb2._hdf5_file` (:class:`Hdf5Writer`, :func:`recover_hdf5`),
  :mod:`mimocorb2._parquet_file` (:class:`ParquetWriter`) and :mod:`mimocorb2._root_file`
  (:class:`RootWriter`): the layouts of the formats (described there).
"""

from __future__ import annotations

import os
from typing import Any

from mimocorb2._core import __version__ as __version__
from mimocorb2._event_files import EventFileWriter
from mimocorb2._format_registry import (
    COMPRESSIONS,
    FORMATS,
    SUFFIXES,
    MissingExtraError,
    config_problems,
    dtype_problems,
    format_of,
    missing_extra,
    pip_command,
    require,
)
from mimocorb2._hdf5_file import Hdf5Writer, recover_hdf5
from mimocorb2._parquet_file import ParquetWriter
from mimocorb2._root_file import RootWriter

__all__ = [
    "COMPRESSIONS",
    "FORMATS",
    "SUFFIXES",
    "EventFileWriter",
    "Hdf5Writer",
    "MissingExtraError",
    "ParquetWriter",
    "RootWriter",
    "config_problems",
    "dtype_problems",
    "format_of",
    "missing_extra",
    "open_writer",
    "pip_command",
    "recover_hdf5",
    "require",
]

WRITERS: dict[str, type[EventFileWriter]] = {
    "hdf5": Hdf5Writer,
    "parquet": ParquetWriter,
    "root": RootWriter,
}
"""The writer class of each format."""


def open_writer(
    fmt: str, path: str | os.PathLike[str], data_dtype: Any, data_length: int, **options: Any
) -> EventFileWriter:
    """Creates the writer of ``fmt`` (``hdf5``, ``parquet``, ``root``) for a new file.

    Args:
        fmt: The format.
        path: The new file (``FileExistsError`` if it exists).
        data_dtype: Structured dtype of the data.
        data_length: Elements per event.
        **options: Options of the writer class (``attrs``, ``compression``, ...).
    """
    return WRITERS[fmt](path, data_dtype, data_length, **options)
