"""The recognisable waveforms the fake boards produce, and their expected decoding."""

from __future__ import annotations

import numpy as np

PERIOD = 4096
STEP = 7


def ramp(n: int, k: np.ndarray | int) -> np.ndarray:
    """Sample ``k`` of waveform ``n`` on IN1 (IN2 carries its negative): a shifted ramp."""
    return ((n * STEP + np.asarray(k, dtype=np.int64)) % PERIOD - PERIOD // 2).astype(np.int16)


def expected(
    numbers: np.ndarray | list[int],
    length: int,
    shift: int = 0,
    negate_in1: bool = False,
    negate_in2: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected IN1 and IN2 (shape ``(len(numbers), length)``) of the given waveforms.

    ``shift`` is subtracted from the sample index (the SCPI fake counts from the trigger).
    """
    k = np.arange(length) - shift
    in1 = np.stack([ramp(int(n), k) for n in numbers]) if len(numbers) else np.zeros((0, length))
    in2 = -in1
    if negate_in1:
        in1 = -in1
    if negate_in2:
        in2 = -in2
    return in1.astype(np.int16), in2.astype(np.int16)
