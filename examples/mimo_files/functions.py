"""Worker functions of the mimo_files example: a waveform simulator and a replay checker."""

import glob
from pathlib import Path

import numpy as np

from mimocorb2 import BufferIO, Exporter, Importer
from mimocorb2.mimo_file import MimoReader


def simulate_waveforms(buffer_io: BufferIO):
    """mimoCoRB2 Function: Simulated two-channel waveforms with random arrival times.

    Type
        Importer

    Configs
        number_of_events
            [int, optional (default=500)] Events to generate.
        rate
            [float, optional (default=500)] Mean rate in Hz (exponential waiting times).
    """
    import time

    importer = Importer(buffer_io)
    n = int(buffer_io.get("number_of_events", 500))
    rate = float(buffer_io.get("rate", 500))
    rng = np.random.default_rng()
    t = np.arange(importer.data_example.size, dtype=np.float32)
    pulse = np.exp(-np.clip(t - 40, 0, None) / 30.0) * (t >= 40)
    event = importer.data_example.copy()

    def waveforms():
        due = time.monotonic()
        for _ in range(n):
            due += rng.exponential(1.0 / rate)
            time.sleep(max(0.0, due - time.monotonic()))
            height = rng.uniform(0.1, 1.0)
            event["ch1"] = height * pulse + rng.normal(0, 0.01, t.size)
            event["ch2"] = 0.5 * height * pulse + rng.normal(0, 0.01, t.size)
            yield event
        yield None

    importer(waveforms)


def _newest(pattern: Path) -> Path:
    matches = [Path(p) for p in glob.glob(str(pattern))]
    if not matches:
        raise FileNotFoundError(f"no file matches {pattern}; run write_setup.yaml first")
    return max(matches, key=lambda p: p.stat().st_mtime_ns)


def check_replay(buffer_io: BufferIO):
    """mimoCoRB2 Function: Compare the replayed events with the file they came from.

    Type
        Exporter

    Configs
        filename
            [str] The replayed .mimo file (relative to the setup directory; wildcards allowed).
    """
    exporter = Exporter(buffer_io)
    path = _newest(Path(buffer_io.setup_dir) / Path(buffer_io["filename"]).expanduser())
    with MimoReader(path) as reader:
        original, original_meta = reader.read_all()
    count = 0
    identical = 0
    times = []
    for data, metadata in exporter:
        if count < len(original) and np.array_equal(data, original[count]):
            identical += 1
        times.append(float(metadata["timestamp"][0]))
        count += 1
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    original_span = float(original_meta["timestamp"][-1] - original_meta["timestamp"][0])
    print(
        f"{exporter.name}: {count} of {len(original)} events replayed from {path.name}, "
        f"{identical} identical; replay took {span:.2f} s (original {original_span:.2f} s)"
    )
    if count != len(original) or identical != count:
        raise RuntimeError(f"{exporter.name}: the replayed events differ from {path}")
