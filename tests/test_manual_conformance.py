"""Issue 9: worker code and setups written for the manual run unchanged.

Every test here uses only the public API of the manual: hand-made ``BufferIO`` objects with
lists of BufferReader/BufferWriter/BufferObserver, the six templates, ``get_stats()``, the
prebuilt replay importers, plain ``multiprocessing`` writers and the ``mimocorb2`` command.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mimocorb2 import (
    BufferIO,
    Control,
    Exporter,
    Filter,
    Importer,
    IsAlive,
    Observer,
    Processor,
    SetupError,
    UfuncError,
)
from mimocorb2.functions import data as data_functions
from mimocorb2.mimo_buffer import BufferObserver, BufferReader, BufferWriter, mimoBuffer
from mimocorb2.mimo_file import MimoWriter

DTYPE = {"x": "float32", "y": "float64"}
LENGTH = 4
WAIT_S = 10.0
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def make_buffer(slot_count: int = 32, data_length: int = LENGTH, dtype: dict | None = None):
    """A buffer of the test layout (or another one)."""
    return mimoBuffer("conformance", slot_count, data_length, dtype or DTYPE)


def hand_made(
    name: str,
    tmp_path: Path,
    sources: Sequence[mimoBuffer] = (),
    sinks: Sequence[mimoBuffer] = (),
    observes: Sequence[mimoBuffer] = (),
    config: dict | None = None,
) -> BufferIO:
    """A BufferIO built as the manual documents it: lists of endpoint objects."""
    return BufferIO(
        name,
        [BufferReader(b, timeout=WAIT_S) for b in sources],
        [BufferWriter(b, timeout=WAIT_S) for b in sinks],
        [BufferObserver(b, timeout=WAIT_S) for b in observes],
        config or {},
        tmp_path,
        tmp_path,
    )


def fill(buf: mimoBuffer, values: list[int], deadtime: float = 0.25, end: bool = True) -> None:
    """Writes one event per value (``x`` = value, ``counter`` = value), then ends the writer."""
    writer = BufferWriter(buf, timeout=WAIT_S)
    for v in values:
        with writer as (metadata, data):
            data["x"] = v
            data["y"] = v / 2
            metadata["counter"] = v
            metadata["timestamp"] = 1000.0 + v
            metadata["deadtime"] = deadtime
    if end:
        writer.send_flush_event()


def drain(buf: mimoBuffer) -> list[tuple[np.ndarray, np.ndarray]]:
    """Copies of ``(metadata, data)`` of every event up to the end of the stream."""
    reader = BufferReader(buf, timeout=WAIT_S)
    out = []
    while True:
        with reader as (metadata, data):
            if data is None:
                return out
            out.append((metadata.copy(), data.copy()))


def xs(events: list[tuple[np.ndarray, np.ndarray]]) -> list[int]:
    """The ``x`` value of each event."""
    return [int(d["x"][0]) for _, d in events]


# ----- 1. BufferIO built by hand -----


def test_bufferio_takes_the_manuals_endpoint_lists(tmp_path):
    src, sink, seen = make_buffer(), make_buffer(8, 2, {"h": "int32"}), make_buffer()
    reader = BufferReader(src)
    writer = BufferWriter(sink)
    observer = BufferObserver(seen)
    io = BufferIO("hand", [reader], [writer], [observer], {"k": 3}, tmp_path, tmp_path)
    assert io.read == [reader] and io.read[0] is reader
    assert io.write[0] is writer and io.observe[0] is observer
    assert io.sources is io.read and io.sinks is io.write and io.observes is io.observe
    assert io.buffer_names_in == [src.name]
    assert io.buffer_names_out == [sink.name]
    assert io.buffer_names_observe == [seen.name]
    assert io.data_in_examples[0].dtype == src.data_dtype
    assert io.data_out_examples[0].shape == (2,)
    assert io.data_out_examples[0].dtype == sink.data_dtype
    assert io.data_observe_examples[0].shape == (LENGTH,)
    for examples in (io.metadata_in_examples, io.metadata_out_examples):
        assert examples[0].dtype.names == ("counter", "timestamp", "deadtime")
    assert io.metadata_observe_examples[0].dtype.names == ("counter", "timestamp", "deadtime")
    assert io["k"] == 3 and io.get("missing", 7) == 7
    assert io.name == "hand" and io.setup_dir == tmp_path and io.run_dir == tmp_path
    assert io.logger.name == "mimocorb2.mimo_worker.hand"
    assert "hand" in str(io)
    with io.write[0] as (_metadata, data):
        data["h"] = [1, 2]
    assert not sink.flush_event_received
    with pytest.raises(KeyError, match="missing"):
        io["missing"]  # a missing key is a setup error: the sinks are shut down
    assert sink.flush_event_received
    assert [list(d["h"]) for _, d in drain(sink)] == [[1, 2]]


def test_bufferio_mixes_endpoints_and_buffers(tmp_path):
    a, b = make_buffer(), make_buffer()
    writer = BufferWriter(b)
    io = BufferIO("mixed", [a], [writer, a], [], {}, str(tmp_path), str(tmp_path))
    assert [type(e) for e in io.read] == [BufferReader]
    assert io.write[0] is writer and isinstance(io.write[1], BufferWriter)
    assert io.buffer_names_out == [b.name, a.name]
    io.shutdown_sinks()
    assert a.flush_event_received and b.flush_event_received


@pytest.mark.parametrize(
    ("key", "lists"),
    [
        ("sources", lambda b: ([BufferWriter(b)], [], [])),
        ("sinks", lambda b: ([], [BufferReader(b)], [])),
        ("observes", lambda b: ([], [], [BufferReader(b)])),
        ("sinks", lambda b: ([], ["name"], [])),
        ("sources", lambda b: (b, [], [])),
    ],
)
def test_bufferio_names_a_wrong_endpoint(tmp_path, key, lists):
    buf = make_buffer()
    with pytest.raises(TypeError, match=rf"worker 'w': {key}"):
        BufferIO("w", *lists(buf), {}, tmp_path, tmp_path)


def test_hand_made_importer(tmp_path):
    sink = make_buffer(32)
    io = hand_made("imp", tmp_path, sinks=[sink])
    importer = Importer(io)
    assert importer.data_example.shape == (LENGTH,)

    def ufunc():
        for i in range(10):
            event = importer.data_example.copy()
            event["x"] = i
            yield event
        yield None

    importer(ufunc)
    events = drain(sink)
    assert xs(events) == list(range(10))
    assert [int(m["counter"][0]) for m, _ in events] == list(range(10))
    assert all(0.0 <= float(m["deadtime"][0]) <= 1.0 for m, _ in events)


def test_hand_made_exporter_with_pass_through_sink(tmp_path):
    src, copy = make_buffer(), make_buffer()
    fill(src, list(range(6)))
    seen = []
    for data, metadata in Exporter(hand_made("exp", tmp_path, sources=[src], sinks=[copy])):
        seen.append((int(data["x"][0]), int(metadata["counter"][0])))  # (data, metadata)
    assert seen == [(i, i) for i in range(6)]
    events = drain(copy)
    assert xs(events) == list(range(6))
    assert [float(m["deadtime"][0]) for m, _ in events] == [0.25] * 6


def test_hand_made_filter(tmp_path):
    src, even, odd = make_buffer(), make_buffer(), make_buffer()
    fill(src, list(range(8)))
    io = hand_made("filt", tmp_path, sources=[src], sinks=[even, odd])
    Filter(io)(lambda data: [data["x"][0] % 2 == 0, data["x"][0] % 2 == 1])
    assert xs(drain(even)) == [0, 2, 4, 6]
    assert xs(drain(odd)) == [1, 3, 5, 7]


def test_hand_made_processor(tmp_path):
    src, heights = make_buffer(), make_buffer(32, 1, {"h": "float64"})
    fill(src, list(range(5)))
    io = hand_made("proc", tmp_path, sources=[src], sinks=[heights])
    out = io.data_out_examples[0].copy()

    def ufunc(data):
        if data["x"][0] == 2:
            return None
        out["h"] = data["x"].sum()
        return [out]

    Processor(io)(ufunc)
    events = drain(heights)
    assert [float(d["h"][0]) for _, d in events] == [0.0, 4.0, 12.0, 16.0]
    assert [int(m["counter"][0]) for m, _ in events] == [0, 1, 3, 4]  # input metadata


def test_hand_made_observer_and_is_alive(tmp_path):
    buf = make_buffer(8)
    writer = BufferWriter(buf)
    with writer as (metadata, data):
        data["x"] = 42
    observer = Observer(hand_made("obs", tmp_path, observes=[buf]))
    is_alive = IsAlive(hand_made("alive", tmp_path, observes=[buf]))
    assert is_alive()
    events = observer()
    data, metadata = next(events)
    assert int(data["x"][0]) == 42 and metadata.dtype.names[0] == "counter"
    writer.send_flush_event()
    assert next(events) == (None, None)
    assert not is_alive()


@pytest.mark.parametrize(
    ("template", "sources", "sinks", "observes"),
    [
        (Importer, 1, 1, 0),
        (Importer, 0, 2, 0),
        (Exporter, 0, 1, 0),
        (Filter, 1, 0, 0),
        (Processor, 2, 1, 0),
        (Observer, 0, 1, 1),
        (IsAlive, 0, 0, 2),
    ],
)
def test_hand_made_buffer_counts_are_checked(tmp_path, template, sources, sinks, observes):
    bufs = [make_buffer(8) for _ in range(3)]
    io = hand_made("wrong", tmp_path, bufs[:sources], bufs[1 : 1 + sinks], bufs[:observes])
    with pytest.raises(SetupError, match=f"worker 'wrong': the {template.__name__} template"):
        template(io)
    assert all(b.flush_event_received for b in bufs[1 : 1 + sinks])  # sinks shut down


@pytest.mark.parametrize("template", [Exporter, Filter])
@pytest.mark.parametrize(
    ("length", "dtype"), [(LENGTH + 1, DTYPE), (LENGTH, {"x": "float64", "y": "float64"})]
)
def test_hand_made_pass_through_sinks_are_checked(tmp_path, template, length, dtype):
    src, sink = make_buffer(), make_buffer(8, length, dtype)
    with pytest.raises(SetupError, match="must have the layout of source"):
        template(hand_made("layout", tmp_path, sources=[src], sinks=[sink]))
    assert sink.flush_event_received


def test_hand_made_ufunc_error_shuts_the_sinks_down(tmp_path):
    src, sink = make_buffer(), make_buffer()
    fill(src, list(range(5)))

    def ufunc(data):
        if data["x"][0] == 3:
            raise ZeroDivisionError("bad event")
        return True

    with pytest.raises(UfuncError, match="worker 'filt'") as info:
        Filter(hand_made("filt", tmp_path, sources=[src], sinks=[sink]))(ufunc)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert float(info.value.ufunc_input["x"][0]) == 3.0
    assert xs(drain(sink)) == [0, 1, 2]  # then the end of the stream


# ----- 2. Observer after the end -----


def test_observer_yields_none_after_the_end():
    buf = make_buffer(8)
    writer = BufferWriter(buf)
    observer = BufferObserver(buf, timeout=WAIT_S)
    with writer as (metadata, data):
        data["x"] = 1
    with observer as (metadata, data):
        assert int(data["x"][0]) == 1
    with writer as (metadata, data):
        data["x"] = 2  # not observed yet, not read yet
    writer.send_flush_event()
    assert buf.flush_event_received
    with observer as (metadata, data):
        assert metadata is None and data is None
    with BufferObserver(buf, timeout=WAIT_S) as (metadata, data):
        assert [metadata, data] == [None, None]  # a new observer, too
    assert xs(drain(buf)) == [1, 2]  # readers still get every event


def test_observer_yields_none_after_a_forced_end():
    buf = make_buffer(8)
    fill(buf, [5], end=False)
    buf.send_flush_event()
    with BufferObserver(buf) as result:
        assert result == [None, None]


# ----- 3. Dead time of plain writers -----


def test_average_deadtime_is_the_mean_of_the_events_deadtime():
    buf = make_buffer(16)
    writer = BufferWriter(buf)
    values = [0.1, 0.2, 0.3, 0.6]
    for v in values:
        with writer as (metadata, _data):
            metadata["deadtime"] = v  # e.g. the board's own dead time
    assert buf.get_stats()["average_deadtime"] == pytest.approx(np.mean(values))
    writer.send_flush_event()
    assert BufferReader(buf).get_stats()["average_deadtime"] == pytest.approx(np.mean(values))


def test_forwarded_deadtime_reaches_the_sinks_statistics(tmp_path):
    src, sink = make_buffer(), make_buffer()
    fill(src, list(range(4)), deadtime=0.4)
    Filter(hand_made("filt", tmp_path, sources=[src], sinks=[sink]))(lambda data: True)
    assert sink.get_stats()["average_deadtime"] == pytest.approx(0.4)
    assert src.get_stats()["average_deadtime"] == pytest.approx(0.4)


def test_importer_deadtime_statistics_match_its_stamps(tmp_path):
    sink = make_buffer(64)
    importer = Importer(hand_made("imp", tmp_path, sinks=[sink]))
    importer(lambda: iter([importer.data_example] * 40))
    stamped = [float(m["deadtime"][0]) for m, _ in drain(sink)]
    assert len(stamped) == 40
    stats = sink.get_stats()
    assert stats["average_deadtime"] == pytest.approx(np.mean(stamped), abs=1e-9)
    assert 0.0 <= stats["average_deadtime"] <= 1.0


# ----- 4. Writers that simply exit -----


def _write_and_exit(buf: mimoBuffer, first: int, n: int, die_writing: bool) -> None:
    """A writer process that ends without send_flush_event (optionally while writing)."""
    writer = BufferWriter(buf, timeout=WAIT_S)
    for i in range(first, first + n):
        with writer as (_, data):
            data["x"] = i
    if die_writing:
        with writer as (_metadata, data):
            data["x"] = -1
            os._exit(0)  # gone while holding a slot


def _flush(buf: mimoBuffer) -> None:
    BufferWriter(buf).send_flush_event()


def _run(target: Callable[..., None], *args: Any) -> None:
    """Runs ``target(*args)`` in a plain multiprocessing process to its end."""
    process = multiprocessing.Process(target=target, args=args)
    process.start()
    process.join(WAIT_S)
    assert process.exitcode == 0


@pytest.mark.timeout(20)
def test_writers_that_exit_without_flushing_do_not_keep_the_buffer_open():
    buf = make_buffer(64)
    _run(_write_and_exit, buf, 0, 10, False)
    _run(_write_and_exit, buf, 100, 10, True)
    _run(_flush, buf)
    reader = BufferReader(buf, timeout=5.0)
    got = []
    while True:
        with reader as (_metadata, data):
            if data is None:
                break
            got.append(int(data["x"][0]))
    assert sorted(got) == list(range(10)) + list(range(100, 110))
    assert buf.flush_event_received
    assert buf.get_stats()["empty_slots"] == 1.0  # the dead writer's slot is free again


@pytest.mark.timeout(20)
def test_a_live_writer_that_has_not_flushed_keeps_the_buffer_open():
    buf = make_buffer(16)
    writer = BufferWriter(buf)  # alive (this process), not flushed
    with writer as (_, data):
        data["x"] = 1
    _run(_flush, buf)
    reader = BufferReader(buf, timeout=0.3)
    with reader as (_, data):
        assert int(data["x"][0]) == 1
    assert not buf.flush_event_received
    writer.send_flush_event()
    with reader as (_metadata, data):
        assert data is None


# ----- 5. Running from the reference's checkout -----


def _command() -> list[str]:
    """The installed ``mimocorb2`` command (as the reference's README runs it)."""
    script = Path(sys.executable).parent / "mimocorb2"
    if script.is_file():
        return [str(script)]
    found = shutil.which("mimocorb2")
    return [found] if found else [sys.executable, "-P", "-m", "mimocorb2"]


@pytest.mark.timeout(120)
def test_example_runs_from_a_checkout_with_a_decoy_package(tmp_path):
    checkout = tmp_path / "mimoCoRB2"
    decoy = checkout / "mimocorb2"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("import graphviz_of_the_reference_checkout  # noqa\n")
    (decoy / "control.py").write_text("raise ImportError('the decoy was imported')\n")
    example = checkout / "examples" / "simple"
    shutil.copytree(EXAMPLES / "simple", example, ignore=shutil.ignore_patterns("target"))
    setup = yaml.safe_load((example / "setup.yaml").read_text())
    setup["Workers"]["input"]["config"]["number_of_events"] = 2000
    (example / "setup.yaml").write_text(yaml.safe_dump(setup, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONSAFEPATH", None)

    # the decoy is what a plain interpreter started there imports
    probe = subprocess.run(
        [sys.executable, "-c", "import mimocorb2"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode != 0 and "graphviz_of_the_reference_checkout" in probe.stderr

    result = subprocess.run(
        [*_command(), "examples/simple/setup.yaml", "-c", "stats"],
        cwd=checkout,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=100,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "decoy" not in output and "graphviz_of_the_reference_checkout" not in output
    assert "pulses:" in output  # the summary worker's print
    runs = list((example / "target").glob("run_*"))
    assert len(runs) == 1 and (runs[0] / "stats.csv").is_file()


REFERENCE_STYLE_FUNCTIONS = '''
from mimocorb2 import BufferIO, Exporter, Importer


def numbers(buffer_io: BufferIO):
    """mimoCoRB2 Function: numbered events.

    Type
        Importer
    """
    importer = Importer(buffer_io)

    def ufunc():
        for i in range(buffer_io["n_events"]):
            data = importer.data_example.copy()
            data["ch1"] = i
            yield data
        yield None

    importer(ufunc)


def count(buffer_io: BufferIO):
    """mimoCoRB2 Function: prints how many events arrived.

    Type
        Exporter
    """
    n = sum(1 for _data, _metadata in Exporter(buffer_io))
    source = buffer_io.read[0]
    print("counted", n, source.buffer.name, source.is_shutdown.value)
'''

REFERENCE_STYLE_SETUP = """
osc_buffer_template: &osc_buffer
  slot_count: 16
  data_length: 10
  data_dtype: {ch1: float32}
  overwrite: false
Options:
  output_directory: target
  debug_workers: false
Buffers:
  Input: *osc_buffer
  Copied:
    <<: *osc_buffer
Workers:
  source:
    file: functions.py
    function: numbers
    config: config.yaml
    sinks: [Input]
  copy:
    file: ""
    function: misc.copy
    sources: [Input]
    sinks: [Copied]
  counter:
    file: functions.py
    function: count
    number_of_processes: 1
    sources: [Copied]
base_config: [config.yaml]
target_directory: target
"""


@pytest.mark.timeout(60)
def test_a_setup_written_for_the_reference_runs_unchanged(tmp_path, capfd):
    (tmp_path / "functions.py").write_text(REFERENCE_STYLE_FUNCTIONS)
    (tmp_path / "config.yaml").write_text("n_events: 300\n")
    (tmp_path / "setup.yaml").write_text(REFERENCE_STYLE_SETUP)
    control = Control.from_setup_file(tmp_path / "setup.yaml", "stats")
    control()
    assert control.exit_code == 0
    captured = capfd.readouterr()
    assert "counted 300 Copied True" in captured.out + captured.err  # the worker's print
    assert control.get_stats()["buffers"]["Copied"]["event_count"] == 300


# ----- 6. Relative filename of the replay importers -----


def _mimo_file(path: Path, values: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with MimoWriter(path, data_dtype=DTYPE, data_length=LENGTH) as w:
        for v in values:
            event = np.zeros(LENGTH, dtype=np.dtype([("x", "<f4"), ("y", "<f8")]))
            event["x"] = v
            w.write(event)


def _replay(function: Callable[[BufferIO], None], setup_dir: Path, config: dict) -> list[int]:
    sink = make_buffer(32)
    io = BufferIO("replay", [], [BufferWriter(sink)], [], config, setup_dir, setup_dir)
    function(io)
    return xs(drain(sink))


@pytest.mark.parametrize(
    ("function", "extra"),
    [
        (data_functions.simulate_importer, {}),
        (data_functions.clocked_importer, {"rate": 1000}),
    ],
)
def test_replay_filename_falls_back_to_the_current_directory(
    tmp_path, monkeypatch, function, extra
):
    setup_dir, cwd = tmp_path / "setup", tmp_path / "cwd"
    setup_dir.mkdir()
    _mimo_file(cwd / "data" / "run.mimo", [1, 2, 3])
    monkeypatch.chdir(cwd)
    assert _replay(function, setup_dir, {"filename": "data/run.mimo", **extra}) == [1, 2, 3]
    # the setup directory comes first
    _mimo_file(setup_dir / "data" / "run.mimo", [7, 8])
    assert _replay(function, setup_dir, {"filename": "data/run.mimo", **extra}) == [7, 8]


def test_replay_filename_wildcards_in_the_current_directory(tmp_path, monkeypatch):
    setup_dir, cwd = tmp_path / "setup", tmp_path / "cwd"
    setup_dir.mkdir()
    _mimo_file(cwd / "target" / "run_1" / "w.mimo", [4, 5])
    monkeypatch.chdir(cwd)
    config = {"filename": "target/run_*/w.mimo"}
    assert _replay(data_functions.simulate_importer, setup_dir, config) == [4, 5]


def test_replay_filename_error_names_both_places(tmp_path, monkeypatch):
    setup_dir, cwd = tmp_path / "setup", tmp_path / "cwd"
    setup_dir.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    sink = make_buffer(8)
    config = {"filename": "x.mimo"}
    io = BufferIO("replay", [], [BufferWriter(sink)], [], config, setup_dir, tmp_path)
    with pytest.raises(SetupError) as info:
        data_functions.simulate_importer(io)
    message = str(info.value)
    assert str(setup_dir / "x.mimo") in message and str(cwd / "x.mimo") in message
    io.shutdown_sinks()
