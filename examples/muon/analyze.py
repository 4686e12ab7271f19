"""Offline analysis of a muon run: the muon lifetime and the up/down asymmetry.

Usage: ``python examples/muon/analyze.py [RUN_DIRECTORY]`` (default: the newest run in
``examples/muon/target``). It reads the decay times from the run's ``PulseParametersUp.h5``
and ``PulseParametersDown.h5`` (written by ``exporters.hdf5``, read with h5py; a run without
them, e.g. of a setup without the HDF5 workers, is read from ``PulseParametersUp.csv`` and
``PulseParametersDown.csv``) and the time window of the waveforms from ``setup.yaml``, then

- fits the decay times of both directions with an exponential plus a flat background
  (unbinned maximum likelihood, truncated to the measurable window) and prints the lifetime;
- prints the asymmetry (N_up - N_down) / (N_up + N_down) in bins of the decay time: with
  polarised muons in a magnetic field it oscillates with the spin precession frequency.

Needs numpy, PyYAML and, for the HDF5 files, h5py (``pip install "mimocorb2[hdf5]"``).
The HDF5 files are opened in SWMR mode, so a run can be analysed while it is still writing
them. :func:`lifetime_figure` is the setup's report hook: the run report (``report/`` in the
run directory) shows the lifetime fit with τ and its error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml

T_MIN_US = 0.1  # decays closer to the muon pulse merge with it
DIRECTIONS = ("PulseParametersUp", "PulseParametersDown")  # the buffers, and their files


def read_decay_times(path: Path) -> np.ndarray:
    """The ``decay_time`` column of a CSV file written by exporters.csv."""
    with open(path) as f:
        header = f.readline().strip().split(",")
    if "decay_time" not in header:
        raise ValueError(f"{path} has no decay_time column (columns: {header})")
    col = header.index("decay_time")
    data = np.loadtxt(path, delimiter=",", skiprows=1, usecols=[col], ndmin=1)
    return np.asarray(data, dtype=np.float64)


def read_decay_times_hdf5(path: Path) -> np.ndarray:
    """The ``decay_time`` field of an HDF5 file written by exporters.hdf5.

    The file holds the datasets ``data`` (the buffer's fields, shape ``(n, 1)`` here) and
    ``metadata`` (counter, timestamp, deadtime). Opened in SWMR mode it may still be being
    written: the complete events are the first ``len(metadata)`` rows.
    """
    import h5py  # only needed for runs with HDF5 files

    with h5py.File(path, "r", swmr=True) as f:
        data = f["data"]
        if "decay_time" not in (data.dtype.names or ()):
            raise ValueError(f"{path} has no decay_time field (fields: {data.dtype.names})")
        n = len(f["metadata"])
        values = data.fields("decay_time")[:n]
    return np.asarray(values, dtype=np.float64).reshape(-1)


def read_run(run_dir: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """Decay times of the upward and the downward decays, and the files they came from.

    The HDF5 files when the run has both, else the CSV files.
    """
    h5 = [run_dir / f"{name}.h5" for name in DIRECTIONS]
    if all(path.exists() for path in h5):
        up, down = (read_decay_times_hdf5(path) for path in h5)
        return up, down, ", ".join(path.name for path in h5)
    csv = [run_dir / f"{name}.csv" for name in DIRECTIONS]
    up, down = (read_decay_times(path) for path in csv)
    return up, down, ", ".join(path.name for path in csv)


def time_window(run_dir: Path) -> float:
    """Longest measurable decay time in µs, from the run's effective setup."""
    setup = yaml.safe_load((run_dir / "setup.yaml").read_text())
    config = setup["Workers"]["lifetime_filter"]["config"]
    source = setup["Workers"]["lifetime_filter"]["sources"][0]
    samples = setup["Buffers"][source]["data_length"]
    dt_us = float(config.get("sample_time_ns", 4.0)) / 1000.0
    return (samples - int(config.get("pre_trigger_samples", 200))) * dt_us


def fit_lifetime(t: np.ndarray, t_min: float, t_max: float) -> tuple[float, float, float]:
    """Unbinned maximum-likelihood fit of exponential + flat background on [t_min, t_max].

    Returns:
        (lifetime, its uncertainty, background fraction); the uncertainty is where the
        profile log-likelihood has dropped by 1/2.
    """
    t = t[(t >= t_min) & (t <= t_max)]
    if t.size < 10:
        raise ValueError(f"only {t.size} decays in [{t_min}, {t_max}] µs: too few to fit")
    flat = 1.0 / (t_max - t_min)

    def best_fraction(expo: np.ndarray) -> tuple[float, float]:
        """Background fraction maximising the (concave) log-likelihood; and that maximum."""
        lo, hi = 0.0, 0.9
        for _ in range(30):  # ternary search
            a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
            la = np.log((1 - a) * expo + a * flat).sum()
            lb = np.log((1 - b) * expo + b * flat).sum()
            lo, hi = (lo, b) if la > lb else (a, hi)
        f = (lo + hi) / 2
        return f, float(np.log((1 - f) * expo + f * flat).sum())

    taus = np.arange(0.5, 10.0, 0.01)
    profile = np.empty(taus.size)
    fractions = np.empty(taus.size)
    for k, tau in enumerate(taus):
        expo = np.exp(-t / tau) / (tau * (np.exp(-t_min / tau) - np.exp(-t_max / tau)))
        fractions[k], profile[k] = best_fraction(expo)
    best = int(np.argmax(profile))
    inside = taus[profile >= profile[best] - 0.5]
    return float(taus[best]), float(inside.max() - inside.min()) / 2, float(fractions[best])


def asymmetry_table(up: np.ndarray, down: np.ndarray, t_max: float, width: float = 0.5) -> str:
    """Text table of the up/down asymmetry in bins of the decay time."""
    edges = np.arange(0.0, t_max + 1e-9, width)
    n_up, _ = np.histogram(up, edges)
    n_down, _ = np.histogram(down, edges)
    lines = ["  t / µs       up   down   asymmetry"]
    for k in range(len(edges) - 1):
        total = n_up[k] + n_down[k]
        if total == 0:
            continue
        a = (n_up[k] - n_down[k]) / total
        error = np.sqrt((1 - a * a) / total)
        bar = "#" * round(10 * (a + 1))
        lines.append(
            f"  {edges[k]:4.1f}-{edges[k + 1]:4.1f}  {n_up[k]:5d}  {n_down[k]:5d}"
            f"  {a:+.2f} ± {error:.2f}  {bar}"
        )
    return "\n".join(lines)


def analyze(run_dir: Path) -> dict[str, float | str]:
    """Prints the analysis of one run and returns its numbers (and the files read)."""
    up, down, files = read_run(run_dir)
    t_max = time_window(run_dir)
    tau, error, background = fit_lifetime(np.concatenate([up, down]), T_MIN_US, t_max)
    print(f"run {run_dir} ({files})")
    print(f"decays: {up.size} up, {down.size} down; window {T_MIN_US} .. {t_max:.2f} µs")
    print(f"muon lifetime: {tau:.2f} ± {error:.2f} µs (background fraction {background:.2f})")
    print(asymmetry_table(up, down, t_max))
    return {"up": up.size, "down": down.size, "lifetime": tau, "error": error, "files": files}


def lifetime_figure(run_dir: Path, figure) -> str:
    """Report hook (``Options: report_hooks`` in spin_setup.yaml): the lifetime fit as a figure.

    Draws the decay times of both directions with the fitted exponential plus flat background
    and the lifetime with its uncertainty, into ``report/lifetime.png`` and ``.pdf``.

    Args:
        run_dir: The run directory.
        figure: The report's figure factory: ``figure(name, caption=...)`` returns a new
            matplotlib figure.

    Returns:
        The analysis as text (shown under the figure in ``report/index.html``).
    """
    up, down, files = read_run(run_dir)
    t_max = time_window(run_dir)
    t = np.concatenate([up, down])
    tau, error, background = fit_lifetime(t, T_MIN_US, t_max)
    inside = t[(t >= T_MIN_US) & (t <= t_max)]
    edges = np.linspace(T_MIN_US, t_max, 41)
    counts, _ = np.histogram(inside, edges)
    width = edges[1] - edges[0]
    x = np.linspace(T_MIN_US, t_max, 300)
    norm = tau * (np.exp(-T_MIN_US / tau) - np.exp(-t_max / tau))
    density = (1 - background) * np.exp(-x / tau) / norm + background / (t_max - T_MIN_US)
    fit_text = f"τ = {tau:.2f} ± {error:.2f} µs"

    fig = figure(
        "lifetime",
        caption=f"Muon lifetime: unbinned maximum-likelihood fit of {inside.size} decays "
        f"in {T_MIN_US} .. {t_max:.2f} µs ({files}), exponential plus flat background: "
        f"{fit_text}.",
    )
    ax = fig.subplots()
    centers = 0.5 * (edges[:-1] + edges[1:])
    ax.errorbar(
        centers,
        counts,
        yerr=np.sqrt(np.maximum(counts, 1)),
        fmt="o",
        ms=3,
        color="k",
        label=f"decays ({up.size} up, {down.size} down)",
    )
    ax.plot(
        x,
        inside.size * width * density,
        color="C3",
        label=f"fit: {fit_text}, background {background:.0%}",
    )
    ax.set_yscale("log")
    ax.set_xlabel("decay time / µs")
    ax.set_ylabel(f"decays per {width:.2f} µs")
    ax.set_title(f"Muon lifetime: {fit_text}")
    ax.grid(alpha=0.3)
    ax.legend()
    return (
        f"muon lifetime: {fit_text} (background fraction {background:.2f}, "
        f"{inside.size} decays)\n{asymmetry_table(up, down, t_max)}"
    )


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        run_dir = Path(argv[1])
    else:
        runs = sorted((Path(__file__).parent / "target").glob("run_*"))
        if not runs:
            print("no run found; give the run directory", file=sys.stderr)
            return 2
        run_dir = runs[-1]
    analyze(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
