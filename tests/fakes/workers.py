"""Worker functions used with the fake instruments: record what an importer delivered."""

import os
from pathlib import Path

import numpy as np

from mimocorb2 import BufferIO, Exporter


def save_events(buffer_io: BufferIO):
    """mimoCoRB2 Function: saves every event (all fields and the metadata) to the run dir.

    Writes ``received_<pid>.npz`` with one array per data field (shape (events, data_length))
    and ``counter``, ``timestamp``, ``deadtime``.

    Type
        Exporter
    """
    data_parts = []
    meta_parts = []
    for data, metadata in Exporter(buffer_io):
        data_parts.append(data.copy())
        meta_parts.append(metadata.copy())
    example = buffer_io.data_in_examples[0]
    data = np.stack(data_parts) if data_parts else np.zeros((0, len(example)), example.dtype)
    meta = np.concatenate(meta_parts) if meta_parts else buffer_io.metadata_in_examples[0][:0]
    arrays = {name: data[name] for name in data.dtype.names}
    arrays.update({name: meta[name] for name in meta.dtype.names})
    np.savez(Path(buffer_io.run_dir) / f"received_{os.getpid()}.npz", **arrays)


def load_events(run_dir: Path) -> dict:
    """The arrays saved by :func:`save_events` (one process)."""
    files = sorted(Path(run_dir).glob("received_*.npz"))
    assert len(files) == 1, files
    with np.load(files[0]) as f:
        return {k: f[k] for k in f.files}
