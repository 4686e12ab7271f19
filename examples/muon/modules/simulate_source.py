"""Simulated 4-channel digitizer of the muon experiment (a stand-in for the PicoScope).

Four scintillator panels are stacked on top of each other::

    chA  ────────────   panel A (top)
    chB  ────────────   panel B
         ▓▓▓▓▓▓▓▓▓▓▓▓   copper absorber
    chC  ────────────   panel C
    chD  ────────────   panel D (bottom)
         ░░░░░░░░░░░░   floor (concrete)

Every event is one trigger of the digitizer: a cosmic muon crossing the upper panels. The
waveforms are photomultiplier signals in mV, negative pulses on a flat baseline with noise.

- Most muons pass through the whole stack: pulses in A, B, C and D at the trigger time.
- A fraction stops in the copper (pulses in A and B only). After an exponentially distributed
  time (mean lifetime 2.197 µs) it decays; the decay electron or positron leaves a second,
  smaller pulse either upwards (B, sometimes also A) or downwards (C, sometimes also D).
- A smaller fraction passes all panels and stops in the floor; its decay electron may come
  back up into D (and sometimes C).
- Muons are partly polarised; in a magnetic field the spin precesses, so the probability of
  an upward decay oscillates with the decay time (asymmetry and precession frequency are
  configurable; asymmetry 0 switches the effect off).
- Accidental pulses (uncorrelated background) appear at random times in random channels.

The data are produced by our own simple model; the numbers are plausible, not a detector
simulation.
"""

import time

import numpy as np

from mimocorb2 import BufferIO, Importer

CHANNELS = ("chA", "chB", "chC", "chD")


def pulse_shape(sample_time_ns: float, rise_ns: float, fall_ns: float) -> np.ndarray:
    """Returns a unit-height photomultiplier pulse (difference of exponentials)."""
    t = np.arange(0.0, 8.0 * fall_ns + sample_time_ns, sample_time_ns)
    shape = np.exp(-t / fall_ns) - np.exp(-t / rise_ns)
    return (shape / shape.max()).astype(np.float32)


def simulate_source(buffer_io: BufferIO):
    """mimoCoRB2 Function: Simulated 4-channel waveforms of the muon lifetime experiment.

    Type
        Importer

    Buffers
        sources
            0
        sinks
            1 with data_dtype {chA, chB, chC, chD} (float32, values in mV)
        observes
            0

    Configs
        number_of_events : int, optional (default=10000)
            Events to produce; -1 runs until the run is stopped.
        rate : float, optional (default=0)
            Mean trigger rate in Hz (Poisson process); 0 produces events as fast as possible.
        sample_time_ns : float, optional (default=4)
            Time between two samples.
        pre_trigger_samples : int, optional (default=200)
            Position of the trigger (first pulse) in the waveform.
        baseline : float, optional (default=0)
            Baseline of every channel in mV.
        noise : float, optional (default=2)
            Gaussian noise (rms) in mV.
        muon_height, electron_height : float, optional (default=300, 150)
            Mean pulse heights in mV (pulses are negative).
        height_spread : float, optional (default=0.25)
            Relative spread of the pulse heights.
        stop_probability : float, optional (default=0.15)
            Fraction of events with a muon stopped in the copper.
        stop_below_probability : float, optional (default=0.05)
            Fraction of events with a muon stopped below the panels.
        lifetime_us : float, optional (default=2.197)
            Mean muon lifetime.
        asymmetry, precession_frequency_MHz : float, optional (default=0.2, 0.5)
            Up/down asymmetry of the decays and spin precession frequency.
        accidental_probability : float, optional (default=0.02)
            Probability of an uncorrelated extra pulse in an event.
        seed : int, optional (default=None)
            Seed of the random numbers.
    """
    importer = Importer(buffer_io)
    event = importer.data_example.copy()
    n_samples = event.size
    missing = [c for c in CHANNELS if c not in (event.dtype.names or ())]
    if missing:
        raise ValueError(f"the sink needs the fields {', '.join(CHANNELS)}; missing {missing}")

    n_events = int(buffer_io.get("number_of_events", 10000))
    rate = float(buffer_io.get("rate", 0.0))
    dt_ns = float(buffer_io.get("sample_time_ns", 4.0))
    trigger = int(buffer_io.get("pre_trigger_samples", 200))
    baseline = float(buffer_io.get("baseline", 0.0))
    noise = float(buffer_io.get("noise", 2.0))
    muon_height = float(buffer_io.get("muon_height", 300.0))
    electron_height = float(buffer_io.get("electron_height", 150.0))
    spread = float(buffer_io.get("height_spread", 0.25))
    p_stop = float(buffer_io.get("stop_probability", 0.15))
    p_below = float(buffer_io.get("stop_below_probability", 0.05))
    lifetime_ns = 1000.0 * float(buffer_io.get("lifetime_us", 2.197))
    asymmetry = float(buffer_io.get("asymmetry", 0.2))
    omega = 2e-3 * np.pi * float(buffer_io.get("precession_frequency_MHz", 0.5))  # rad/ns
    p_accidental = float(buffer_io.get("accidental_probability", 0.02))
    rng = np.random.default_rng(buffer_io.get("seed"))
    if not 0 <= trigger < n_samples:
        raise ValueError(f"pre_trigger_samples={trigger} must lie inside the {n_samples} samples")

    shape = pulse_shape(dt_ns, rise_ns=2.0, fall_ns=8.0)
    waves = np.empty((len(CHANNELS), n_samples), dtype=np.float32)

    def add_pulse(channel: int, position: int, height: float) -> None:
        """Adds a negative pulse of ``height`` mV starting at sample ``position``."""
        if position >= n_samples:
            return
        n = min(shape.size, n_samples - position)
        waves[channel, position : position + n] -= height * shape[:n]

    def height(mean: float) -> float:
        return mean * max(0.2, 1.0 + spread * rng.standard_normal())

    def fill_event() -> None:
        waves[:] = rng.standard_normal(waves.shape, dtype=np.float32)
        waves[:] *= noise
        waves[:] += baseline
        jitter = rng.integers(-1, 2, size=len(CHANNELS))
        kind = rng.random()
        if kind < p_stop:  # stopped in the copper: A and B, then the decay
            for ch in (0, 1):
                add_pulse(ch, trigger + jitter[ch], height(muon_height))
            t = rng.exponential(lifetime_ns)
            up = rng.random() < 0.5 * (1.0 + asymmetry * np.cos(omega * t))
            pos = trigger + round(t / dt_ns)
            near, far = (1, 0) if up else (2, 3)
            add_pulse(near, pos, height(electron_height))
            if rng.random() < 0.5:
                add_pulse(far, pos + 1, height(electron_height))
        else:  # through-going muon: all four panels
            for ch in range(len(CHANNELS)):
                add_pulse(ch, trigger + jitter[ch], height(muon_height))
            if kind < p_stop + p_below and rng.random() < 0.5:  # decay below, back up into D
                pos = trigger + round(rng.exponential(lifetime_ns) / dt_ns)
                add_pulse(3, pos, height(electron_height))
                if rng.random() < 0.3:
                    add_pulse(2, pos + 1, height(electron_height))
        if rng.random() < p_accidental:
            add_pulse(
                int(rng.integers(len(CHANNELS))),
                int(rng.integers(n_samples)),
                height(electron_height),
            )
        for i, name in enumerate(CHANNELS):
            event[name] = waves[i]

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
