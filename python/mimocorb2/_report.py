"""The run report: ``report/`` in the run directory, for keeping (and for the lab report).

At the end of every run the control calls :func:`report_after_run`, which writes into
``<run>/report/``, with matplotlib and no display:

- ``summary.png``/``.pdf``: outcome, run time, events per buffer and per worker, losses;
- ``rates.png``/``.pdf``: event rate and dead time of every buffer over the run, pauses shaded;
- ``fill_levels.png``/``.pdf``: the buffers' fill levels over the run;
- ``histograms_<buffer>.png``/``.pdf``: every histogram written by ``exporters.histogram``;
- the figures of the setup's report hooks (below);
- ``index.html``, showing all of them with the tables, the data flow and the effective setup;
  ``report.json``, the list of figures, notes and errors.

Everything is read from the run directory (``setup.yaml``, ``stats.csv``,
``run_summary.json``, ``Histograms_*/``), so ``mimocorb2 report RUN_DIR`` (:func:`main`)
makes the same report again later, e.g. after a hook was changed. ``Options: {report: false}``
in a setup turns the report off.

Report hooks add a setup's own figures::

    Options:
      report_hooks:
        - {file: analyze.py, function: lifetime_figure}

A hook is called as ``hook(run_dir, figure)``: ``run_dir`` is the run directory
(:class:`~pathlib.Path`), ``figure(name, caption="", **kwargs)`` returns a new
:class:`matplotlib.figure.Figure` (``kwargs`` go to it, e.g. ``figsize``) that the report saves
as ``<name>.png`` and ``<name>.pdf`` when the hook returns. A string returned by the hook is
shown under its figures in ``index.html``. A hook that raises is named in the report; the
other figures are made all the same.

Writing the report never changes the run's exit status: every error is caught, logged and
named on the summary figure, in ``index.html`` and on the terminal, and a report that takes
longer than :data:`REPORT_TIMEOUT_S` is abandoned.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mimocorb2._report_options import _HOOK_KEYS as _HOOK_KEYS
from mimocorb2._report_options import (
    MAX_HOOKS,
    REPORT_ENV,
    options_problems,
    report_enabled,
    resolve_hook,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mimocorb2._report_figures import RunStats
    from mimocorb2._setup import Setup

__all__ = [
    "REPORT_DIRNAME",
    "REPORT_ENV",
    "REPORT_TIMEOUT_S",
    "FigureFactory",
    "ReportError",
    "ReportResult",
    "main",
    "options_problems",
    "report_after_run",
    "report_enabled",
    "write_report",
]

REPORT_DIRNAME = "report"
"""The report's directory inside the run directory."""
REPORT_TIMEOUT_S = 120.0
"""Longest time the control waits for the report at the end of a run."""
PNG_DPI = 110
_log = logging.getLogger("mimocorb2.report")


class ReportError(Exception):
    """The directory is not a run directory (no ``setup.yaml``): no report can be made."""


@dataclass
class ReportResult:
    """What :func:`write_report` made.

    Attributes:
        directory: The report directory (``<run>/report``).
        figures: The figures' file stems (``summary``, ``rates`` ...), in page order.
        errors: One line per part that failed (a figure, a hook).
        notes: One line per part left out for a reason (e.g. no ``stats.csv``).
        seconds: Time taken.
    """

    directory: Path
    figures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def index(self) -> Path:
        """``index.html``."""
        return self.directory / "index.html"


# ----- making the report -----


class FigureFactory:
    """The ``figure`` argument of a report hook: new figures, saved when the hook returns.

    Args:
        hook: The hook's function name (in error messages).
    """

    def __init__(self, hook: str) -> None:
        """No figure yet."""
        self.hook = hook
        self.figures: list[tuple[str, Figure, str]] = []

    def __call__(self, name: str, caption: str = "", **kwargs: Any) -> Figure:
        """A new figure, saved as ``<name>.png`` and ``<name>.pdf`` in ``report/``.

        Args:
            name: File name without extension (letters, digits, ``_`` and ``-`` are kept).
            caption: Text under the figure in ``index.html``.
            **kwargs: Passed to :class:`matplotlib.figure.Figure` (default ``figsize=(8, 5)``,
                ``layout="constrained"``).

        Returns:
            The figure; draw on it with ``fig.subplots()`` (not with pyplot).
        """
        from matplotlib.figure import Figure

        kwargs.setdefault("figsize", (8, 5))
        kwargs.setdefault("layout", "constrained")
        fig = Figure(**kwargs)
        self.figures.append((str(name), fig, str(caption)))
        return fig


@dataclass
class _Entry:
    """One figure of the page."""

    stem: str
    section: str
    caption: str


def _stem(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:80] or "figure"
    stem, i = base, 2
    while stem in taken:
        stem, i = f"{base}_{i}", i + 1
    taken.add(stem)
    return stem


def _recorded_setup_dir(run_dir: Path) -> Path | None:
    """The setup directory recorded in ``report/report.json`` by an earlier report."""
    try:
        earlier = json.loads((run_dir / REPORT_DIRNAME / "report.json").read_text())
        value = earlier.get("setup_dir")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(value) if isinstance(value, str) and value else None


def _setup_dirs(run_dir: Path, setup: Mapping[str, Any], known: Path | None) -> list[Path]:
    """Where relative hook files are looked for: the known setup directory, else guesses.

    The guesses: the directory that the setup's relative ``target_directory`` implies
    (``<setup dir>/<target>/<run>``), then the current directory.
    """
    dirs: list[Path] = [] if known is None else [known]
    target = setup.get("target_directory", "target")
    if isinstance(target, str) and target.strip():
        parts = Path(target).parts
        if not Path(target).is_absolute() and not target.startswith("~") and ".." not in parts:
            guess = run_dir.parent
            for _ in parts:
                guess = guess.parent
            dirs.append(guess)
    dirs.append(Path.cwd())
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def _run_time(run_dir: Path, stats: RunStats | None) -> float | None:
    """Seconds the run took: from ``stats.csv``, else from ``mimocorb2.log`` and the summary."""
    if stats is not None and stats.duration > 0:
        return stats.duration
    try:
        start = None
        for line in (run_dir / "mimocorb2.log").read_text(errors="replace").splitlines():
            if " started " in line and line.rstrip().endswith("processes"):
                start = _dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                break
        end = (run_dir / "run_summary.json").stat().st_mtime
    except (OSError, ValueError):
        return None
    return max(0.0, end - start) if start is not None else None


class _Builder:
    """Makes the figures of one report into a directory, then its page."""

    def __init__(self, run_dir: Path, out: Path, setup: Mapping[str, Any], setup_text: str):
        self.run_dir = run_dir
        self.out = out
        self.setup = setup
        self.setup_text = setup_text
        self.entries: list[_Entry] = []
        self.taken: set[str] = {"summary", "index", "report"}  # the page's own names
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.hook_texts: dict[str, str] = {}
        self.summary: dict[str, Any] | None = None
        self.stats: RunStats | None = None
        workers = setup.get("Workers")
        self.workers: dict[str, Any] = dict(workers) if isinstance(workers, Mapping) else {}

    # -- helpers --

    def failed(self, part: str, error: BaseException) -> None:
        text = f"{part}: {type(error).__name__}: {error}"
        self.errors.append(text)
        _log.warning("report: %s\n%s", text, "".join(traceback.format_exception(error)))

    def save(self, fig: Figure, name: str, section: str, caption: str, own: bool = False) -> None:
        stem = name if own else _stem(name, self.taken)
        fig.savefig(self.out / f"{stem}.png", dpi=PNG_DPI)
        fig.set_layout_engine("none")  # keep the layout of the PNG: the PDF is laid out once
        fig.savefig(self.out / f"{stem}.pdf", metadata={"Creator": "mimocorb2"})
        self.entries.append(_Entry(stem, section, caption))

    def worker_list(self, key: str, function: str | None = None) -> dict[str, list[str]]:
        """Buffer → workers having it in ``key`` (``sources``/``observes``)."""
        out: dict[str, list[str]] = {}
        for name, w in self.workers.items():
            if not isinstance(w, Mapping) or (function and w.get("function") != function):
                continue
            if function and w.get("file"):
                continue  # a user function of the same name, not the prebuilt one
            for b in w.get(key) or ():
                out.setdefault(str(b), []).append(str(name))
        return out

    def config_map(self, worker: str, key: str) -> dict[str, str]:
        w = self.workers.get(worker)
        config = w.get("config") if isinstance(w, Mapping) else None
        value = config.get(key) if isinstance(config, Mapping) else None
        if not isinstance(value, Mapping):
            return {}
        return {str(k): str(v) for k, v in value.items() if v is not None and str(v)}

    # -- parts --

    def read_inputs(self) -> None:
        from mimocorb2._report_figures import read_stats

        path = self.run_dir / "run_summary.json"
        try:
            loaded = json.loads(path.read_text())
            if not isinstance(loaded, dict):
                raise ValueError("not a JSON object")
            self.summary = loaded
        except FileNotFoundError:
            self.notes.append("no run_summary.json: the run did not end normally")
        except (OSError, ValueError) as e:
            self.failed("run_summary.json", e)
        path = self.run_dir / "stats.csv"
        if not path.is_file():
            self.notes.append(
                "no stats.csv (the run was not in mode 'stats'): no rate and fill-level figures"
            )
            return
        try:
            self.stats = read_stats(path)
        except (OSError, ValueError) as e:
            self.failed("stats.csv", e)

    def rates_and_fill(self) -> None:
        from mimocorb2._report_figures import fill_figure, rate_figure

        if self.stats is None:
            return
        name = self.run_dir.name
        for part, make, caption in (
            (
                "rates",
                rate_figure,
                "Event rate and dead time of every buffer over the run (from stats.csv); "
                "grey: paused.",
            ),
            ("fill_levels", fill_figure, "Fill level of every buffer over the run."),
        ):
            try:
                self.save(make(self.stats, name), part, "Over the run", caption)
            except Exception as e:
                self.failed(f"figure {part}", e)

    def histograms(self) -> None:
        from mimocorb2._report_figures import histogram_figure, read_histograms

        exporters = self.worker_list("sources", "exporters.histogram")
        viewers = self.worker_list("observes", "visualizers.histogram")
        buffers = self.setup.get("Buffers")
        order = list(buffers) if isinstance(buffers, Mapping) else []

        def setup_order(path: Path) -> tuple[int, str]:
            name = path.name[len("Histograms_") :]
            return (order.index(name) if name in order else len(order), name)

        for directory in sorted(self.run_dir.glob("Histograms_*"), key=setup_order):
            if not (directory / "info.csv").is_file():
                continue
            buffer = directory.name[len("Histograms_") :]
            try:
                units: dict[str, str] = {}
                labels: dict[str, str] = {}
                for worker in viewers.get(buffer, []) + exporters.get(buffer, []):
                    units.update(self.config_map(worker, "units"))
                    labels.update(self.config_map(worker, "labels"))
                channels = read_histograms(directory)
                fig = histogram_figure(buffer, channels, units, labels, exporters.get(buffer, []))
                self.save(
                    fig,
                    f"histograms_{buffer}",
                    "Histograms",
                    f"{directory.name}/: one panel per field; entries, underflow and overflow "
                    "on each panel.",
                )
            except Exception as e:
                self.failed(f"figure histograms_{buffer}", e)

    def hooks(self, setup_dirs: list[Path]) -> None:
        options = self.setup.get("Options")
        hooks = options.get("report_hooks") if isinstance(options, Mapping) else None
        if not isinstance(hooks, list):
            return
        for i, entry in enumerate(hooks[:MAX_HOOKS]):
            label = f"report hook {i + 1}"
            try:
                name, func = resolve_hook(entry, setup_dirs)
                label = f"report hook {name}"
                factory = FigureFactory(name)
                text = func(self.run_dir, factory)
                for fig_name, fig, caption in factory.figures:
                    self.save(fig, fig_name, "Analysis", caption)
                if text:
                    self.hook_texts[name] = str(text)
            except Exception as e:
                self.failed(label, e)

    def summary_part(self) -> None:
        from mimocorb2._report_figures import summary_figure

        if self.summary is None:
            return
        try:
            fig = summary_figure(
                self.run_dir.name,
                self.summary,
                self.worker_list("sources"),
                self.stats,
                _run_time(self.run_dir, self.stats),
                notes=[f"report: {e}" for e in self.errors],
                partial=(self.run_dir / "PARTIAL_RESULTS.txt").is_file(),
            )
            self.save(fig, "summary", "Summary", "The run's books (run_summary.json).", own=True)
        except Exception as e:
            self.failed("figure summary", e)
        else:  # the summary leads the page
            self.entries.insert(0, self.entries.pop())

    # -- the page --

    def page(self, seconds: float) -> str:
        from mimocorb2 import __version__
        from mimocorb2._report_figures import (
            BUFFER_COLUMNS,
            WORKER_COLUMNS,
            buffer_table,
            outcome,
            worker_table,
        )

        esc = html.escape
        name = self.run_dir.name
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>Run report {esc(name)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>Run report: {esc(name)}</h1>",
        ]
        partial = self.run_dir / "PARTIAL_RESULTS.txt"
        if partial.is_file():
            text = partial.read_text(errors="replace")
            parts.append(f'<p class="bad">PARTIAL RESULTS: {esc(text)}</p>')
        if self.summary is not None:
            run_time = _run_time(self.run_dir, self.stats)
            took = f"run time {run_time:.1f} s; " if run_time is not None else ""
            parts.append(f"<p><b>{esc(took + outcome(self.summary, partial.is_file()))}</b></p>")
        made = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        parts.append(
            f'<p class="small">Made by mimocorb2 {esc(__version__)} on {made} in {seconds:.1f} s. '
            "Click a figure for its PDF. Make it again with <code>mimocorb2 report "
            f"{esc(str(self.run_dir))}</code>.</p>"
        )
        if self.errors:
            items = "".join(f"<li>{esc(e)}</li>" for e in self.errors)
            parts.append(
                f'<div class="bad"><b>Parts of this report failed:</b><ul>{items}</ul>'
                "(details in mimocorb2.log)</div>"
            )
        if self.notes:
            parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in self.notes) + "</ul>")
        if self.summary is not None:
            parts.append("<h2>Summary</h2>")
            parts.append(
                _html_table(
                    BUFFER_COLUMNS,
                    buffer_table(self.summary, self.worker_list("sources"), self.stats),
                    "buffers",
                )
            )
            parts.append(_html_table(WORKER_COLUMNS, worker_table(self.summary), "workers"))
            reasons = self.summary.get("reasons") or []
            if reasons:
                parts.append("<ul>" + "".join(f"<li>{esc(str(r))}</li>" for r in reasons) + "</ul>")
        section = None
        for e in self.entries:
            if e.section != section:
                section = e.section
                if section != "Summary":
                    parts.append(f"<h2>{esc(section)}</h2>")
            parts.append(
                f'<figure id="{e.stem}"><a href="{e.stem}.pdf"><img src="{e.stem}.png" '
                f'alt="{esc(e.stem)}"></a><figcaption>{esc(e.caption)} '
                f'<a href="{e.stem}.png">PNG</a> · <a href="{e.stem}.pdf">PDF</a>'
                "</figcaption></figure>"
            )
        for hook, text in self.hook_texts.items():
            parts.append(f"<h3>{esc(hook)}</h3><pre>{esc(text)}</pre>")
        if (self.run_dir / "data_flow.svg").is_file():
            parts.append('<h2>Data flow</h2><img src="../data_flow.svg" alt="data flow">')
        parts.append("<h2>Effective setup (setup.yaml)</h2>")
        parts.append(f"<pre>{esc(self.setup_text)}</pre>")
        files = sorted(
            p.name + ("/" if p.is_dir() else "")
            for p in self.run_dir.iterdir()
            if not p.name.startswith(".") and p.name != REPORT_DIRNAME
        )
        parts.append("<h2>Files of the run</h2><ul>")
        parts.extend(f'<li><a href="../{esc(f)}">{esc(f)}</a></li>' for f in files)
        parts.append("</ul></body></html>")
        return "\n".join(parts) + "\n"


_CSS = (
    "body{font-family:sans-serif;max-width:1000px;margin:1em auto;padding:0 1em;color:#222}"
    "img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}"
    "figcaption{font-size:90%;color:#444}pre{background:#f6f6f6;padding:.6em;overflow:auto;"
    "font-size:85%}table{border-collapse:collapse;margin:.5em 0;font-size:90%}"
    "td,th{border:1px solid #ccc;padding:.15em .5em;text-align:right}"
    "td:first-child{text-align:left}th{background:#eee}.small{font-size:85%;color:#555}"
    ".bad{color:#a00;border:1px solid #a00;padding:.4em}"
)


def _html_table(columns: tuple[str, ...], rows: list[list[str]], css_class: str) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{css_class}"><tr>{head}</tr>{body}</table>'


def write_report(
    run_dir: str | os.PathLike[str],
    setup_dir: str | os.PathLike[str] | None = None,
    cancelled: threading.Event | None = None,
) -> ReportResult:
    """Makes ``report/`` of a run directory from its files alone (replacing an older one).

    The figures are made in a temporary directory that replaces ``report/`` at the end, so
    the report is never half old, half new. A part that fails (a figure, a hook) is logged
    and listed in the result, on the summary figure and in ``index.html``; the rest is made.

    Args:
        run_dir: The run directory.
        setup_dir: Directory of the setup file, for relative ``report_hooks`` files (when
            None: recorded by an earlier report, or guessed from ``target_directory``).
        cancelled: When set before the end, nothing replaces ``report/``.

    Returns:
        What was made.

    Raises:
        ReportError: If ``run_dir`` is not a run directory.
    """
    t0 = time.monotonic()
    run = Path(run_dir).expanduser().resolve()
    setup_path = run / "setup.yaml"
    if not setup_path.is_file():
        raise ReportError(f"{run_dir} is not a run directory of mimocorb2 (no setup.yaml in it)")
    setup_text = setup_path.read_text(errors="replace")
    try:
        loaded = yaml.safe_load(setup_text)
    except yaml.YAMLError:
        loaded = None
    setup: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
    known = Path(setup_dir).resolve() if setup_dir else _recorded_setup_dir(run)
    dirs = _setup_dirs(run, setup, known)
    final = run / REPORT_DIRNAME
    out = run / f".{REPORT_DIRNAME}.{os.getpid()}.{threading.get_ident()}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    try:
        builder = _Builder(run, out, setup, setup_text)
        if not setup:
            builder.notes.append("setup.yaml could not be read: no units, no hooks")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            builder.read_inputs()
            builder.rates_and_fill()
            builder.histograms()
            builder.hooks(dirs)
            builder.summary_part()
        for w in caught:
            _log.info("report: %s: %s", w.category.__name__, w.message)
        seconds = time.monotonic() - t0
        (out / "index.html").write_text(builder.page(seconds), encoding="utf-8")
        record = {
            "run": run.name,
            "made": _dt.datetime.now().isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "setup_dir": str(known) if known else None,
            "figures": [
                {"name": e.stem, "section": e.section, "caption": e.caption}
                for e in builder.entries
            ],
            "hook_texts": builder.hook_texts,
            "errors": builder.errors,
            "notes": builder.notes,
        }
        (out / "report.json").write_text(json.dumps(record, indent=2) + "\n")
        if cancelled is not None and cancelled.is_set():
            raise TimeoutError("the report was abandoned")
        old = run / f".{REPORT_DIRNAME}.old.{os.getpid()}.{threading.get_ident()}"
        if final.exists():
            final.rename(old)
        out.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return ReportResult(
        directory=final,
        figures=[e.stem for e in builder.entries],
        errors=builder.errors,
        notes=builder.notes,
        seconds=time.monotonic() - t0,
    )


def report_after_run(
    run_dir: Path, setup: Setup, timeout: float = REPORT_TIMEOUT_S
) -> ReportResult | None:
    """The control's end of a run: writes the report unless the setup turned it off.

    Never raises and never waits longer than ``timeout``: the report is made in a thread;
    errors are logged and printed, and the run's exit status is not touched.

    Args:
        run_dir: The run directory (``run_summary.json`` and ``stats.csv`` written).
        setup: The run's setup (for ``Options`` and the setup directory).
        timeout: Seconds to wait for the report.

    Returns:
        What was made, or None (turned off, timed out or failed).
    """
    try:
        if not report_enabled(setup.raw):
            return None
        box: dict[str, Any] = {}
        cancelled = threading.Event()

        def make() -> None:
            try:
                box["result"] = write_report(run_dir, setup.setup_dir, cancelled)
            except BaseException as e:  # reported by the waiting thread
                box["error"] = e

        thread = threading.Thread(target=make, name="mimocorb2-report", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            cancelled.set()
            raise TimeoutError(
                f"not finished after {timeout:.0f} s, abandoned; make it with "
                f"'mimocorb2 report {run_dir}'"
            )
        if "error" in box:
            raise box["error"]
        result: ReportResult = box["result"]
    except Exception as e:
        _log.error("the run report failed: %s: %s", type(e).__name__, e, exc_info=e)
        print(f"mimocorb2: the run report failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    _announce(result)
    return result


def _announce(result: ReportResult) -> None:
    text = f"report: {result.index} ({len(result.figures)} figures, {result.seconds:.1f} s)" + (
        f"; {len(result.errors)} part(s) FAILED: " + "; ".join(result.errors)
    ) * bool(result.errors)
    (_log.warning if result.errors else _log.info)(text)
    print(f"mimocorb2: {text}", file=sys.stderr)


def main(argv: list[str]) -> int:
    """``mimocorb2 report RUN_DIR``: makes the report of a run again from its directory.

    Args:
        argv: The arguments after ``report``.

    Returns:
        0 when every part was made, 1 when a part failed, 2 when no report could be made.
    """
    parser = argparse.ArgumentParser(
        prog="mimocorb2 report",
        description="Make the report (figures and index.html in RUN_DIR/report) of a run again "
        "from its run directory.",
    )
    parser.add_argument("run_dir", help="the run directory (target/run_<date>_<time>)")
    parser.add_argument(
        "--setup-dir",
        default=None,
        help="directory of the setup file, for relative report_hooks files (default: "
        "recorded by the run's report, or guessed from its target_directory)",
    )
    args = parser.parse_args(argv)
    try:
        result = write_report(args.run_dir, args.setup_dir)
    except (ReportError, OSError) as e:
        print(f"mimocorb2 report: {e}", file=sys.stderr)
        return 2
    _announce(result)
    return 1 if result.errors else 0
