"""Simulated RedPitaya for gamma spectroscopy: triggered detector pulses on IN1.

A scintillation detector (e.g. NaI(Tl) with a photomultiplier and a charge-sensitive
preamplifier) is read out by a RedPitaya in oscilloscope mode. Each event is one triggered
waveform of ``data_length`` samples on both inputs, as signed 14-bit ADC counts in int16:

- IN1 carries a pulse with a fast rise and an exponential tail (decay constant ``tau``) whose
  height is proportional to the energy deposited in the crystal, plus Gaussian noise;
  sometimes (``pileup_probability``) a second pulse follows within the window;
- IN2 carries noise only (nothing connected).

The deposited energies follow a simple model of a gamma spectrum, made of the source's
``lines`` (energy in keV, relative intensity): with probability ``photo_fraction`` a gamma
deposits its full energy (photo peak), otherwise it Compton-scatters once and leaves the
crystal, depositing an energy drawn from the Klein-Nishina distribution (continuum up to the
Compton edge); a fraction ``background_fraction`` of the events is an exponentially falling
background. The energy resolution is Gaussian with a relative FWHM ``resolution`` at 662 keV,
scaling with 1/sqrt(E). Pulses below ``trigger_level`` do not trigger and are not produced,
as on the board.

The model is ours and deliberately simple; it gives spectra with the familiar shape (peaks,
Compton edges, a threshold), not a detector simulation.
"""

import time

import numpy as np

from mimocorb2 import BufferIO, Importer

ELECTRON_MASS_KEV = 510.999
ADC_MIN, ADC_MAX = -8192, 8191  # 14-bit ADC


def compton_energy(rng: np.random.Generator, energy: float) -> float:
    """Energy (keV) deposited by one Compton scattering of a gamma of ``energy`` keV.

    The scattering angle is drawn from the Klein-Nishina cross section by rejection sampling.
    """
    alpha = energy / ELECTRON_MASS_KEV
    while True:
        cos_theta = rng.uniform(-1.0, 1.0)
        ratio = 1.0 / (1.0 + alpha * (1.0 - cos_theta))  # E'/E
        # Klein-Nishina: dsigma/dOmega ~ ratio^2 (ratio + 1/ratio - sin^2); maximum 2 at ratio 1
        weight = ratio**2 * (ratio + 1.0 / ratio - (1.0 - cos_theta**2))
        if rng.uniform(0.0, 2.0) < weight:
            return energy * (1.0 - ratio)


def parse_lines(lines: list) -> tuple[np.ndarray, np.ndarray]:
    """The ``lines`` config as arrays of energies (keV) and probabilities."""
    if not isinstance(lines, list) or not lines:
        raise ValueError(
            f"'lines' must be a non-empty list of [energy_keV, intensity], got {lines}"
        )
    try:
        table = np.array([[float(e), float(i)] for e, i in lines])
    except (TypeError, ValueError) as e:
        raise ValueError(f"'lines' must be a list of [energy_keV, intensity], got {lines}") from e
    if np.any(table <= 0):
        raise ValueError(f"line energies and intensities must be positive, got {lines}")
    return table[:, 0], table[:, 1] / table[:, 1].sum()


def simulate_source(buffer_io: BufferIO):
    """mimoCoRB2 Function: Simulated RedPitaya waveforms of a gamma-ray detector.

    Type
        Importer

    Buffers
        sources
            0
        sinks
            1 with data_dtype {IN1: int16, IN2: int16} (the layout of importers.redpitaya);
            data_length = samples per waveform
        observes
            0

    Configs
        number_of_events : int, optional (default=10000)
            Waveforms to produce; -1 runs until the run is stopped.
        rate : float, optional (default=0)
            Mean trigger rate in Hz (Poisson process); 0 produces events as fast as possible.
        trigger_level : int, optional (default=100)
            Smallest pulse height (ADC counts) that triggers.
        number_of_samples_before_trigger : int, optional (default=100)
            Where the pulse starts in the waveform.
        tau : float, optional (default=50)
            Decay constant of the pulses in samples.
        rise : float, optional (default=2)
            Rise constant of the pulses in samples.
        noise : float, optional (default=5)
            Gaussian noise (rms) in ADC counts.
        energy_conversion : [float, float], optional (default=[2.5, 0])
            Pulse height = energy_conversion[0] * E / keV + energy_conversion[1] (ADC counts).
        lines : list of [energy_keV, intensity]
            Gamma lines of the source (default: Cs-137, 662 keV).
        photo_fraction : float, optional (default=0.3)
            Probability that a gamma deposits its full energy.
        resolution : float, optional (default=0.07)
            Relative energy resolution (FWHM) at 662 keV.
        background_fraction : float, optional (default=0.1)
            Fraction of background events (exponential spectrum).
        background_mean_keV : float, optional (default=150)
            Mean energy of the background.
        pileup_probability : float, optional (default=0.02)
            Probability of a second pulse later in the window.
        seed : int, optional (default=None)
            Seed of the random numbers.
    """
    importer = Importer(buffer_io)
    event = importer.data_example.copy()
    if set(event.dtype.names or ()) != {"IN1", "IN2"}:
        raise ValueError(f"the sink must have the fields IN1 and IN2, got {event.dtype.names}")
    n_samples = event.size

    n_events = int(buffer_io.get("number_of_events", 10000))
    rate = float(buffer_io.get("rate", 0.0))
    trigger_level = float(buffer_io.get("trigger_level", 100))
    start = int(buffer_io.get("number_of_samples_before_trigger", 100))
    tau = float(buffer_io.get("tau", 50.0))
    rise = float(buffer_io.get("rise", 2.0))
    noise = float(buffer_io.get("noise", 5.0))
    gain, offset = (float(v) for v in buffer_io.get("energy_conversion", [2.5, 0.0]))
    energies, probabilities = parse_lines(buffer_io.get("lines", [[661.7, 1.0]]))
    photo_fraction = float(buffer_io.get("photo_fraction", 0.3))
    resolution = float(buffer_io.get("resolution", 0.07))
    background_fraction = float(buffer_io.get("background_fraction", 0.1))
    background_mean = float(buffer_io.get("background_mean_keV", 150.0))
    pileup = float(buffer_io.get("pileup_probability", 0.02))
    rng = np.random.default_rng(buffer_io.get("seed"))
    if not 0 <= start < n_samples:
        raise ValueError(
            f"number_of_samples_before_trigger={start} must lie inside the {n_samples} samples"
        )

    t = np.arange(n_samples - start, dtype=np.float64)
    shape = np.exp(-t / tau) - np.exp(-t / rise)
    shape /= shape.max()
    signal = np.empty(n_samples, dtype=np.float64)

    def deposited_energy() -> float:
        if rng.random() < background_fraction:
            energy = rng.exponential(background_mean)
        else:
            line = energies[rng.choice(len(energies), p=probabilities)]
            energy = line if rng.random() < photo_fraction else compton_energy(rng, line)
        sigma = resolution / 2.355 * np.sqrt(661.7 * max(energy, 1.0))
        return max(0.0, energy + sigma * rng.standard_normal())

    def fill_event() -> None:
        while True:  # pulses below the trigger level do not trigger the board
            height = gain * deposited_energy() + offset
            if height >= trigger_level:
                break
        signal[:] = rng.normal(0.0, noise, n_samples)
        signal[start:] += height * shape
        if rng.random() < pileup:
            k = int(rng.integers(start + 10, n_samples))
            signal[k:] += gain * deposited_energy() * shape[: n_samples - k]
        event["IN1"] = np.clip(np.rint(signal), ADC_MIN, ADC_MAX)
        event["IN2"] = np.rint(rng.normal(0.0, noise, n_samples))

    def events():
        i = 0
        next_time = time.monotonic()
        while n_events < 0 or i < n_events:
            fill_event()
            if rate > 0:
                next_time += rng.exponential(1.0 / rate)
                delay = next_time - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield event
            i += 1
        yield None

    importer(events)
