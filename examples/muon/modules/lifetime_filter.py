"""Lifetime filter of the muon experiment: find double pulses, measure the decay time.

For every event (four waveforms chA..chD) the filter

1. subtracts each channel's baseline (median of the samples before the trigger), flips the
   pulses to positive (``polarity``) and scales the channels (``channel_scaling``);
2. finds the pulses of every channel like a discriminator: a pulse is a stretch of samples
   above ``min_height_electron``, at least ``min_width`` samples long; stretches less than
   ``min_distance`` samples apart are one pulse; its position and height are those of its
   highest sample;
3. builds the hit pattern of the *first* pulse (pulses within ``trigger_tolerance`` samples of
   the trigger that are higher than ``min_height_muon``) and of the *second* pulse (the
   earliest later pulse higher than ``min_height_electron`` in any channel, together with the
   pulses of the other channels within ``trigger_tolerance`` samples of it);
4. compares the two patterns with the configured ``signatures``. A signature is a start and a
   stop pattern over the channels A, B, C, D: ``+`` the channel must have a pulse, ``-`` it
   must not, ``0`` either. The first matching signature decides whether the decay went
   ``up`` or ``down``.

Matching events are written unchanged to the first sink (accepted waveforms) and their pulse
parameters to the second (``up``) or third (``down``) sink. Events without a second pulse or
without a matching signature are dropped.
"""

import numpy as np

from mimocorb2 import BufferIO, Processor

CHANNELS = ("chA", "chB", "chC", "chD")
PATTERN_CHARS = frozenset("+-0")

DEFAULT_SIGNATURES = [
    {"name": "copper_up", "start": "++--", "stop": "0+--", "direction": "up"},
    {"name": "copper_down", "start": "++--", "stop": "--+0", "direction": "down"},
    {"name": "floor_up", "start": "++++", "stop": "000+", "direction": "up"},
]


def parse_signatures(signatures: list) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """Checks the ``signatures`` config and returns (name, start, stop, direction) tuples.

    A pattern is a string of four characters (``"++--"``) or a list of four (``[+, +, -, -]``);
    in the arrays, 1 means "must have a pulse", 0 "must not", -1 "don't care".
    """
    if not isinstance(signatures, list) or not signatures:
        raise ValueError(f"'signatures' must be a non-empty list, got {signatures!r}")
    parsed = []
    for i, sig in enumerate(signatures):
        if not isinstance(sig, dict) or {"start", "stop", "direction"} - set(sig):
            raise ValueError(
                f"signature {i}: expected a mapping with start, stop and direction, got {sig!r}"
            )
        codes = []
        for key in ("start", "stop"):
            pattern = "".join(str(c) for c in sig[key])
            if len(pattern) != len(CHANNELS) or set(pattern) - PATTERN_CHARS:
                raise ValueError(
                    f"signature {i}, {key}: {sig[key]!r} must be {len(CHANNELS)} characters "
                    "of '+', '-' and '0' (one per channel A, B, C, D)"
                )
            codes.append(np.array([{"+": 1, "-": 0, "0": -1}[c] for c in pattern]))
        direction = sig["direction"]
        if direction not in ("up", "down"):
            raise ValueError(f"signature {i}: direction must be 'up' or 'down', not {direction!r}")
        parsed.append((str(sig.get("name", i)), codes[0], codes[1], direction))
    return parsed


def matches(code: np.ndarray, hits: np.ndarray) -> bool:
    """Whether a hit pattern (bool per channel) fits a signature pattern."""
    care = code >= 0
    return bool(np.all(hits[care] == code[care].astype(bool)))


def find_pulses(
    wave: np.ndarray, threshold: float, min_width: int, min_distance: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions and heights of the pulses of one waveform (pulses positive).

    A pulse is a stretch of samples above ``threshold``; stretches separated by fewer than
    ``min_distance`` samples are merged, stretches shorter than ``min_width`` samples are
    ignored. Position and height are those of the highest sample of the stretch.
    """
    above = np.empty(wave.size + 2, dtype=np.int8)
    above[0] = above[-1] = 0
    np.greater(wave, threshold, out=above[1:-1])
    edges = np.diff(above)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive
    if starts.size > 1:
        keep = np.ones(starts.size, dtype=bool)
        keep[1:] = starts[1:] - ends[:-1] >= min_distance
        starts = starts[keep]
        ends = ends[np.r_[keep[1:], True]]
    wide = ends - starts >= min_width
    starts, ends = starts[wide], ends[wide]
    positions = np.array(
        [s + int(np.argmax(wave[s:e])) for s, e in zip(starts, ends, strict=True)], dtype=np.int64
    )
    return positions, wave[positions] if positions.size else np.zeros(0, wave.dtype)


def calculate_decay_time(buffer_io: BufferIO):
    """mimoCoRB2 Function: Find muon decays (double pulses) and measure the decay time.

    Type
        Processor

    Buffers
        sources
            1 with fields chA, chB, chC, chD (waveforms)
        sinks
            3: accepted waveforms (same layout as the source), then the pulse parameters of
            upward and of downward decays (data_length 1; fields decay_time, first_position,
            second_position, h1_chA..h1_chD, h2_chA..h2_chD, any subset)
        observes
            0

    Configs
        sample_time_ns : float, optional (default=4)
            Time between two samples.
        pre_trigger_samples : int, optional (default=200)
            Trigger position in the waveform.
        polarity : int, optional (default=-1)
            Sign of the pulses (-1 for negative photomultiplier pulses).
        channel_scaling : dict, optional (default=1 for every channel)
            Factor per channel to equalise the panels.
        min_height_muon : float, optional (default=80)
            Minimal height (mV above the baseline) of a muon pulse at the trigger.
        min_height_electron : float, optional (default=40)
            Threshold (mV above the baseline) of the pulse finder; minimal decay pulse.
        min_distance : int, optional (default=10)
            Minimal distance of two pulses in samples.
        min_width : int, optional (default=2)
            Minimal width of a pulse (samples above the threshold).
        trigger_tolerance : int, optional (default=10)
            Pulses this close (samples) count as simultaneous.
        signatures : list, optional (default: copper up/down, floor up)
            Mappings with start, stop (patterns over A, B, C, D) and direction (up|down).
    """
    processor = Processor(buffer_io)
    source = processor.data_example
    missing = [c for c in CHANNELS if c not in (source.dtype.names or ())]
    if missing:
        raise ValueError(f"the source needs the fields {', '.join(CHANNELS)}; missing {missing}")
    if len(buffer_io.data_out_examples) != 3:
        raise ValueError("calculate_decay_time needs 3 sinks: accepted pulses, up, down")

    dt_us = float(buffer_io.get("sample_time_ns", 4.0)) / 1000.0
    trigger = int(buffer_io.get("pre_trigger_samples", 200))
    polarity = -1.0 if float(buffer_io.get("polarity", -1)) < 0 else 1.0
    scaling_cfg = buffer_io.get("channel_scaling") or {}
    scaling = np.array([float(scaling_cfg.get(c, 1.0)) for c in CHANNELS], dtype=np.float32)
    h_muon = float(buffer_io.get("min_height_muon", 80.0))
    h_electron = float(buffer_io.get("min_height_electron", 40.0))
    distance = int(buffer_io.get("min_distance", 10))
    width = int(buffer_io.get("min_width", 2))
    tolerance = int(buffer_io.get("trigger_tolerance", 10))
    signatures = parse_signatures(buffer_io.get("signatures") or DEFAULT_SIGNATURES)
    if not tolerance < trigger < source.size - tolerance:
        raise ValueError(f"pre_trigger_samples={trigger} must lie inside the waveform")

    up = np.zeros(1, dtype=buffer_io.data_out_examples[1].dtype)
    down = np.zeros(1, dtype=buffer_io.data_out_examples[2].dtype)
    waves = np.empty((len(CHANNELS), source.size), dtype=np.float32)
    later = trigger + tolerance  # pulses after this sample are decay candidates

    def analyse(data: np.ndarray):
        for i, name in enumerate(CHANNELS):
            waves[i] = data[name]
        waves[:] -= np.median(waves[:, : trigger - tolerance], axis=1, keepdims=True)
        waves[:] *= polarity * scaling[:, None]
        # cheap test first: most events (through-going muons) have nothing after the trigger
        if waves[:, later:].max() < h_electron:
            return None

        first_hits = np.zeros(len(CHANNELS), dtype=bool)
        first_pos = np.zeros(len(CHANNELS), dtype=np.int64)
        first_h = np.zeros(len(CHANNELS), dtype=np.float32)
        candidates = []  # (position, channel, height) of later pulses
        for i in range(len(CHANNELS)):
            positions, heights = find_pulses(waves[i], h_electron, width, distance)
            at_trigger = (np.abs(positions - trigger) <= tolerance) & (heights >= h_muon)
            if at_trigger.any():
                k = int(np.argmax(np.where(at_trigger, heights, -np.inf)))
                first_hits[i] = True
                first_pos[i] = positions[k]
                first_h[i] = heights[k]
            after = positions > later
            candidates += [
                (int(p), i, float(h)) for p, h in zip(positions[after], heights[after], strict=True)
            ]
        if not first_hits.any() or not candidates:
            return None

        second = min(p for p, _, _ in candidates)
        second_hits = np.zeros(len(CHANNELS), dtype=bool)
        second_h = np.zeros(len(CHANNELS), dtype=np.float32)
        second_pos = np.zeros(len(CHANNELS), dtype=np.int64)
        for p, i, h in candidates:
            if p - second <= tolerance and h > second_h[i]:
                second_hits[i] = True
                second_h[i] = h
                second_pos[i] = p

        direction = next(
            (
                d
                for _, start, stop, d in signatures
                if matches(start, first_hits) and matches(stop, second_hits)
            ),
            None,
        )
        if direction is None:
            return None

        t1 = float(first_pos[first_hits].mean())
        t2 = float(second_pos[second_hits].mean())
        out = up if direction == "up" else down
        values = {
            "decay_time": (t2 - t1) * dt_us,
            "first_position": round(t1),
            "second_position": round(t2),
        }
        for i, name in enumerate(CHANNELS):
            values[f"h1_{name}"] = first_h[i]
            values[f"h2_{name}"] = second_h[i]
        for field in out.dtype.names or ():
            out[field] = values.get(field, 0)
        return [data, out, None] if direction == "up" else [data, None, out]

    processor(analyse)
