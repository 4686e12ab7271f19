"""importers.redpitaya.waveform against fake boards on 127.0.0.1, driven by real Control runs.

Each run: the real importer (fresh worker process) reads from a fake server of this process
(``tests/fakes``), an exporter saves every event to the run directory, and the test compares
the events sample by sample with the waveforms the fake sent.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fakes.redpitaya_mcpha import FakeMcphaServer, signed
from fakes.redpitaya_scpi import FakeScpiServer
from fakes.waveforms import expected
from fakes.workers import load_events

from mimocorb2._setup import function_template, parse_setup
from mimocorb2.control import Control
from mimocorb2.exceptions import SetupValidationError
from mimocorb2.functions.importers import redpitaya
from mimocorb2.functions.importers._mcpha import VALUE_MASK, command

WORKERS = Path(__file__).parent / "fakes" / "workers.py"
DTYPE = {"IN1": "int16", "IN2": "int16"}
LENGTH = 1000
RUN_LIMIT_S = 30


def rp_setup(tmp_path: Path, port: int, length: int = LENGTH, slots: int = 16, **config) -> dict:
    cfg = {
        "ip": "127.0.0.1",
        "port": port,
        "sample_rate": 4,
        "trigger_level": -100,
        "number_of_samples_before_trigger": 10,
        "timeout": 2.0,
    }
    cfg.update(config)
    return {
        "Buffers": {"osc": {"slot_count": slots, "data_length": length, "data_dtype": DTYPE}},
        "Workers": {
            "rp": {
                "function": "importers.redpitaya.waveform",
                "sinks": ["osc"],
                "config": cfg,
            },
            "save": {"file": str(WORKERS), "function": "save_events", "sources": ["osc"]},
        },
        "target_directory": str(tmp_path / "runs"),
    }


def run(setup: dict, tmp_path: Path) -> Control:
    control = Control(setup, tmp_path, mode="stats")
    t0 = time.monotonic()
    control()
    assert time.monotonic() - t0 < RUN_LIMIT_S
    assert control.get_stats()["total_processes_alive"] == 0
    return control


def failure_text(control: Control) -> str:
    failed = control.failures()
    assert [p["worker"] for p in failed] == ["rp"]
    return "\n".join(failed[0]["tail"])


def assert_waveforms(events: dict, numbers, shift: int = 0, **negate) -> None:
    numbers = list(numbers)
    in1, in2 = expected(numbers, LENGTH, shift=shift, **negate)
    assert events["IN1"].shape == (len(numbers), LENGTH)
    np.testing.assert_array_equal(events["IN1"], in1)
    np.testing.assert_array_equal(events["IN2"], in2)
    np.testing.assert_array_equal(events["counter"], np.arange(len(numbers)))
    assert np.all(np.diff(events["timestamp"]) >= 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----- MCPHA -----


def test_command_words_are_little_endian_with_52_bit_values():
    assert command(16, 0, -100) == struct.pack("<Q", (16 << 56) | ((-100) & VALUE_MASK))
    assert command(5, 1, 1) == struct.pack("<Q", (5 << 56) | (1 << 52) | 1)
    assert command(31, 0, 100) == (31 << 56 | 100).to_bytes(8, "little")


def test_mcpha_configures_the_board_and_delivers_exact_waveforms(tmp_path):
    with FakeMcphaServer() as server:
        control = run(rp_setup(tmp_path, server.port, set_size=7, max_events=50), tmp_path)
    assert control.exit_code == 0, control.failures()
    assert not server.errors
    cmds = server.commands[0]
    assert cmds[:11] == [
        (4, 0, 4),  # sample rate
        (5, 0, 0),  # negator IN1
        (5, 1, 0),  # negator IN2
        (14, 0, 0),  # rising
        (15, 0, 0),  # normal
        (16, 0, (-100) & VALUE_MASK),  # trigger level, two's complement
        (17, 0, 10),  # samples before the trigger
        (13, 0, 0),  # trigger source IN1
        (18, 0, LENGTH + 100),  # total samples incl. the discarded extra samples
        (2, 0, 0),  # reset oscilloscope
        (19, 0, 0),  # start oscilloscope
    ]
    assert signed(cmds[5][2]) == -100
    daq = cmds[11:]
    assert all(code == 31 for code, _, _ in daq)
    assert sum(v for _, _, v in daq) == 50  # never more than max_events requested
    assert max(v for _, _, v in daq) == 7
    assert_waveforms(load_events(control.run_dir), range(50))


def test_mcpha_partial_reads_and_board_side_settings(tmp_path):
    with FakeMcphaServer(chunk=1500, seed=3) as server:
        setup = rp_setup(
            tmp_path,
            server.port,
            set_size=4,
            max_events=30,
            negator_IN1=True,
            trigger_source="IN2",
            trigger_slope="falling",
            trigger_mode="auto",
            trigger_level=4095,
            sample_rate=256,
        )
        control = run(setup, tmp_path)
    assert control.exit_code == 0, control.failures()
    cmds = server.commands[0]
    assert (4, 0, 256) in cmds and (5, 0, 1) in cmds and (5, 1, 0) in cmds
    assert (13, 1, 0) in cmds and (14, 0, 1) in cmds and (15, 0, 1) in cmds
    assert (16, 0, 4095) in cmds
    assert_waveforms(load_events(control.run_dir), range(30), negate_in1=True)


@pytest.mark.parametrize(("extra", "garbage"), [(0, 0), (37, 5)])
def test_mcpha_extra_samples_are_configurable(tmp_path, extra, garbage):
    with FakeMcphaServer(corrupt_tail=garbage) as server:
        setup = rp_setup(tmp_path, server.port, max_events=12, set_size=5, extra_samples=extra)
        control = run(setup, tmp_path)
    assert control.exit_code == 0, control.failures()
    assert (18, 0, LENGTH + extra) in server.commands[0]
    assert_waveforms(load_events(control.run_dir), range(12))


def test_mcpha_board_dropping_the_connection_fails_the_run_cleanly(tmp_path, capsys):
    with FakeMcphaServer(drop_after=20) as server:
        control = run(rp_setup(tmp_path, server.port, set_size=8), tmp_path)
    assert control.exit_code == 1
    text = failure_text(control)
    assert "RedPitaya at 127.0.0.1" in text
    assert "closed the connection while sending waveform 20" in text
    assert "closed the connection" in capsys.readouterr().err
    # the sink was flushed: everything before the drop arrived, sample-exact
    assert_waveforms(load_events(control.run_dir), range(20))


def test_mcpha_reconnects_after_a_dropped_connection(tmp_path):
    with FakeMcphaServer(drop_after=20) as server:
        setup = rp_setup(
            tmp_path, server.port, set_size=8, max_events=40, reconnect=2, reconnect_delay=0.05
        )
        control = run(setup, tmp_path)
    assert control.exit_code == 0, control.failures()
    assert server.connections == 2
    assert len(server.commands[1]) > 11  # configured again
    # waveform 20 was cut off with the connection; the fake numbers waveforms globally
    assert_waveforms(load_events(control.run_dir), [*range(20), *range(21, 41)])
    log = (control.run_dir / "logs" / "rp.log").read_text()
    assert "reconnecting" in log


def test_mcpha_silent_board_times_out(tmp_path):
    with FakeMcphaServer(silent=True) as server:
        control = run(rp_setup(tmp_path, server.port, trigger_timeout=0.5), tmp_path)
    assert control.exit_code == 1
    assert "nothing received for 0.5 s while waiting for waveform 0" in failure_text(control)
    assert len(load_events(control.run_dir)["IN1"]) == 0


def test_unreachable_board_is_a_clear_error(tmp_path):
    control = run(rp_setup(tmp_path, free_port()), tmp_path)
    assert control.exit_code == 1
    text = failure_text(control)
    assert "refused the connection" in text
    assert "MCPHA waveform server is not running" in text


def test_stopping_the_run_while_waiting_for_triggers_ends_cleanly(tmp_path):
    with FakeMcphaServer(max_waveforms=30) as server:
        setup = rp_setup(tmp_path, server.port, set_size=10, trigger_timeout=None, slots=64)
        control = Control(setup, tmp_path, mode="stats")

        def stop_when_all_arrived() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if control.buffers["osc"].get_stats()["event_count"] >= 30:
                    break
                time.sleep(0.05)
            time.sleep(0.3)  # the importer now waits for triggers that never come
            control.commands.put(["buffer", "roots", "shutdown"])

        stopper = threading.Thread(target=stop_when_all_arrived)
        stopper.start()
        t0 = time.monotonic()
        control()
        stopper.join()
    assert time.monotonic() - t0 < RUN_LIMIT_S
    assert control.exit_code == 0, control.failures()
    assert_waveforms(load_events(control.run_dir), range(30))


# ----- SCPI -----


def scpi_setup(tmp_path: Path, port: int, **config) -> dict:
    return rp_setup(tmp_path, port, protocol="scpi", **config)


def test_scpi_decodes_blocks_sample_exact_with_software_negation(tmp_path):
    with FakeScpiServer(chunk=700, seed=1) as server:
        setup = scpi_setup(tmp_path, server.port, max_events=15, negator_IN2=True, sample_rate=8)
        control = run(setup, tmp_path)
    assert control.exit_code == 0, control.failures()
    assert not server.errors
    cmds = server.commands[0]
    assert cmds[:6] == [
        "ACQ:RST",
        "ACQ:DEC 8",
        "ACQ:DATA:FORMAT BIN",
        "ACQ:DATA:UNITS RAW",
        f"ACQ:TRIG:LEV {-100 / 8192:.6f}",
        "ACQ:TRIG:DLY 8182",  # trigger at sample 10 of the data buffer
    ]
    assert cmds[6:8] == ["ACQ:START", "ACQ:TRIG CH1_PE"]
    assert cmds.count("ACQ:START") == 15
    assert "ACQ:TRIG:FILL?" in cmds
    # the trigger is at index number_of_samples_before_trigger of every event
    assert_waveforms(load_events(control.run_dir), range(15), shift=10, negate_in2=True)


def test_scpi_trigger_source_slope_and_auto_mode(tmp_path):
    with FakeScpiServer(wait_polls=10**9) as server:  # never triggers by itself
        setup = scpi_setup(
            tmp_path,
            server.port,
            max_events=5,
            trigger_source="IN2",
            trigger_slope="falling",
            trigger_mode="auto",
            auto_trigger_after=0.01,
            number_of_samples_before_trigger=0,
        )
        control = run(setup, tmp_path)
    assert control.exit_code == 0, control.failures()
    cmds = server.commands[0]
    assert "ACQ:TRIG CH2_NE" in cmds
    assert cmds.count("ACQ:TRIG NOW") == 5
    assert "ACQ:TRIG:DLY 8192" in cmds
    assert_waveforms(load_events(control.run_dir), range(5))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("header", "expected a binary block starting with '#'"),
        ("length", "length field b'ABCDE' is not a number"),
        ("odd", "expected an even number"),
        ("short", "the board sent 100 samples per channel; data_length is 1000"),
        ("terminator", "not followed by a line end"),
    ],
)
def test_scpi_malformed_block_fails_the_run_cleanly(tmp_path, kind, message):
    with FakeScpiServer(malformed=kind, malformed_at=3) as server:
        control = run(scpi_setup(tmp_path, server.port, max_events=10), tmp_path)
    assert control.exit_code == 1
    text = failure_text(control)
    assert "malformed" in text
    assert message in text
    assert_waveforms(load_events(control.run_dir), range(3), shift=10)


def test_scpi_board_dropping_the_connection_mid_block(tmp_path):
    with FakeScpiServer(drop_after=4) as server:
        control = run(scpi_setup(tmp_path, server.port), tmp_path)
    assert control.exit_code == 1
    assert "closed the connection" in failure_text(control)
    assert_waveforms(load_events(control.run_dir), range(4), shift=10)


def test_scpi_board_that_does_not_answer(tmp_path):
    with FakeScpiServer(silent=True) as server:
        control = run(scpi_setup(tmp_path, server.port, timeout=0.5), tmp_path)
    assert control.exit_code == 1
    assert "did not answer 'ACQ:TRIG:STAT?' within 0.5 s" in failure_text(control)


def test_scpi_firmware_without_fill_query(tmp_path):
    with FakeScpiServer(fill_supported=False) as server:
        control = run(scpi_setup(tmp_path, server.port, max_events=3), tmp_path)
    assert control.exit_code == 1
    assert "scpi_fill_check: false" in failure_text(control)
    with FakeScpiServer(fill_supported=False) as server:
        setup = scpi_setup(tmp_path, server.port, max_events=3, scpi_fill_check=False)
        control = run(setup, tmp_path)
    assert control.exit_code == 0, control.failures()
    assert "ACQ:TRIG:FILL?" not in server.commands[0]


# ----- configuration -----

GOOD = {
    "ip": "rp-f0c38f.local",
    "sample_rate": 4,
    "trigger_level": 100,
    "number_of_samples_before_trigger": 100,
}


def test_validate_config_accepts_the_manual_example():
    assert redpitaya.validate_config(GOOD, DTYPE, 1000) == []
    assert redpitaya.validate_config({**GOOD, "protocol": "scpi"}, DTYPE, 16384) == []
    # keys of other workers (shared config files) are fine
    assert redpitaya.validate_config({**GOOD, "tau": 50, "noise": 5}, DTYPE, 1000) == []
    # nothing known about the sink: its checks are skipped
    assert redpitaya.validate_config(GOOD, None, None) == []


@pytest.mark.parametrize(
    ("change", "dtype", "length", "message"),
    [
        ({"sample_rate": 3}, DTYPE, 1000, "'sample_rate': 3 is not allowed; use one of 1, 4, 8"),
        ({"trigger_level": 4096}, DTYPE, 1000, "4096 is out of range; allowed from -4096 to 4095"),
        ({"trigger_level": -4097}, DTYPE, 1000, "allowed from -4096 to 4095"),
        ({"trigger_level": 1.5}, DTYPE, 1000, "'trigger_level': expected a whole number"),
        ({"trigger_slope": "up"}, DTYPE, 1000, "'up' is not allowed; use one of rising, falling"),
        ({"trigger_mode": "single"}, DTYPE, 1000, "use one of normal, auto"),
        ({"trigger_source": "IN3"}, DTYPE, 1000, "use one of IN1, IN2"),
        ({"number_of_samples_before_trigger": -1}, DTYPE, 1000, "-1 is out of range"),
        ({"number_of_samples_before_trigger": 1000}, DTYPE, 1000, "must be smaller than"),
        ({"set_size": 0}, DTYPE, 1000, "'set_size': 0 is out of range"),
        ({"negator_IN1": "yes"}, DTYPE, 1000, "'negator_IN1': expected true or false"),
        ({"protocol": "http"}, DTYPE, 1000, "use one of mcpha, scpi"),
        ({"port": 70000}, DTYPE, 1000, "'port': 70000 is out of range"),
        ({"ip": ""}, DTYPE, 1000, "'ip': expected a non-empty string"),
        ({"timeout": 0}, DTYPE, 1000, "'timeout': 0 is out of range"),
        ({"trigger_slop": "up"}, DTYPE, 1000, "unknown key (did you mean 'trigger_slope'?)"),
        ({}, {"IN1": "float32", "IN2": "int16"}, 1000, "got {IN1: float32, IN2: int16}"),
        ({}, {"IN2": "int16", "IN1": "int16"}, 1000, "{IN1: int16, IN2: int16} (in this order)"),
        ({}, {"IN1": "int16"}, 1000, "must have data_dtype {IN1: int16, IN2: int16}"),
        ({"protocol": "scpi"}, DTYPE, 16385, "the stock firmware holds 16384 samples"),
        ({}, DTYPE, redpitaya.MAXIMUM_SAMPLES, "including extra_samples = 100"),
    ],
)
def test_validate_config_rejects_values_outside_the_documented_ranges(
    change, dtype, length, message
):
    errors = redpitaya.validate_config({**GOOD, **change}, dtype, length)
    assert len(errors) == 1, errors
    assert message in errors[0]


@pytest.mark.parametrize("key", ["ip", "sample_rate", "trigger_level"])
def test_validate_config_reports_missing_required_keys(key):
    config = {k: v for k, v in GOOD.items() if k != key}
    errors = redpitaya.validate_config(config, DTYPE, 1000)
    assert len(errors) == 1
    assert errors[0].startswith(f"config key {key!r}: missing; add e.g. '{key}: ")


def test_validate_config_lists_every_problem():
    bad = {"sample_rate": 5, "trigger_level": 9999, "trigger_mode": "x"}
    errors = redpitaya.validate_config(bad, {"a": "f4"}, 10)
    assert len(errors) == 6  # ip and pre-trigger missing, 3 bad values, the dtype


def test_bad_config_is_a_setup_error_before_anything_starts(tmp_path):
    setup = rp_setup(tmp_path, 1, sample_rate=3, trigger_level=10000)
    with pytest.raises(SetupValidationError) as info:
        Control(setup, tmp_path, mode="stats")
    text = str(info.value)
    assert "worker 'rp'" in text
    assert "'sample_rate': 3 is not allowed" in text
    assert "'trigger_level': 10000 is out of range" in text
    assert not list(tmp_path.glob("**/run_*"))


def test_prebuilt_function_resolves_and_is_an_importer(tmp_path):
    assert function_template(redpitaya.waveform) == "Importer"
    assert redpitaya.waveform.validate_config is redpitaya.validate_config
    setup = parse_setup(rp_setup(tmp_path, 1001), tmp_path)
    assert setup.workers["rp"].function == "importers.redpitaya.waveform"
