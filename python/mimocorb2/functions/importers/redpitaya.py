"""RedPitaya STEMlab 125-14 importer: ``importers.redpitaya.waveform``.

Two board servers are supported, chosen with the config key ``protocol``:

- ``mcpha`` (default, TCP port 1001): the MCPHA-style oscilloscope server of the lab-course
  FPGA image (derived from Pavel Demin's ``red-pitaya-notes`` MCPHA project, with "start daq"
  for continuous acquisition). Waveforms arrive as interleaved little-endian int16 pairs,
  which is exactly the slot layout of the sink, so they are received straight into the ring.
- ``scpi`` (TCP port 5000): the SCPI server of the stock Red Pitaya OS. One trigger per
  round trip, so it suits low rates only.

:func:`validate_config` checks a configuration without touching the board.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mimocorb2.exceptions import BufferEndedError
from mimocorb2.functions.importers._common import (
    DeviceError,
    StopRequested,
    config_error,
    sleep_unless,
)
from mimocorb2.functions.importers._mcpha import McphaClient
from mimocorb2.functions.importers._rp_settings import (
    DEFAULT_EXTRA_SAMPLES,
    DEFAULT_PORTS,
    INPUTS,
    MAX_ADC_VALUE,
    MAXIMUM_SAMPLES,
    MIN_ADC_VALUE,
    PROTOCOLS,
    SAMPLE_RATES,
    SCPI_BUFFER_SAMPLES,
    SINK_DTYPE,
    TRIGGER_MODES,
    TRIGGER_SLOPES,
    Settings,
    parse_settings,
)
from mimocorb2.functions.importers._scpi import ScpiClient
from mimocorb2.mimo_worker import BufferIO
from mimocorb2.worker_templates import Importer, UfuncError

__all__ = [
    "DEFAULT_EXTRA_SAMPLES",
    "DEFAULT_PORTS",
    "INPUTS",
    "MAXIMUM_SAMPLES",
    "MAX_ADC_VALUE",
    "MIN_ADC_VALUE",
    "PROTOCOLS",
    "SAMPLE_RATES",
    "SCPI_BUFFER_SAMPLES",
    "SINK_DTYPE",
    "TRIGGER_MODES",
    "TRIGGER_SLOPES",
    "validate_config",
    "waveform",
]


def validate_config(
    config: Mapping[str, Any], sink_dtype: Any, data_length: int | None
) -> list[str]:
    """Checks a configuration of ``importers.redpitaya.waveform`` against the documented ranges.

    Nothing is sent to the board. Keys of other workers (from ``base_config`` or a shared
    configuration file) are ignored, except ones that look like misspelt keys of this
    importer.

    Args:
        config: The worker's effective configuration.
        sink_dtype: The sink buffer's data_dtype (numpy dtype or ``{field: type}`` mapping);
            None skips the layout check.
        data_length: The sink buffer's data_length; None skips the checks that need it.

    Returns:
        One message per problem (each names the key and what is allowed); empty if valid.
    """
    return parse_settings(config, sink_dtype, data_length)[1]


def waveform(buffer_io: BufferIO) -> None:
    """mimoCoRB2 Function: Use RedPitaya to acquire waveform data.

    Connects to a RedPitaya STEMlab 125-14, configures its oscilloscope and writes every
    triggered waveform (IN1 and IN2) as one event into the sink. With the MCPHA server
    (``protocol: mcpha``, the default) waveforms are requested in sets of ``set_size`` (the
    next set is requested while the current one arrives) and received straight into the
    ring's slots. With the stock SCPI server (``protocol: scpi``) each waveform is one
    capture: arm, poll the trigger state, read both channels.

    The metadata is stamped when a waveform is complete: ``counter`` counts waveforms from
    0, ``timestamp`` is the arrival time (epoch seconds), not the trigger time.

    A board that cannot be reached, stops answering, drops the connection or sends a
    malformed block ends the worker with a UfuncError naming the problem (after
    ``reconnect`` attempts, if configured); the sink is shut down, so the run drains and ends
    with a failure. Shutting the sink down from outside (end of the run) stops the importer
    within 0.2 s even while it waits for triggers.

    Type
        Importer

    Buffers
        sources
            0
        sinks
            1 with data_dtype: {'IN1': int16, 'IN2': int16} data_length decides the total
            number of samples (must be larger than number_of_samples_before_trigger and at
            most MAXIMUM_SAMPLES - extra_samples for mcpha, 16384 for scpi)
        observes
            0

    Configs
        ip : str
            IP address (or host name) of the RedPitaya device.
        sample_rate : int
            Number of samples (125MHz) averaged into one. Must be one of the values in
            SAMPLE_RATES (1, 4, 8, 16, 32, 54, 128, 256).
        negator_IN1 : bool, optional (default=False)
            If True, the IN1 input is negated (by the board for mcpha, in software for scpi).
        negator_IN2 : bool, optional (default=False)
            If True, the IN2 input is negated.
        trigger_slope : str, optional (default='rising')
            Slope of the trigger. Must be one of the values in TRIGGER_SLOPES (rising,
            falling).
        trigger_mode : str, optional (default='normal')
            Mode of the trigger. Must be one of the values in TRIGGER_MODES (normal, auto).
            With scpi, auto forces a trigger (``ACQ:TRIG NOW``) after ``auto_trigger_after``.
        trigger_level : int
            Level of the trigger in ADC counts. Must be between MIN_ADC_VALUE (-4096) and
            MAX_ADC_VALUE (4095).
        trigger_source : str, optional (default='IN1')
            Source of the trigger. Must be one of the values in INPUTS (IN1, IN2).
        number_of_samples_before_trigger : int
            Number of samples to acquire before the trigger. Must be an integer from 0 to
            data_length - 1. (The lab-course MCPHA server writes n - 1 into a 32-bit FPGA
            register, so 0 wraps around there: use at least 1 with such boards.)
        set_size : int, optional (default=100)
            Number of waveforms requested from the board at once (mcpha).
        protocol : str, optional (default='mcpha')
            ``mcpha`` for the MCPHA-style waveform server, ``scpi`` for the stock SCPI server.
        port : int, optional (default=1001 for mcpha, 5000 for scpi)
            TCP port of the server.
        extra_samples : int, optional (default=100)
            mcpha only: samples requested beyond data_length and discarded, because the board
            delivers the last few samples of a waveform incorrectly. 0 switches the workaround
            off.
        timeout : float, optional (default=5.0)
            Seconds to wait for the connection, for a reply (scpi) and for more bytes in the
            middle of a waveform.
        trigger_timeout : float or null, optional (default=60.0)
            Seconds to wait for the next waveform (a trigger) before giving up with an error;
            null waits as long as it takes (a vanished board is still noticed by TCP
            keep-alive probes within ~15 s).
        reconnect : int, optional (default=0)
            How often to reconnect (and reconfigure) after a lost connection or a timeout
            before failing. The waveform being received when the connection broke is lost.
        reconnect_delay : float, optional (default=1.0)
            Seconds to wait before reconnecting.
        max_events : int or null, optional (default=null)
            Stop after this many waveforms (null: until the run is stopped).
        volts_per_count : float, optional (default=1/8192)
            scpi only: converts trigger_level from ADC counts to the volts ``ACQ:TRIG:LEV``
            expects (1/8192 for the ±1 V jumper setting, 20/8192 for ±20 V).
        scpi_fill_check : bool, optional (default=True)
            scpi only: after the trigger, wait for ``ACQ:TRIG:FILL?`` to answer 1 (firmware
            2.0 and newer); set false for older firmware.
        auto_trigger_after : float, optional (default=0.1)
            scpi with trigger_mode auto: seconds without a trigger before one is forced.

    Examples:
        The source of a spectroscopy setup::

            Buffers:
              oscilloscope: {slot_count: 128, data_length: 1000,
                             data_dtype: {IN1: int16, IN2: int16}}
            Workers:
              rp:
                function: importers.redpitaya.waveform
                sinks: [oscilloscope]
                config: {ip: rp-f0c38f.local, sample_rate: 4, trigger_level: 100,
                         number_of_samples_before_trigger: 100}
    """
    importer = Importer(buffer_io)
    writer = importer.writer
    buffer = writer.buffer
    settings, errors = parse_settings(buffer_io.config, buffer.data_dtype, buffer.data_length)
    if settings is None:
        raise config_error(buffer_io, "importers.redpitaya.waveform", errors)
    writer.stamp = True
    log = importer.logger
    log.info(
        "worker '%s': reading %d-sample waveforms from the RedPitaya at %s",
        buffer_io.name,
        settings.data_length,
        settings.address,
    )
    try:
        received = _acquire(settings, writer, log, buffer_io.name)
    except DeviceError as e:
        buffer_io.end_sinks(failed=True)
        raise UfuncError(buffer_io.name, f"RedPitaya at {settings.address}: {e}") from e
    buffer_io.end_sinks(failed=False)
    log.info("worker '%s': %d waveforms received; done", buffer_io.name, received)


def _acquire(settings: Settings, writer: Any, log: Any, name: str) -> int:
    """Connects (again after failures, up to ``reconnect`` times) and streams waveforms.

    Returns:
        The number of waveforms written.

    Raises:
        DeviceError: When the board fails and no reconnection is left.
    """
    buffer = writer.buffer

    def stopped() -> bool:
        return buffer.flush_event_received

    client_type = McphaClient if settings.protocol == "mcpha" else ScpiClient
    done = 0
    failures = 0
    while True:
        client = client_type(settings, stopped, log)
        client.done = before = done
        try:
            client.open()
            return client.stream(writer, done)
        except (StopRequested, BufferEndedError):
            log.info("worker '%s': the sink was shut down; stopping the acquisition", name)
            return client.done
        except DeviceError as e:
            done = client.done
            if done > before:
                failures = 0  # the connection worked for a while: a fresh set of attempts
            if failures >= settings.reconnect:
                raise
            failures += 1
            log.warning(
                "worker '%s': RedPitaya at %s: %s; reconnecting in %g s (attempt %d of %d)",
                name,
                settings.address,
                e,
                settings.reconnect_delay,
                failures,
                settings.reconnect,
            )
        finally:
            client.close()
        try:
            sleep_unless(stopped, settings.reconnect_delay)
        except StopRequested:
            return done


waveform.validate_config = validate_config  # type: ignore[attr-defined]
