"""importers.picoscope.source: configuration checks and the acquisition loop, against a
stand-in for the vendor's ``picosdk.ps3000a`` driver (``tests/fakes/fake_picosdk.py``)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
from fakes.fake_picosdk import MAX_ADC, FakePs3000a, expected_mv
from fakes.workers import load_events

from mimocorb2._setup import function_template
from mimocorb2.control import Control
from mimocorb2.exceptions import SetupValidationError
from mimocorb2.functions.importers import picoscope
from mimocorb2.mimo_buffer import BufferReader, mimoBuffer
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import SetupError, UfuncError

FAKES = Path(__file__).parent / "fakes"
DRIVER = f"{FAKES / 'fake_picosdk.py'}:make_driver"
DTYPE4 = {"chA": "float32", "chB": "float32", "chC": "float32", "chD": "float32"}
LENGTH = 200
GOOD = {"trigger_level": 50.0, "pre_trigger_samples": 20, "timebase": 2}
HAVE_PICOSDK = importlib.util.find_spec("picosdk") is not None


# ----- configuration -----


def test_validate_config_accepts_good_configs():
    hook = {"_driver": DRIVER}
    assert picoscope.validate_config({**GOOD, **hook}, DTYPE4, LENGTH) == []
    config = {
        **GOOD,
        **hook,
        "channel_coupling": "ac",
        "trigger_channel": "EXT",
        "trigger_level": -4999,
        "trigger_direction": "falling",
        "channel_range": "500mV",
        "channelB_range": "2V",
        "analogue_offset": 0.1,
        "analogue_offset_chC": -0.2,
        "post_trigger_samples": LENGTH - 20,
        "number_of_memory_segments": 16,
        "auto_trigger_ms": 100,
        "trigger_timeout": 5,
        "max_events": 10,
    }
    assert picoscope.validate_config(config, {"chB": "f8", "chC": "f4"}, LENGTH) == []


@pytest.mark.parametrize(
    ("change", "dtype", "message"),
    [
        ({}, {"x": "f4"}, "must have fields named chA, chB, chC and/or chD"),
        ({}, {"chA": "int16"}, "must be float32 or float64"),
        ({"trigger_channel": "B"}, {"chA": "f4"}, "channel B is not recorded"),
        ({"trigger_channel": "E"}, DTYPE4, "use one of A, B, C, D, EXT"),
        ({"trigger_level": 20001}, DTYPE4, "outside the range of the trigger input (±20000 mV)"),
        ({"channelA_range": "500MV", "trigger_level": 600}, DTYPE4, "(±500 mV)"),
        ({"channel_range": "3V"}, DTYPE4, "'3V' is not a range; use one of 10MV"),
        ({"channelC_range": 5}, DTYPE4, "'channelC_range': 5 is not a range"),
        ({"channel_coupling": "GND"}, DTYPE4, "use one of DC, AC"),
        ({"trigger_direction": "UP"}, DTYPE4, "use one of RISING, FALLING"),
        ({"pre_trigger_samples": LENGTH + 1}, DTYPE4, "is more than the sink's data_length"),
        ({"post_trigger_samples": 10}, DTYPE4, "must equal the sink's data_length"),
        ({"timebase": -1}, DTYPE4, "'timebase': -1 is out of range"),
        ({"number_of_memory_segments": 0}, DTYPE4, "'number_of_memory_segments': 0 is out"),
        ({"analogue_offset": "1V"}, DTYPE4, "'analogue_offset': expected a number"),
        ({"trigger_threshold": 10}, DTYPE4, "either trigger_level or trigger_threshold"),
        ({"_driver": "nothing"}, DTYPE4, "'_driver': expected"),
        ({"channelA_rnage": "1V"}, DTYPE4, "did you mean 'channelA_range'?"),
    ],
)
def test_validate_config_rejects_bad_values(change, dtype, message):
    config = {**GOOD, "_driver": DRIVER, **change}
    errors = picoscope.validate_config(config, dtype, LENGTH)
    assert len(errors) == 1, errors
    assert message in errors[0]


def test_reference_key_trigger_threshold_is_accepted():
    config = {"trigger_threshold": 50, "pre_trigger_samples": 20, "timebase": 2}
    assert picoscope.validate_config({**config, "_driver": DRIVER}, DTYPE4, LENGTH) == []


def test_missing_required_keys_are_listed():
    errors = picoscope.validate_config({"_driver": DRIVER}, DTYPE4, LENGTH)
    keys = sorted(e.split("'")[1] for e in errors)
    assert keys == ["pre_trigger_samples", "timebase", "trigger_level"]


@pytest.mark.skipif(HAVE_PICOSDK, reason="picosdk is installed here")
def test_validation_says_what_to_install_when_picosdk_is_missing():
    errors = picoscope.validate_config(GOOD, DTYPE4, LENGTH)
    assert len(errors) == 1
    assert "'picosdk' is not installed" in errors[0]
    assert "pip install picosdk" in errors[0]
    assert "https://www.picotech.com/downloads" in errors[0]


def test_prebuilt_function_is_an_importer():
    assert function_template(picoscope.source) == "Importer"
    assert picoscope.source.validate_config is picoscope.validate_config


# ----- acquisition loop in this process (monkeypatched driver) -----


def run_in_process(monkeypatch, tmp_path, unique_name, config, dtype, slots=64, **fake):
    driver = FakePs3000a(**fake)
    monkeypatch.setattr(picoscope, "load_driver", lambda config, setup_dir=None: driver)
    buf = mimoBuffer(unique_name("pico"), slots, LENGTH, dtype)
    io = BufferIO("scope", [], [buf], [], config, tmp_path, tmp_path)
    error = None
    try:
        picoscope.source(io)
    except Exception as e:
        error = e
    reader = BufferReader(buf, timeout=5)
    events = []
    while True:
        with reader as (metadata, data):
            if data is None:
                break
            events.append((metadata.copy(), data.copy()))
    return driver, events, error


def test_rapid_block_acquisition_writes_one_event_per_segment_in_mv(
    monkeypatch, tmp_path, unique_name
):
    config = {
        **GOOD,
        "number_of_memory_segments": 4,
        "max_events": 10,
        "channelA_range": "500MV",
        "channel_range": "5V",
        "analogue_offset_chC": 0.25,
    }
    dtype = {"chC": "float32", "chA": "float64"}
    driver, events, error = run_in_process(monkeypatch, tmp_path, unique_name, config, dtype)
    assert error is None
    assert len(events) == 10
    for e, (metadata, data) in enumerate(events):
        assert metadata["counter"][0] == e
        np.testing.assert_allclose(data["chA"], expected_mv(e, 0, LENGTH, 500), rtol=1e-6)
        np.testing.assert_allclose(data["chC"], expected_mv(e, 2, LENGTH, 5000), rtol=1e-6)
    # channels: A and C on with their ranges and offsets, B and D off
    ranges = FakePs3000a.PS3000A_RANGE
    assert driver.channels[0] == (1, 1, ranges["PS3000A_500MV"], 0.0)
    assert driver.channels[2] == (1, 1, ranges["PS3000A_5V"], 0.25)
    assert driver.channels[1][0] == 0 and driver.channels[3][0] == 0
    # trigger on A at 50 mV of ±500 mV, rising, no auto trigger
    assert driver.trigger == (1, 0, round(50 * MAX_ADC / 500), 2, 0, 0)
    # 10 events from blocks of 4: three blocks, the next one started before converting
    assert driver.blocks_started == 3
    runs = [args for name, args in driver.calls if name == "RunBlock"]
    assert runs[0] == (20, LENGTH - 20, 2)
    assert ("MemorySegments", (4,)) in driver.calls
    assert [name for name, _ in driver.calls[-2:]] == ["Stop", "CloseUnit"]
    assert not driver.open


def test_driver_failure_is_a_ufunc_error_and_ends_the_sink(monkeypatch, tmp_path, unique_name):
    config = {**GOOD, "number_of_memory_segments": 3}
    driver, events, error = run_in_process(
        monkeypatch, tmp_path, unique_name, config, {"chA": "f4"}, fail_after_blocks=2
    )
    assert isinstance(error, UfuncError)
    assert "GetValuesBulk failed: status 7" in str(error)
    assert len(events) == 6  # two good blocks, then the end of the stream
    assert not driver.open


def test_no_scope_connected(monkeypatch, tmp_path, unique_name):
    _, events, error = run_in_process(
        monkeypatch, tmp_path, unique_name, GOOD, {"chA": "f4"}, present=False
    )
    assert isinstance(error, UfuncError)
    assert "no PicoScope 3000A could be opened (status 3" in str(error)
    assert events == []


def test_trigger_timeout(monkeypatch, tmp_path, unique_name):
    config = {**GOOD, "trigger_timeout": 0.2}
    driver, _, error = run_in_process(
        monkeypatch, tmp_path, unique_name, config, {"chA": "f4"}, never_ready=True
    )
    assert isinstance(error, UfuncError)
    assert "not complete within 0.2 s" in str(error)
    assert ("Stop", ()) in driver.calls


def test_bad_config_is_a_setup_error_at_start(monkeypatch, tmp_path, unique_name):
    _, events, error = run_in_process(
        monkeypatch, tmp_path, unique_name, {"timebase": 2}, {"chA": "f4"}
    )
    assert isinstance(error, SetupError)
    assert "invalid configuration" in str(error)
    assert "'trigger_level': missing" in str(error)
    assert events == []


# ----- real Control runs (the worker in its own process) -----


def pico_setup(tmp_path: Path, **config) -> dict:
    return {
        "Buffers": {"pico": {"slot_count": 32, "data_length": LENGTH, "data_dtype": DTYPE4}},
        "Workers": {
            "scope": {
                "function": "importers.picoscope.source",
                "sinks": ["pico"],
                "config": {**GOOD, **config},
            },
            "save": {
                "file": str(FAKES / "workers.py"),
                "function": "save_events",
                "sources": ["pico"],
            },
        },
        "target_directory": str(tmp_path / "runs"),
    }


def test_control_run_with_the_stand_in_driver(tmp_path):
    setup = pico_setup(
        tmp_path,
        _driver=DRIVER,
        number_of_memory_segments=5,
        max_events=25,
        trigger_channel="D",
        channel_range="1V",
    )
    control = Control(setup, tmp_path, mode="stats")
    t0 = time.monotonic()
    control()
    assert time.monotonic() - t0 < 30
    assert control.exit_code == 0, control.failures()
    events = load_events(control.run_dir)
    np.testing.assert_array_equal(events["counter"], np.arange(25))
    for c, name in enumerate(["chA", "chB", "chC", "chD"]):
        want = np.stack([expected_mv(e, c, LENGTH, 1000) for e in range(25)])
        np.testing.assert_allclose(events[name], want, rtol=1e-6)


@pytest.mark.skipif(HAVE_PICOSDK, reason="picosdk is installed here")
def test_control_run_without_picosdk_says_what_to_install(tmp_path):
    # the setup check runs the importer's config validation: nothing starts, the message says
    # what to install
    with pytest.raises(SetupValidationError) as info:
        Control(pico_setup(tmp_path), tmp_path, mode="stats")
    text = str(info.value)
    assert "worker 'scope'" in text and "pip install picosdk" in text
    assert not list(tmp_path.glob("**/run_*"))
