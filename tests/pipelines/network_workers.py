"""Worker functions of the network tests (tests/test_network.py)."""

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np

from mimocorb2 import BufferIO, Exporter, Importer
from mimocorb2.functions import network


def numbered(buffer_io: BufferIO):
    """mimoCoRB2 Function: n_events events with value = 0, 1, ...; optional pause between them.

    Type
        Importer
    """
    importer = Importer(buffer_io)
    n = int(buffer_io.get("n_events", 1000))
    sleep = float(buffer_io.get("sleep", 0.0))
    event = importer.data_example.copy()

    def gen():
        for i in range(n):
            event["value"] = i
            if sleep:
                time.sleep(sleep)
            yield event
        yield None

    importer(gen)


def save_all(buffer_io: BufferIO):
    """mimoCoRB2 Function: saves the first value and the metadata of every event it reads.

    Type
        Exporter
    """
    values, metadata = [], []
    sleep = float(buffer_io.get("sleep", 0.0))
    for d, m in Exporter(buffer_io):
        values.append(int(d["value"][0]))
        metadata.append(m.copy())
        if sleep:
            time.sleep(sleep)
    empty = np.zeros(0, dtype=buffer_io.metadata_in_examples[0].dtype)
    meta = np.concatenate(metadata) if metadata else empty
    np.save(Path(buffer_io.run_dir) / f"{buffer_io.name}_values.npy", np.array(values, np.int64))
    np.save(Path(buffer_io.run_dir) / f"{buffer_io.name}_metadata.npy", meta)


def receiver_killed_once(buffer_io: BufferIO):
    """mimoCoRB2 Function: network.receiver that kills itself once after kill_after events.

    Type
        Importer
    """
    marker = Path(buffer_io["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        sink = buffer_io.write[0].buffer
        after = int(buffer_io["kill_after"])

        def killer():
            while sink.get_stats()["event_count"] < after:
                time.sleep(0.005)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=killer, daemon=True).start()
    network.receiver(buffer_io)
