"""Offline analysis of a spectroscopy run: the photopeaks of the pulse-height spectrum.

Usage: ``python examples/redpitaya-spectroscopy/analyze.py [RUN_DIRECTORY] [--root]``
(default: the newest run in ``examples/redpitaya-spectroscopy/target``). It reads the
spectrum that ``exporters.histogram`` wrote (``Histograms_PulseParameters/peak_heights.npy``
and ``info.csv``) or, with ``--root``, histograms the ``peak_heights`` of every pulse in the
ROOT file ``spectrum.root`` that ``exporters.root`` wrote (read with uproot). It finds the
photopeaks and fits each with a Gaussian on a straight background, then prints position,
width (FWHM) and resolution of every peak. With the simulated source the run's
``setup.yaml`` holds the energy calibration (``energy_conversion``: ADC counts per keV and
offset), and the energies are printed too.

:func:`spectrum_figure` is the setup's report hook: the run report (``report/`` in the run
directory) shows the spectrum with the photopeaks marked.

Needs numpy, scipy and PyYAML (all installed with mimocorb2); ``--root`` needs uproot
(``pip install "mimocorb2[root]"``).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

HISTOGRAMS = "Histograms_PulseParameters"
ROOT_FILE = "spectrum.root"  # exporters.root: TTree 'events', one entry per pulse
FIELD = "peak_heights"
DEFAULT_BINS = (0.0, 4096.0, 256)  # ADC range of the board, when the run has no info.csv
MAX_RESOLUTION = 0.2  # FWHM / position: wider bumps are Compton edges, not photopeaks


def read_spectrum(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin edges of the pulse heights, as exporters.histogram wrote them."""
    directory = run_dir / HISTOGRAMS
    with open(directory / "info.csv", newline="") as f:
        info = {row["Channel"]: row for row in csv.DictReader(f)}
    row = info[FIELD]
    counts = np.load(directory / f"{FIELD}.npy").astype(np.float64)
    edges = np.linspace(float(row["Min"]), float(row["Max"]), int(row["NBins"]) + 1)
    return counts, edges


def read_root_spectrum(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin edges of the pulse heights in the run's ROOT file (needs uproot).

    ``spectrum.root`` holds the TTree ``events`` with one entry per pulse: the branches
    ``counter``, ``timestamp``, ``deadtime``, ``position``, ``peak_heights`` and
    ``prominences``. The spectrum is the histogram of ``peak_heights``, in the bins of the
    histogram exporter (``info.csv``) when the run has them, so both spectra agree.
    """
    import uproot  # only needed for the ROOT file

    with uproot.open(run_dir / ROOT_FILE) as f:
        heights = f["events"][FIELD].array(library="np")
    try:
        _, edges = read_spectrum(run_dir)
    except FileNotFoundError:
        lo, hi, nbins = DEFAULT_BINS
        edges = np.linspace(lo, hi, nbins + 1)
    counts, _ = np.histogram(heights, edges)
    return counts.astype(np.float64), edges


def calibration(run_dir: Path) -> tuple[float, float] | None:
    """(ADC counts per keV, offset) of the run's source, or None (a real board: uncalibrated)."""
    setup = yaml.safe_load((run_dir / "setup.yaml").read_text())
    config = setup.get("Workers", {}).get("input", {}).get("config") or {}
    conversion = config.get("energy_conversion")
    if not isinstance(conversion, list) or len(conversion) != 2:
        return None
    return float(conversion[0]), float(conversion[1])


def _gauss_line(x: np.ndarray, amplitude: float, mu: float, sigma: float, a: float, b: float):
    return amplitude * np.exp(-0.5 * ((x - mu) / sigma) ** 2) + a + b * (x - mu)


def find_photopeaks(counts: np.ndarray, edges: np.ndarray) -> list[dict[str, Any]]:
    """The photopeaks of a spectrum, each fitted with a Gaussian on a straight background.

    Candidates are the prominent maxima of the lightly smoothed spectrum; a candidate is a
    photopeak when the fit converges, its centre stays in the fit window, it stands out of
    the background by at least 5 standard deviations and its FWHM is below
    ``MAX_RESOLUTION`` of its position.

    Returns:
        Per peak ``position``, ``error`` (of the position), ``fwhm``, ``counts`` (in the
        Gaussian) and ``amplitude``, in ADC counts, and ``fit`` (the parameters of
        :func:`_gauss_line` and the window), ordered by position.
    """
    from scipy.optimize import curve_fit
    from scipy.signal import find_peaks

    width = edges[1] - edges[0]
    centers = 0.5 * (edges[:-1] + edges[1:])
    smooth = np.convolve(counts, np.array([1, 2, 3, 2, 1]) / 9, mode="same")
    candidates, props = find_peaks(
        smooth, prominence=max(5.0, 0.15 * smooth.max()), width=1.5, distance=4
    )
    peaks = []
    for k, i in enumerate(candidates):
        sigma0 = max(props["widths"][k] * width / 2.355, width)
        mask = np.abs(centers - centers[i]) <= max(3 * sigma0, 4 * width)
        x, y = centers[mask], counts[mask]
        if x.size < 6:
            continue
        background = float(min(y[0], y[-1]))
        start = (max(y.max() - background, 1.0), centers[i], sigma0, background, 0.0)
        try:
            p, cov = curve_fit(_gauss_line, x, y, p0=start, sigma=np.sqrt(np.maximum(y, 1)))
        except (RuntimeError, ValueError):
            continue
        amplitude, mu, sigma = p[0], p[1], abs(p[2])
        base = max(p[3], 1.0)
        if not (x[0] < mu < x[-1] and amplitude > 5 * np.sqrt(base) and np.isfinite(cov).all()):
            continue
        fwhm = 2.355 * sigma
        if fwhm > MAX_RESOLUTION * mu:
            continue
        peaks.append(
            {
                "position": float(mu),
                "error": float(np.sqrt(cov[1, 1])),
                "fwhm": float(fwhm),
                "amplitude": float(amplitude),
                "counts": float(amplitude * sigma * np.sqrt(2 * np.pi) / width),
                "fit": (*(float(v) for v in p), float(x[0]), float(x[-1])),
            }
        )
    return sorted(peaks, key=lambda q: q["position"])


def peak_table(peaks: list[dict[str, Any]], cal: tuple[float, float] | None) -> str:
    """Text table of the photopeaks (energies with a calibration)."""
    head = "  position / ADC    FWHM / ADC   resolution   counts"
    lines = [head + ("   energy / keV" if cal else "")]
    for q in peaks:
        line = (
            f"  {q['position']:7.1f} ± {q['error']:4.1f}   {q['fwhm']:9.1f}   "
            f"{q['fwhm'] / q['position']:9.1%}   {q['counts']:6.0f}"
        )
        if cal:
            line += f"   {(q['position'] - cal[1]) / cal[0]:11.1f}"
        lines.append(line)
    return "\n".join(lines)


def spectrum_figure(run_dir: Path, figure) -> str:
    """Report hook (``Options: report_hooks`` in setup.yaml): the spectrum, photopeaks marked.

    Args:
        run_dir: The run directory.
        figure: The report's figure factory: ``figure(name, caption=...)`` returns a new
            matplotlib figure.

    Returns:
        The photopeak table (shown under the figure in ``report/index.html``).
    """
    counts, edges = read_spectrum(run_dir)
    peaks = find_photopeaks(counts, edges)
    cal = calibration(run_dir)
    fig = figure(
        "spectrum",
        caption=f"Pulse-height spectrum ({HISTOGRAMS}/{FIELD}.npy) with the {len(peaks)} "
        "photopeaks found, each fitted with a Gaussian on a straight background.",
        figsize=(9, 5),
    )
    ax = fig.subplots()
    ax.stairs(counts, edges, color="k", lw=1, label=f"{int(counts.sum())} pulses")
    top = counts.max() if counts.size else 1.0
    for n, q in enumerate(peaks):
        label = f"{q['position']:.0f} ADC"
        if cal:
            label += f" = {(q['position'] - cal[1]) / cal[0]:.0f} keV"
        label += f", FWHM {q['fwhm'] / q['position']:.1%}"
        *params, low, high = q["fit"]
        x = np.linspace(low, high, 100)
        ax.plot(x, _gauss_line(x, *params), color=f"C{n + 1}", lw=2)
        ax.axvline(q["position"], color=f"C{n + 1}", ls="--", lw=1, label=label)
        ax.annotate(
            f"{n + 1}",
            (q["position"], top * 1.04),
            xytext=(4, 0),
            textcoords="offset points",
            color=f"C{n + 1}",
            fontweight="bold",
        )
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, top * 1.1 + 1)
    ax.set_xlabel("pulse height / ADC counts")
    ax.set_ylabel(f"pulses per {edges[1] - edges[0]:g} ADC counts")
    ax.set_title("Energy spectrum with the photopeaks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if cal:
        energy = ax.secondary_xaxis(
            "top", functions=(lambda a: (a - cal[1]) / cal[0], lambda e: e * cal[0] + cal[1])
        )
        energy.set_xlabel("energy / keV (calibration of the simulation)")
    return f"{len(peaks)} photopeaks\n{peak_table(peaks, cal)}"


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if a != "--root"]
    use_root = len(args) < len(argv) - 1
    if args:
        run_dir = Path(args[0])
    else:
        runs = sorted((Path(__file__).parent / "target").glob("run_*"))
        if not runs:
            print("no run found; give the run directory", file=sys.stderr)
            return 2
        run_dir = runs[-1]
    if use_root:
        counts, edges = read_root_spectrum(run_dir)
        source = ROOT_FILE
    else:
        counts, edges = read_spectrum(run_dir)
        source = f"{HISTOGRAMS}/{FIELD}.npy"
    print(f"run {run_dir}: {int(counts.sum())} pulses in range ({source})")
    print(peak_table(find_photopeaks(counts, edges), calibration(run_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
