"""Worker functions used by the control and CLI tests."""

import os
import signal
import time
from pathlib import Path

import numpy as np

from mimocorb2 import BufferIO, Exporter, Filter, Importer, Processor


def source(buffer_io: BufferIO):
    """mimoCoRB2 Function: numbered events; n_events < 0 runs until shut down.

    Type
        Importer
    """
    importer = Importer(buffer_io)
    n = int(buffer_io.get("n_events", 1000))
    sleep = float(buffer_io.get("sleep", 0.0))
    event = importer.data_example.copy()

    def gen():
        i = 0
        while n < 0 or i < n:
            event["value"] = i
            if sleep:
                time.sleep(sleep)
            yield event
            i += 1
        yield None

    importer(gen)


def keep_even(buffer_io: BufferIO):
    """mimoCoRB2 Function: pass even values.

    Type
        Filter
    """
    Filter(buffer_io)(lambda data: int(data["value"][0]) % 2 == 0)


def double(buffer_io: BufferIO):
    """mimoCoRB2 Function: doubles the value; may fail on purpose.

    Type
        Processor
    """
    out = np.zeros(1, dtype=buffer_io.data_out_examples[0].dtype)
    fail_at = int(buffer_io.get("fail_at", -1))
    kill_at = int(buffer_io.get("kill_at", -1))
    marker = buffer_io.get("fail_once_marker")
    if marker and not Path(marker).exists():
        Path(marker).write_text("failed once")
        raise RuntimeError("failing once on purpose")

    def work(data):
        v = int(data["value"][0])
        if v == fail_at:
            raise ValueError(f"bad value {v}")
        if v == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        out["value"] = 2 * v
        return [out]

    Processor(buffer_io)(work)


def collect(buffer_io: BufferIO):
    """mimoCoRB2 Function: writes the received values to the run directory.

    Type
        Exporter
    """
    if buffer_io.get("fail"):
        raise RuntimeError("collect fails at start (config)")
    values = [int(d["value"][0]) for d, _m in Exporter(buffer_io)]
    out = Path(buffer_io.run_dir) / f"collected_{os.getpid()}.npy"
    np.save(out, np.array(values, dtype=np.int64))
    print(f"collected {len(values)} events")
