"""Worker functions of the simple example."""

import numpy as np

from mimocorb2 import BufferIO, Exporter, Filter, Importer, Processor


def simulate_pulses(buffer_io: BufferIO):
    """mimoCoRB2 Function: Simulated detector pulses.

    Type
        Importer
    """
    importer = Importer(buffer_io)
    n = int(buffer_io.get("number_of_events", 10000))
    rate = float(buffer_io.get("rate", 0))
    rng = np.random.default_rng()
    t = np.arange(importer.data_example.size)
    shape = (np.exp(-np.clip(t - 50, 0, None) / 40.0) * (t >= 50)).astype(np.float32)
    # a bank of noise traces, reused in random order: the simulation stays cheap
    noise = rng.normal(0, 0.01, (1024, t.size)).astype(np.float32)
    event = importer.data_example.copy()
    samples = event["ch1"]

    def pulses():
        heights = rng.uniform(0.0, 1.0, n).astype(np.float32)
        picks = rng.integers(0, len(noise), n)
        for i in range(n):
            if rate > 0:
                import time

                time.sleep(rng.exponential(1.0 / rate))
            np.multiply(shape, heights[i], out=samples)
            np.add(samples, noise[picks[i]], out=samples)
            yield event
        yield None

    importer(pulses)


def filter_pulses(buffer_io: BufferIO):
    """mimoCoRB2 Function: Accept pulses above a minimum height.

    Type
        Filter
    """
    min_height = float(buffer_io["min_height"])
    Filter(buffer_io)(lambda data: data["ch1"].max() > min_height)


def pulse_heights(buffer_io: BufferIO):
    """mimoCoRB2 Function: Pulse height of each accepted pulse.

    Type
        Processor
    """
    out = np.zeros(1, dtype=buffer_io.data_out_examples[0].dtype)

    def height(data):
        out["height"] = data["ch1"].max()
        return [out]

    Processor(buffer_io)(height)


def summarize(buffer_io: BufferIO):
    """mimoCoRB2 Function: Count the pulse heights and print a summary.

    Type
        Exporter
    """
    heights = [float(data["height"][0]) for data, _metadata in Exporter(buffer_io)]
    print(f"pulses: {len(heights)}, mean height {np.mean(heights) if heights else 0:.3f}")
