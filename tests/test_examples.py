"""The examples run headless to completion, shortened through their configs, with the expected
outputs (the muon example's HDF5 files read with h5py, the spectroscopy example's ROOT file
with uproot, their counts those of the run's ledger); the spectroscopy setup switches to a real
RedPitaya by changing one line; without the optional library of a file format the examples
that write it are refused naming the pip command, the simple example needs none."""

import csv
import importlib
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import uproot
import yaml

import mimocorb2
from mimocorb2._setup import load_setup_file, parse_setup
from mimocorb2.control import Control
from mimocorb2.exceptions import SetupValidationError
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


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_group(summary: dict, buffer: str, readers: set[str]) -> int:
    """Every reader group of ``buffer`` consumed every committed event and lost none; and
    each reader read that many. Returns the number of events."""
    ledger = summary["buffers"][buffer]
    committed = ledger["committed"]
    assert set(ledger["groups"]) == readers
    for name, group in ledger["groups"].items():
        assert (group["consumed"], group["lost"]) == (committed, 0), (name, group)
        assert summary["workers"][name]["read"] == committed, name
        assert summary["workers"][name]["dropped"] == 0, name
    return committed


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
    assert summary["exit_status"] == 0 and summary["events_lost"] == 0
    for buffer, count in (("PulseParametersUp", up), ("PulseParametersDown", down)):
        direction = buffer[15:].lower()
        readers = {f"{kind}_{direction}" for kind in ("histogram", "csv", "hdf5")}
        assert check_group(summary, buffer, readers) == count
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
    csv_decays = {}
    for name, count in (("PulseParametersUp", up), ("PulseParametersDown", down)):
        header, rows = read_csv(run_dir / f"{name}.csv")
        assert header[:4] == ["counter", "timestamp", "deadtime", "decay_time"]
        assert len(rows) == count
        assert all(is_int(v) for v in column(header, rows, "first_position"))
        assert all(is_int(v) for v in column(header, rows, "counter"))
        counters += [int(v) for v in column(header, rows, "counter")]
        decay_times += [float(v) for v in column(header, rows, "decay_time")]
        csv_decays[name] = dict(
            zip(
                (int(v) for v in column(header, rows, "counter")),
                (np.float32(v) for v in column(header, rows, "decay_time")),
                strict=True,
            )
        )
    assert len(set(counters)) == len(counters) and max(counters) < n
    assert 1.5 < np.mean(decay_times) < 2.5  # truncated exponential, tau = 2.2 µs

    # HDF5 (h5py): the same decays as the CSV files, in the buffers' layout, with the run's
    # attributes; as many as the ledger says the hdf5 workers read
    effective_setup = yaml.safe_load((run_dir / "setup.yaml").read_text())
    field_names = tuple(effective_setup["Buffers"]["PulseParametersUp"]["data_dtype"])
    for name, count in (("PulseParametersUp", up), ("PulseParametersDown", down)):
        assert sorted(p.name for p in run_dir.glob(f"{name}*.h5")) == [f"{name}.h5"]
        with h5py.File(run_dir / f"{name}.h5", "r") as f:
            data, metadata = f["data"][:], f["metadata"][:]
            attrs = dict(f.attrs)
        read = summary["workers"][f"hdf5_{name[15:].lower()}"]["read"]
        assert data.shape == (count, 1) and metadata.shape == (count,) and read == count
        assert data.dtype.names == field_names
        assert data.dtype["decay_time"] == np.float32
        assert data.dtype["first_position"] == np.int32
        assert metadata.dtype.names == ("counter", "timestamp", "deadtime")
        from_h5 = dict(zip(metadata["counter"].tolist(), data["decay_time"][:, 0], strict=True))
        assert from_h5.keys() == csv_decays[name].keys()
        assert all(from_h5[k] == v for k, v in csv_decays[name].items())
        assert (attrs["buffer"], attrs["worker"]) == (name, f"hdf5_{name[15:].lower()}")
        assert attrs["mimocorb2_version"] == mimocorb2.__version__
        assert yaml.safe_load(attrs["setup_yaml"]) == effective_setup

    # the accepted waveforms as .mimo: the same events, with muon pulses in A and B
    with MimoReader(run_dir / "AcceptedPulses.mimo") as reader:
        data, metadata = reader.read_all()
    assert data.shape == (up + down, 2000)
    assert data.dtype.names == ("chA", "chB", "chC", "chD")
    assert sorted(metadata["counter"].tolist()) == sorted(counters)
    trigger = slice(190, 215)
    assert np.all(data["chA"][:, trigger].min(axis=1) < -80)
    assert np.all(data["chB"][:, trigger].min(axis=1) < -80)

    # the offline analysis of the run reads the HDF5 files ...
    analyze = load_module(MUON.parent / "analyze.py", "muon_analyze")
    result = analyze.analyze(run_dir)
    assert result["files"] == "PulseParametersUp.h5, PulseParametersDown.h5"
    assert (result["up"], result["down"]) == (up, down)
    assert 1.4 < result["lifetime"] < 3.2
    # ... and, for a run without them, the CSV files, with the same result
    csv_only = tmp_path / "csv_only"
    csv_only.mkdir()
    for name in ("setup.yaml", "PulseParametersUp.csv", "PulseParametersDown.csv"):
        shutil.copy(run_dir / name, csv_only / name)
    from_csv = analyze.analyze(csv_only)
    assert from_csv["files"] == "PulseParametersUp.csv, PulseParametersDown.csv"
    assert {k: from_csv[k] for k in ("up", "down", "lifetime", "error")} == {
        k: result[k] for k in ("up", "down", "lifetime", "error")
    }


def test_redpitaya_spectroscopy(tmp_path):
    n = 2000
    setup = shortened(SPECTROSCOPY, tmp_path, number_of_events=n, rate=0, seed=1)
    assert setup["Workers"]["input"]["function"] == "simulate_source"
    control = run(setup, SPECTROSCOPY)
    run_dir = control.run_dir
    c = counts(control)
    pulses = c["PulseParameters"]
    assert c["Waveforms"] == n
    assert c["PulseParametersForFiles"] == pulses
    assert 0.97 * n <= pulses < 1.1 * n  # one pulse per waveform, a few pile-ups
    summary = json.loads((run_dir / "run_summary.json").read_text())
    assert summary["exit_status"] == 0 and summary["events_lost"] == 0
    assert check_group(summary, "PulseParametersForFiles", {"csv", "root"}) == pulses

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

    # ROOT (uproot): TTree 'events' with every pulse of the CSV file, as many as the ledger
    # says the root worker read, typed branches; the run described in the file
    assert sorted(p.name for p in run_dir.glob("spectrum*.root")) == ["spectrum.root"]
    with uproot.open(run_dir / "spectrum.root") as f:
        tree = f["events"]
        assert tree.num_entries == pulses == summary["workers"]["root"]["read"]
        assert tree.keys() == header
        branches = tree.arrays(library="np")
        info = json.loads(str(f["mimocorb2"]))
        setup_text = str(f["setup_yaml"])
    assert branches["counter"].dtype == np.int64 and branches["position"].dtype == np.int32
    assert branches["peak_heights"].dtype == np.int16
    assert branches["prominences"].dtype == np.float32
    in_csv = sorted((int(r[0]), int(r[3]), int(r[4]), float(np.float32(r[5]))) for r in rows)
    in_root = sorted(
        zip(
            branches["counter"].tolist(),
            branches["position"].tolist(),
            branches["peak_heights"].tolist(),
            branches["prominences"].tolist(),
            strict=True,
        )
    )
    assert in_root == in_csv
    assert info["buffer"] == "PulseParametersForFiles"
    assert info["mimocorb2_version"] == mimocorb2.__version__
    assert setup_text == (run_dir / "setup.yaml").read_text()

    # the spectrum from the ROOT file is the histogram exporter's
    analyze = load_module(SPECTROSCOPY.parent / "analyze.py", "spectroscopy_analyze")
    root_counts, root_edges = analyze.read_root_spectrum(run_dir)
    np.testing.assert_array_equal(root_edges, edges)
    np.testing.assert_array_equal(root_counts, heights)


@pytest.mark.parametrize(
    ("setup_file", "module", "extra"),
    [(MUON, "h5py", "hdf5"), (SPECTROSCOPY, "uproot", "root")],
    ids=["muon", "redpitaya-spectroscopy"],
)
def test_examples_without_their_file_library_are_refused_naming_pip(
    monkeypatch, setup_file, module, extra
):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(SetupValidationError) as e:
        load_setup_file(setup_file)
    assert f'pip install "mimocorb2[{extra}]"' in str(e.value)
    assert f"'{module}', which is not installed" in str(e.value)


def test_simple_example_needs_no_file_library(monkeypatch):
    for module in ("h5py", "pyarrow", "uproot"):
        monkeypatch.setitem(sys.modules, module, None)
    setup = load_setup_file(SIMPLE)
    assert setup.roots() == [setup.workers["input"].sinks[0]]


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
