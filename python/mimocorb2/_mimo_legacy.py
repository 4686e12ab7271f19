"""The ``.mimo`` files of the reference implementation (mimoCoRB2 0.0.x): a pickled header.

Such a file starts with the pickle opcode ``0x80``; its header is a pickled dict
(``data_dtype``, ``data_length``, optional ``metadata_dtype`` and ``header`` text), followed
directly by the records in the same layout as format version 2. Loading a pickle can execute
code stored in the file, so it is refused unless the caller trusts the file (defect B27).
"""

from __future__ import annotations

from typing import IO

import numpy as np

from mimocorb2._dtypes import METADATA_DTYPE, sound_layout
from mimocorb2._mimo_header import MAX_RECORD, ErrorFactory, FileHeader, check_length, descr

PICKLE_PROTO = 0x80
"""The first byte of a reference-format file (the pickle protocol opcode)."""

REFUSED = (
    "this is a .mimo file of the reference implementation (mimoCoRB2 0.0.x): its "
    "header is a Python pickle, and loading a pickle can execute code stored in "
    "the file. It is refused by default. If you trust the file, read it with "
    "MimoReader(path, trust=True), or convert it once with "
    "mimocorb2.mimo_file.convert(path, new_path, trust=True)"
)


def read_reference_header(file: IO[bytes], trust: bool, error: ErrorFactory) -> FileHeader:
    """Reads the pickled header of a reference-format file (only with ``trust=True``).

    Args:
        file: The file, opened for binary reading (it is read from the start).
        trust: Unpickle the header; without it the file is refused.
        error: Makes the exception raised for a refused or damaged header.

    Returns:
        The header as an equivalent format-version-2 summary (version 1, no header CRC:
        the file has no footer); the records start right after the pickle.
    """
    if not trust:
        raise error(REFUSED)
    import pickle

    file.seek(0)
    try:
        ref = pickle.load(file)  # explicit opt-in: trust=True
        data_dtype = np.dtype(ref["data_dtype"])
        metadata_dtype = np.dtype(ref.get("metadata_dtype", METADATA_DTYPE))
        data_length = check_length(ref["data_length"], "header")
        text = str(ref.get("header", ""))
    except Exception as e:
        raise error(f"damaged reference-format header ({type(e).__name__}: {e})") from None
    if data_dtype.hasobject or metadata_dtype.hasobject:
        raise error("damaged reference-format header: object dtypes")
    if not (sound_layout(data_dtype) and sound_layout(metadata_dtype)) or (
        data_length * data_dtype.itemsize + metadata_dtype.itemsize > MAX_RECORD
    ):
        raise error("damaged reference-format header: the records are larger than numpy can hold")
    version = 1
    header = {
        "format": "mimocorb2-reference-pickle",
        "version": version,
        "data_dtype": descr(data_dtype),
        "data_length": data_length,
        "data_size": data_length * data_dtype.itemsize,
        "metadata_dtype": descr(metadata_dtype),
        "metadata_size": metadata_dtype.itemsize,
        "record_size": data_length * data_dtype.itemsize + metadata_dtype.itemsize,
        "record_layout": ["data", "metadata"],
        "source": None,
        "reference_header": text,
    }
    return FileHeader(
        header=header,
        version=version,
        data_dtype=data_dtype,
        data_length=data_length,
        metadata_dtype=metadata_dtype,
        data_offset=file.tell(),
        header_crc=None,
    )
