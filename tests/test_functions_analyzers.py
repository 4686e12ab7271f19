"""Prebuilt analyzers (analyzers.pha), run inside real Control runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import COLLECT_FUNCTION, failure_text, run_control
from helpers import collected as collected_by

pytest.importorskip("scipy")

USER_FUNCTIONS = textwrap.dedent(
    '''
    import os
    from pathlib import Path

    import numpy as np

    from mimocorb2 import Exporter, Importer


    def waveforms(io):
        """mimoCoRB2 Function: one waveform per entry of config 'events': [[pos, height], ...].

        Each peak is a triangle: height at pos, height/2 at pos +- 1, 0 elsewhere.

        Type
            Importer
        """
        importer = Importer(io)
        events = io["events"]
        event = importer.data_example.copy()
        channel = io.get("channel", event.dtype.names[0])

        def gen():
            for peaks in events:
                for name in event.dtype.names:
                    event[name] = -1.0  # other channels: no peaks at all
                wave = np.zeros(len(event))
                for pos, height in peaks:
                    wave[pos] = height
                    wave[pos - 1] = wave[pos + 1] = height / 2
                event[channel] = wave
                yield event
            yield None

        importer(gen)

    '''
)
USER_FUNCTIONS += COLLECT_FUNCTION  # the shared 'collect' exporter (tests/helpers.py)

# event 0: two peaks; event 1: none; event 2: one peak; event 3: three peaks
EVENTS = [
    [[20, 3.0], [70, 5.0]],
    [],
    [[50, 2.0]],
    [[10, 1.0], [40, 4.0], [90, 6.0]],
]
ALL_FIELDS = {
    "position": "int32",
    "peak_heights": "float64",
    "left_thresholds": "float64",
    "right_thresholds": "float64",
    "prominences": "float64",
    "left_bases": "int32",
    "right_bases": "int32",
    "widths": "float64",
    "width_heights": "float64",
    "left_ips": "float64",
    "right_ips": "float64",
    "plateau_sizes": "int32",
    "left_edges": "int32",
    "right_edges": "int32",
}
FULL_CONFIG = {"height": 0.5, "threshold": 0.1, "prominence": 0.5, "width": 1, "plateau_size": 1}


def run_pha(tmp_path, pha_config, sink_fields, source_fields=None, processes=1, sink_length=1):
    (tmp_path / "user_functions.py").write_text(USER_FUNCTIONS)
    source_fields = source_fields or {"ch1": "float64", "ch2": "float32"}
    setup = {
        "Buffers": {
            "waves": {"slot_count": 8, "data_length": 100, "data_dtype": source_fields},
            "peaks": {"slot_count": 8, "data_length": sink_length, "data_dtype": sink_fields},
        },
        "Workers": {
            "source": {
                "file": "user_functions.py",
                "function": "waveforms",
                "config": {"events": EVENTS, "channel": pha_config.get("channel", "ch1")},
                "sinks": ["waves"],
            },
            "pha": {
                "function": "analyzers.pha",
                "number_of_processes": processes,
                "config": pha_config,
                "sources": ["waves"],
                "sinks": ["peaks"],
            },
            "collect": {"file": "user_functions.py", "function": "collect", "sources": ["peaks"]},
        },
        "target_directory": str(tmp_path / "runs"),
    }
    return run_control(setup, tmp_path)


def collected(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    data, counters = collected_by(run_dir, "collect")
    order = np.lexsort((data["position"], counters))
    return data[order], counters[order]


@pytest.mark.parametrize("processes", [1, 2])
def test_pha_reports_every_peak_with_its_properties(tmp_path, processes):
    control = run_pha(tmp_path, FULL_CONFIG, ALL_FIELDS, processes=processes)
    assert control.exit_code == 0, failure_text(control)
    data, counters = collected(control.run_dir)
    expected = [(i, pos, h) for i, peaks in enumerate(EVENTS) for pos, h in peaks]
    # one sink event per peak, carrying the metadata (counter) of its input event;
    # the event without peaks produces nothing
    assert counters.tolist() == [i for i, _, _ in expected]
    assert data["position"].tolist() == [pos for _, pos, _ in expected]
    heights = np.array([h for _, _, h in expected])
    assert np.array_equal(data["peak_heights"], heights)
    assert np.array_equal(data["left_thresholds"], heights / 2)
    assert np.array_equal(data["right_thresholds"], heights / 2)
    assert np.array_equal(data["prominences"], heights)
    assert np.array_equal(data["widths"], np.full(len(expected), 2.0))
    assert np.array_equal(data["width_heights"], heights / 2)
    assert np.array_equal(data["left_ips"], data["position"] - 1.0)
    assert np.array_equal(data["right_ips"], data["position"] + 1.0)
    assert data["plateau_sizes"].tolist() == [1] * len(expected)
    assert np.array_equal(data["left_edges"], data["position"])
    assert np.array_equal(data["right_edges"], data["position"])
    assert np.all(data["left_bases"] < data["position"])
    assert np.all(data["right_bases"] > data["position"])


def test_pha_channel_and_selection(tmp_path):
    # analyse ch2 (float32); 'height' selects: only peaks of height >= 3.5 remain
    control = run_pha(
        tmp_path,
        {"channel": "ch2", "height": 3.5},
        {"position": "int64", "peak_heights": "float32"},
    )
    assert control.exit_code == 0, failure_text(control)
    data, counters = collected(control.run_dir)
    assert counters.tolist() == [0, 3, 3]
    assert data["position"].tolist() == [70, 40, 90]
    assert data["peak_heights"].tolist() == [5.0, 4.0, 6.0]


def test_pha_only_positions_by_default(tmp_path):
    control = run_pha(tmp_path, {}, {"position": "int32"})
    assert control.exit_code == 0, failure_text(control)
    data, _ = collected(control.run_dir)
    assert data["position"].tolist() == [20, 70, 50, 10, 40, 90]


@pytest.mark.parametrize(
    ("config", "fields", "kwargs", "message"),
    [
        ({}, {"position": "i4", "prominences": "f8"}, {}, "add 'prominence' (or 'width')"),
        ({}, {"peak_heights": "f8", "widths": "f8"}, {}, "add 'height' for ['peak_heights']"),
        ({"height": 1}, {"position": "i4", "area": "f8"}, {}, "cannot fill; allowed fields"),
        ({"channel": "ch9"}, {"position": "i4"}, {}, "set 'channel' to one of them"),
        ({}, {"position": "i4"}, {"sink_length": 2}, "set its data_length to 1"),
        ({"distance": 0}, {"position": "i4"}, {}, "find_peaks rejects the config"),
    ],
)
def test_pha_setup_errors(tmp_path, config, fields, kwargs, message):
    control = run_pha(tmp_path, config, fields, **kwargs)
    assert control.exit_code == 1
    text = failure_text(control)
    assert "worker 'pha'" in text and message in text
