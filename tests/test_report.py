"""The run report (issue 19): report/ in every run directory, its figures and page, the CLI
that makes it again, ``Options: report: false`` and the report hooks of the examples.

The rest of the test suite turns the report off (``MIMOCORB2_REPORT=0`` in conftest.py);
these tests turn it on. Each example runs once, shortened, and its run is shared by the tests.
"""

from __future__ import annotations

import copy
import csv
import json
import re
import shutil
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from mimocorb2.__main__ import main as cli
from mimocorb2._report import REPORT_ENV, report_after_run, report_enabled, write_report
from mimocorb2._report_figures import (
    BUFFER_COLUMNS,
    WORKER_COLUMNS,
    RunStats,
    histogram_figure,
    rate_figure,
    read_histograms,
    read_stats,
    summary_figure,
)
from mimocorb2._setup import parse_setup
from mimocorb2.control import Control
from mimocorb2.exceptions import SetupValidationError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SIMPLE = EXAMPLES / "simple" / "setup.yaml"
MUON = EXAMPLES / "muon" / "spin_setup.yaml"
SPECTROSCOPY = EXAMPLES / "redpitaya-spectroscopy" / "setup.yaml"
HOOKS = Path(__file__).resolve().parent / "pipelines" / "report_hooks.py"
REPORT_BUDGET_S = 60.0  # a few seconds; 10x that on a 2-core machine at load 15 (seen)
EXAMPLE_TIMEOUT = pytest.mark.timeout(150)  # an example run (~10 s) and reports, loaded machine

_RUNS: dict[str, tuple[Path, float]] = {}


def _environment(mp: pytest.MonkeyPatch) -> None:
    """Report on; no display, so the plot workers skip themselves (as in CI)."""
    mp.delenv(REPORT_ENV, raising=False)
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        mp.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def report_on(monkeypatch: pytest.MonkeyPatch) -> None:
    _environment(monkeypatch)


def shortened(setup_file: Path, target: Path, **input_config) -> dict:
    """The setup with ``input_config`` merged over the input worker's, runs going to target."""
    setup = yaml.safe_load(setup_file.read_text())
    entry = setup["Workers"]["input"]
    config = entry.get("config")
    config = [] if config is None else config if isinstance(config, list) else [config]
    entry["config"] = [*config, input_config]
    setup["target_directory"] = str(target)
    return setup


def run(setup: dict, setup_dir: Path) -> tuple[Path, float]:
    """Runs a setup to its end; returns the run directory and the seconds the report took."""
    control = Control(setup, setup_dir, mode="stats")
    control()
    assert control.exit_code == 0, control.failures()
    report = control.run_dir / "report" / "report.json"
    seconds = json.loads(report.read_text())["seconds"] if report.exists() else 0.0
    return control.run_dir, seconds


def example_run(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The run of one example (shortened), made once per test session."""
    if name not in _RUNS:
        setup_file, config = {
            "simple": (SIMPLE, {"number_of_events": 500}),
            "muon": (MUON, {"number_of_events": 2000, "rate": 0, "seed": 1}),
            "spectroscopy": (SPECTROSCOPY, {"number_of_events": 2000, "rate": 0, "seed": 1}),
        }[name]
        with pytest.MonkeyPatch.context() as mp:
            _environment(mp)
            target = tmp_path_factory.mktemp(name)
            _RUNS[name] = run(shortened(setup_file, target, **config), setup_file.parent)
    return _RUNS[name]


@pytest.fixture
def spectroscopy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example_run("spectroscopy", tmp_path_factory)[0]


# ----- checks of the files -----


def check_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] >= 200 and image.shape[1] >= 300, image.shape
    inked = (image[..., :3] < 0.85).any(axis=-1).mean()
    assert inked > 0.005, f"{path.name} is blank ({inked:.2%} of the pixels drawn)"


def check_pdf(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-32:], path
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", data)) == 1, path
    assert len(data) > 3000, f"{path.name}: {len(data)} bytes"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.pre: list[str] = []
        self._in_pre = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_pre = tag == "pre"
        for key, value in attrs:
            if key in ("src", "href") and value:
                self.links.append(value)

    def handle_endtag(self, tag: str) -> None:
        self._in_pre = False if tag == "pre" else self._in_pre

    def handle_data(self, data: str) -> None:
        if self._in_pre:
            self.pre.append(data)


def check_report(run_dir: Path, figures: set[str]) -> dict:
    """The report's figures are valid PNG and PDF files, its page links only existing files."""
    report = run_dir / "report"
    record = json.loads((report / "report.json").read_text())
    names = {f["name"] for f in record["figures"]}
    assert figures <= names, (figures, names)
    for name in names:
        check_png(report / f"{name}.png")
        check_pdf(report / f"{name}.pdf")
    page = (report / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    parser = _Links()
    parser.feed(page)
    for link in parser.links:
        assert (report / link).exists(), link
    for name in names:
        assert f"{name}.png" in parser.links and f"{name}.pdf" in parser.links
    assert (run_dir / "setup.yaml").read_text() in "".join(parser.pre)
    return record


# ----- the examples -----


@EXAMPLE_TIMEOUT
@pytest.mark.parametrize("name", ["simple", "muon", "spectroscopy"])
def test_every_example_run_has_its_report(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run_dir, seconds = example_run(name, tmp_path_factory)
    figures = {"summary", "rates", "fill_levels"}
    if name == "muon":
        figures |= {
            "histograms_PulseParametersUp",
            "histograms_PulseParametersDown",
            "lifetime",
        }
    if name == "spectroscopy":
        figures |= {"histograms_PulseParameters", "spectrum"}
    record = check_report(run_dir, figures)
    assert record["errors"] == [] and record["notes"] == []
    assert seconds < REPORT_BUDGET_S


@EXAMPLE_TIMEOUT
def test_muon_report_has_the_lifetime_fit(tmp_path_factory: pytest.TempPathFactory) -> None:
    run_dir, _ = example_run("muon", tmp_path_factory)
    record = json.loads((run_dir / "report" / "report.json").read_text())
    text = record["hook_texts"]["lifetime_figure"]
    m = re.search(r"τ = (\d+\.\d+) ± (\d+\.\d+) µs", text)
    assert m, text
    tau, error = float(m[1]), float(m[2])
    assert 1.4 < tau < 3.2 and 0 < error < 1.0
    assert "τ = " in (run_dir / "report" / "index.html").read_text()


@EXAMPLE_TIMEOUT
def test_spectroscopy_report_marks_the_photopeaks(spectroscopy: Path) -> None:
    record = json.loads((spectroscopy / "report" / "report.json").read_text())
    text = record["hook_texts"]["spectrum_figure"]
    energies = [float(line.split()[-1]) for line in text.splitlines()[2:]]
    assert any(abs(e - 661.7) < 20 for e in energies), text  # Cs-137
    assert all(e > 100 for e in energies), text


# ----- what the figures show -----


@EXAMPLE_TIMEOUT
def test_summary_figure_shows_the_numbers_of_the_run(spectroscopy: Path) -> None:
    summary = json.loads((spectroscopy / "run_summary.json").read_text())
    stats = read_stats(spectroscopy / "stats.csv")
    effective = yaml.safe_load((spectroscopy / "setup.yaml").read_text())
    readers: dict[str, list[str]] = {}
    for worker, entry in effective["Workers"].items():
        for buffer in entry.get("sources") or []:
            readers.setdefault(buffer, []).append(worker)
    fig = summary_figure(spectroscopy.name, summary, readers, stats, stats.duration)
    tables = [ax.tables[0] for ax in fig.axes if ax.tables]
    assert len(tables) == 2

    def rows(table) -> dict[str, list[str]]:
        cells = table.get_celld()
        n_rows = 1 + max(r for r, _ in cells)
        n_cols = 1 + max(c for _, c in cells)
        texts = [[cells[r, c].get_text().get_text() for c in range(n_cols)] for r in range(n_rows)]
        return {row[0]: row[1:] for row in texts[1:]}

    with open(spectroscopy / "stats.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    buffers = rows(tables[0])
    assert set(buffers) == set(summary["buffers"])
    for name, b in summary["buffers"].items():
        filtered = sum(summary["workers"][w]["filtered_out"] for w in readers.get(name, []))
        expected = [b["committed"], b["consumed"], filtered, b["lost"]]
        expected += [b["paused_discarded"], b["overwritten"]]
        assert [int(v) for v in buffers[name][:6]] == expected
        events = float(last[f"buffers.{name}.event_count"])
        rate = events / float(last["time_active"])
        dead = 100 * float(last[f"buffers.{name}.mean_event_deadtime"])
        assert float(buffers[name][6]) == pytest.approx(rate, rel=1e-3)
        assert float(buffers[name][7]) == pytest.approx(dead, rel=1e-3, abs=1e-6)
    workers = rows(tables[1])
    keys = ["read", "written", "filtered_out", "dropped", "failed_processes", "restarts"]
    keys.append("stopped_by_user")
    for name, w in summary["workers"].items():
        assert [int(v) for v in workers[name]] == [w[k] for k in keys]
    texts = " ".join(t.get_text() for t in fig.texts)
    assert f"run time: {stats.duration:.1f} s" in texts
    assert f"exit status {summary['exit_status']}" in texts

    # the page's tables hold the same numbers as the figure
    page = (spectroscopy / "report" / "index.html").read_text()
    for name, values in buffers.items():
        cells = "".join(f"<td>{v}</td>" for v in [name, *values])
        assert cells in page, name
    for name, values in workers.items():
        assert "".join(f"<td>{v}</td>" for v in [name, *values]) in page, name
    assert all(f"<th>{c}</th>" in page for c in BUFFER_COLUMNS + WORKER_COLUMNS)


@EXAMPLE_TIMEOUT
def test_histogram_figure_prints_under_and_overflow_with_units(spectroscopy: Path) -> None:
    directory = spectroscopy / "Histograms_PulseParameters"
    channels = read_histograms(directory)
    units = {"peak_heights": "ADC counts", "prominences": "ADC counts"}
    fig = histogram_figure("PulseParameters", channels, units, workers=["spectrum"])
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert [ax.get_xlabel() for ax in axes] == [f"{c.name} / ADC counts" for c in channels]
    for ax, ch in zip(axes, channels, strict=True):
        assert ch.counts.sum() == np.load(directory / f"{ch.name}.npy").sum()
        box = " ".join(t.get_text() for t in ax.texts)
        assert f"entries {ch.counts.sum()}" in box
        assert f"underflow {ch.underflow}" in box and f"overflow {ch.overflow}" in box
    assert "spectrum" in fig.get_suptitle()


def test_pauses_are_shaded() -> None:
    t = np.arange(0.0, 8.0)
    events = np.array([0, 10, 20, 20, 20, 30, 40, 50], dtype=float)
    paused = np.array([0, 0, 1, 1, 0, 0, 0, 0], dtype=float)
    stats = RunStats(
        time=t,
        buffers={
            "raw": {
                "event_count": events,
                "paused": paused,
                "paused_count": np.zeros(8),
                "mean_event_deadtime": np.full(8, 0.1),
                "filled_slots": np.zeros(8),
            }
        },
    )
    fig = rate_figure(stats, "run")
    rate_axis = fig.axes[0]
    labels = rate_axis.get_legend_handles_labels()[1]
    assert "paused" in labels
    spans = []
    for p in rate_axis.patches:
        if p.get_gid() == "pause":
            box = p.get_path().transformed(p.get_patch_transform()).get_extents()
            spans.append((box.x0, box.x1))
    assert spans == [(1.0, 4.0)]  # the intervals with the buffer paused at either end


# ----- making the report again, turning it off, hooks that fail -----


@EXAMPLE_TIMEOUT
def test_cli_makes_the_report_again(spectroscopy: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / spectroscopy.name
    shutil.copytree(spectroscopy, run_dir)
    (run_dir / "report" / "stale.png").write_bytes(b"old")
    before = json.loads((run_dir / "report" / "report.json").read_text())
    t0 = time.monotonic()
    assert cli(["report", str(run_dir), "--setup-dir", str(SPECTROSCOPY.parent)]) == 0
    assert time.monotonic() - t0 < REPORT_BUDGET_S
    assert "report: " in capsys.readouterr().err
    record = check_report(run_dir, {f["name"] for f in before["figures"]})
    assert record["hook_texts"] == before["hook_texts"]
    assert not (run_dir / "report" / "stale.png").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".report")]

    # from the run directory alone (the hook's file found through the setup directory that
    # the earlier report recorded); without stats.csv: no rate and fill figures, and a note
    (run_dir / "stats.csv").unlink()
    assert cli(["report", str(run_dir)]) == 0
    record = check_report(run_dir, {"summary", "spectrum", "histograms_PulseParameters"})
    assert "rates" not in {f["name"] for f in record["figures"]}
    assert any("stats.csv" in n for n in record["notes"])
    assert re.search(r"run time \d+\.\d s", (run_dir / "report" / "index.html").read_text())

    assert cli(["report", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def small_setup(tmp_path: Path, options: dict) -> dict:
    setup = shortened(SIMPLE, tmp_path / "runs", number_of_events=200)
    setup["Options"] = options
    return setup


def test_report_false_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, _ = run(small_setup(tmp_path, {"report": False}), SIMPLE.parent)
    assert (run_dir / "run_summary.json").exists()
    assert not (run_dir / "report").exists()
    assert not report_enabled({"Options": {"report": False}})
    assert report_enabled({"Options": {"report": True}}) and report_enabled({})
    monkeypatch.setenv(REPORT_ENV, "0")
    assert not report_enabled({})


def test_failing_hook_is_named_and_the_run_still_succeeds(tmp_path: Path, capsys) -> None:
    hooks = [
        {"file": str(HOOKS), "function": "fails"},
        {"file": str(HOOKS), "function": "draws"},
    ]
    run_dir, _ = run(small_setup(tmp_path, {"report_hooks": hooks}), SIMPLE.parent)
    err = capsys.readouterr().err
    assert "report: " in err and "FAILED" in err and "fails on purpose" in err
    record = check_report(run_dir, {"summary", "rates", "fill_levels", "hook_figure"})
    assert len(record["errors"]) == 1 and "fails on purpose" in record["errors"][0]
    assert "never_saved" not in {f["name"] for f in record["figures"]}
    assert record["hook_texts"] == {"draws": "the hook saw 4 log files"}
    page = (run_dir / "report" / "index.html").read_text()
    assert "fails on purpose" in page and "the hook saw 4 log files" in page
    assert "report hook fails" in (run_dir / "mimocorb2.log").read_text()
    # the error is named on the summary figure too
    summary = json.loads((run_dir / "run_summary.json").read_text())
    fig = summary_figure(run_dir.name, summary, {}, None, None, notes=record["errors"])
    assert "fails on purpose" in " ".join(t.get_text() for t in fig.texts)


def test_a_slow_report_is_abandoned(tmp_path: Path, capsys) -> None:
    setup = parse_setup(
        small_setup(tmp_path, {"report_hooks": [{"file": str(HOOKS), "function": "slow"}]}),
        SIMPLE.parent,
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "setup.yaml").write_text(yaml.safe_dump(setup.effective_dict()))
    empty = {"exit_status": 0, "events_lost": 0, "reasons": [], "buffers": {}, "workers": {}}
    (run_dir / "run_summary.json").write_text(json.dumps(empty))
    t0 = time.monotonic()
    assert report_after_run(run_dir, setup, timeout=0.5) is None
    assert time.monotonic() - t0 < 3.5  # the hook takes 5 s
    assert "abandoned" in capsys.readouterr().err
    for thread in threading.enumerate():  # the hook returns; the abandoned report replaces nothing
        if thread.name == "mimocorb2-report":
            thread.join(30.0)
            assert not thread.is_alive()
    assert not (run_dir / "report").exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".report")]


def test_write_report_of_a_run_without_summary(tmp_path: Path) -> None:
    (tmp_path / "setup.yaml").write_text(": not yaml : [")
    result = write_report(tmp_path)
    assert result.errors == [] and result.figures == []
    assert any("run_summary.json" in n for n in result.notes)
    assert (tmp_path / "report" / "index.html").exists()


# ----- the setup keys -----


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"report": "no"}, "key 'report': expected true or false"),
        ({"report_hooks": "analyze.py"}, "key 'report_hooks': expected a list"),
        ({"report_hooks": [{"file": "missing.py", "function": "f"}]}, "not found"),
        ({"report_hooks": [{"file": str(HOOKS), "function": "nope"}]}, "not defined"),
        ({"report_hooks": [{"file": str(HOOKS)}]}, "key 'function': expected a text"),
        ({"report_hooks": [{"file": str(HOOKS), "function": "draws", "x": 1}]}, "unknown key"),
        ({"report_hooks": [str(HOOKS)]}, "expected a mapping"),
    ],
)
def test_bad_report_options_are_setup_errors(options: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(SetupValidationError) as e:
        parse_setup(small_setup(tmp_path, options), SIMPLE.parent, "s.yaml")
    text = str(e.value)
    assert message in text and "key 'Options'" in text, text


def test_report_options_of_the_examples_validate(tmp_path: Path) -> None:
    for setup_file, hook in ((MUON, "lifetime_figure"), (SPECTROSCOPY, "spectrum_figure")):
        raw = yaml.safe_load(setup_file.read_text())
        assert raw["Options"]["report_hooks"][0]["function"] == hook
        parse_setup(copy.deepcopy(raw), setup_file.parent)
    valid = {"report": True, "report_hooks": [{"file": str(HOOKS), "function": "draws"}]}
    parse_setup(small_setup(tmp_path, valid), SIMPLE.parent)
    parse_setup(small_setup(tmp_path, {"debug_workers": True}), SIMPLE.parent)
