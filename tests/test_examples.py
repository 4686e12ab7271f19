"""The examples run headless to completion, shortened through their configs, with the expected
outputs; the spectroscopy setup switches to a real RedPitaya by changing one line."""

import csv
import importlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from mimocorb2._setup import load_setup_file, parse_setup
from mimocorb2.control import Control
from mimocorb2.mimo_file import MimoReader

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SIMPLE = EXAMPLES / "simple" / "setup.yaml"
MUON = EXAMPLES / "muon" / "spin_setup.yaml"
SPECTROSCOPY = EXAMPLES / "redpitaya-spectroscopy" / "setup.yaml"


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    """No display: the plotting workers skip themselves (as in CI)."""
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)


def shortened(setup_file: Path, tmp_path: Path, **input_config) -> dict:
    """The setup as a dict, with ``input_config`` merged over the input worker's config and
    the runs going to ``tmp_path``."""
    setup = yaml.safe_load(setup_file.read_text())
    entry = setup["Workers"]["input"]
    config = entry.get("config")
    config = [] if config is None else config if isinstance(config, list) else [config]
    entry["config"] = [*config, input_config]
    setup["target_directory"] = str(tmp_path / "runs")
    return setup


def run(setup: dict, setup_file: Path) -> Control:
    control = Control(setup, setup_file.parent, mode="stats")
    control()
    assert control.exit_code == 0, control.failures()
    assert control.get_stats()["total_processes_alive"] == 0
    return control


def counts(control: Control) -> dict[str, int]:
    return {name: b["event_count"] for name, b in control.get_stats()["buffers"].items()}


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def column(header: list[str], rows: list[list[str]], name: str) -> list[str]:
    i = header.index(name)
    return [row[i] for row in rows]


def check_histograms(run_dir: Path, buffer: str, bins: dict, n_events: int) -> dict:
    """Checks Histograms_<buffer>/ against the bins config; returns {field: counts}."""
    directory = run_dir / f"Histograms_{buffer}"
    header, rows = read_csv(directory / "info.csv")
    assert header[:4] == ["Channel", "Min", "Max", "NBins"]
    info = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert set(info) == set(bins)
    out = {}
    for field, (lo, hi, nbins) in bins.items():
        assert (float(info[field]["Min"]), float(info[field]["Max"])) == (lo, hi)
        assert int(info[field]["NBins"]) == nbins
        hist = np.load(directory / f"{field}.npy")
        assert hist.shape == (nbins,) and hist.dtype == np.int64
        outside = int(info[field].get("Underflow", 0)) + int(info[field].get("Overflow", 0))
        total = hist.sum() + outside
        assert total == n_events, (field, total, n_events)
        out[field] = hist
    return out


def is_int(text: str) -> bool:
    return re.fullmatch(r"-?\d+", text) is not None


@pytest.mark.parametrize("setup_file", [SIMPLE, MUON, SPECTROSCOPY], ids=lambda p: p.parent.name)
def test_example_setup_validates_as_shipped(setup_file):
    setup = load_setup_file(setup_file)
    assert setup.roots() == [setup.workers["input"].sinks[0]]
    assert setup.target_directory == setup_file.parent / "target"


def test_simple(tmp_path):
    n = 5000
    control = run(shortened(SIMPLE, tmp_path, number_of_events=n), SIMPLE)
    c = counts(control)
    assert c["InputBuffer"] == n
    assert c["AcceptedPulses"] == c["PulseHeights"]
    assert 0.7 * n < c["AcceptedPulses"] < 0.9 * n  # heights uniform in 0..1, threshold 0.2
    log = (control.run_dir / "logs" / "summary.log").read_text()
    m = re.search(r"pulses: (\d+), mean height ([0-9.]+)", log)
    assert m is not None, log
    assert int(m.group(1)) == c["PulseHeights"]
    assert 0.55 < float(m.group(2)) < 0.65
    assert (control.run_dir / "stats.csv").exists()


def test_muon(tmp_path):
    n = 2000
    control = run(shortened(MUON, tmp_path, number_of_events=n, rate=0, seed=1), MUON)
    run_dir = control.run_dir
    c = counts(control)
    up, down = c["PulseParametersUp"], c["PulseParametersDown"]
    assert c["InputBuffer"] == n
    assert c["AcceptedPulses"] == up + down
    assert "CsvUp" not in c  # reader groups instead of pass-through copies
    summary = json.loads((run_dir / "run_summary.json").read_text())
    for buffer, count in (("PulseParametersUp", up), ("PulseParametersDown", down)):
        groups = summary["buffers"][buffer]["groups"]
        assert set(groups) == {f"histogram_{buffer[15:].lower()}", f"csv_{buffer[15:].lower()}"}
        assert all(g["consumed"] == count and g["lost"] == 0 for g in groups.values())
    # 15 % stop in the copper, 5 % in the floor (half of those decays seen): ~17 % accepted
    assert 0.10 * n < up + down < 0.25 * n
    assert 0.3 * down < up and 0.3 * up < down

    # histograms: the bins of the config, every decay counted once (in range or outside)
    bins = yaml.safe_load((MUON.parent / "configs" / "histograms.yaml").read_text())["bins"]
    hist = {
        buffer: check_histograms(run_dir, buffer, bins, count)
        for buffer, count in (("PulseParametersUp", up), ("PulseParametersDown", down))
    }
    assert hist["PulseParametersUp"]["decay_time"].sum() == up  # all within the 8 µs window
    # more upward decay pulses in B than downward ones, and the other way round in C
    assert hist["PulseParametersUp"]["h2_chB"].sum() > hist["PulseParametersDown"]["h2_chB"].sum()
    assert hist["PulseParametersDown"]["h2_chC"].sum() > hist["PulseParametersUp"]["h2_chC"].sum()

    # CSV: one row per decay, integer columns stay integers
    counters = []
    decay_times = []
    for name, count in (("PulseParametersUp", up), ("PulseParametersDown", down)):
        header, rows = read_csv(run_dir / f"{name}.csv")
        assert header[:4] == ["counter", "timestamp", "deadtime", "decay_time"]
        assert len(rows) == count
        assert all(is_int(v) for v in column(header, rows, "first_position"))
        assert all(is_int(v) for v in column(header, rows, "counter"))
        counters += [int(v) for v in column(header, rows, "counter")]
        decay_times += [float(v) for v in column(header, rows, "decay_time")]
    assert len(set(counters)) == len(counters) and max(counters) < n
    assert 1.5 < np.mean(decay_times) < 2.5  # truncated exponential, tau = 2.2 µs

    # the accepted waveforms as .mimo: the same events, with muon pulses in A and B
    with MimoReader(run_dir / "AcceptedPulses.mimo") as reader:
        data, metadata = reader.read_all()
    assert data.shape == (up + down, 2000)
    assert data.dtype.names == ("chA", "chB", "chC", "chD")
    assert sorted(metadata["counter"].tolist()) == sorted(counters)
    trigger = slice(190, 215)
    assert np.all(data["chA"][:, trigger].min(axis=1) < -80)
    assert np.all(data["chB"][:, trigger].min(axis=1) < -80)

    # the offline analysis of the run
    spec = importlib.util.spec_from_file_location("muon_analyze", MUON.parent / "analyze.py")
    analyze = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(analyze)
    result = analyze.analyze(run_dir)
    assert (result["up"], result["down"]) == (up, down)
    assert 1.4 < result["lifetime"] < 3.2


def test_redpitaya_spectroscopy(tmp_path):
    n = 2000
    setup = shortened(SPECTROSCOPY, tmp_path, number_of_events=n, rate=0, seed=1)
    assert setup["Workers"]["input"]["function"] == "simulate_source"
    control = run(setup, SPECTROSCOPY)
    run_dir = control.run_dir
    c = counts(control)
    pulses = c["PulseParameters"]
    assert c["Waveforms"] == n
    assert c["PulseParametersForCsv"] == pulses
    assert 0.97 * n <= pulses < 1.1 * n  # one pulse per waveform, a few pile-ups

    bins = yaml.safe_load((SPECTROSCOPY.parent / "configs" / "histogram.yaml").read_text())["bins"]
    hist = check_histograms(run_dir, "PulseParameters", bins, pulses)
    heights = hist["peak_heights"]
    lo, hi, nbins = bins["peak_heights"]
    edges = np.linspace(lo, hi, nbins + 1)
    centers = 0.5 * (edges[:-1] + edges[1:])

    def between(lo, hi):
        return heights[(centers >= lo) & (centers < hi)].sum()

    # the Cs-137 photo peak (662 keV x 2.5 counts/keV) stands out of the Compton valley below
    assert between(1600, 1712) > 2 * between(1400, 1512)
    assert between(0, 100) == 0  # nothing below the threshold

    header, rows = read_csv(run_dir / "pulse_parameters.csv")
    assert header == ["counter", "timestamp", "deadtime", "position", "peak_heights", "prominences"]
    assert len(rows) == pulses
    positions = [int(v) for v in column(header, rows, "position")]
    assert all(is_int(v) for v in column(header, rows, "peak_heights"))
    # the main pulse of (nearly) every waveform peaks a few samples after the trigger
    assert sum(100 <= p <= 115 for p in positions) >= 0.97 * n
    assert {int(v) for v in column(header, rows, "counter")} <= set(range(n))


def test_redpitaya_spectroscopy_switches_to_the_board_with_one_line():
    text = SPECTROSCOPY.read_text()
    switched, replaced = re.subn(
        r"^(\s*input:\s*)\*simulated\b", r"\1*redpitaya", text, flags=re.MULTILINE
    )
    assert replaced == 1
    changed = [
        (a, b) for a, b in zip(text.splitlines(), switched.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 1, changed

    # validation passes: the prebuilt importer resolves (nothing connects to a board)
    setup = parse_setup(yaml.safe_load(switched), SPECTROSCOPY.parent, "switched setup")
    worker = setup.workers["input"]
    assert (worker.function, worker.file) == ("importers.redpitaya.waveform", None)
    assert worker.sinks == ("Waveforms",)
    assert worker.config["protocol"] == "mcpha"

    # and its configuration is valid for both board servers
    redpitaya = importlib.import_module("mimocorb2.functions.importers.redpitaya")
    sink = setup.buffers["Waveforms"]
    for protocol in ("mcpha", "scpi"):
        config = {**worker.config, "protocol": protocol}
        assert redpitaya.validate_config(config, sink.data_dtype, sink.data_length) == []
