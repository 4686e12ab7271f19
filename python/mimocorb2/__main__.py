"""Command line: ``mimocorb2 SETUP [-c MODE]`` runs an experiment from a setup file.

``mimocorb2 convert IN.mimo OUT.{h5,parquet,root,csv}`` and ``mimocorb2 recover FILE.h5`` are
the file tools of :mod:`mimocorb2._convert_cli`; ``mimocorb2 report RUN_DIR`` makes a run's
report again (:mod:`mimocorb2._report`).
"""

from __future__ import annotations

import argparse
import sys

from mimocorb2 import __version__


def _has_display() -> bool:
    """Whether the default mode opens the GUI: a display a user sees, and PyQt5/pyqtgraph."""
    from mimocorb2._gui import unavailable_reason

    return unavailable_reason(need_real_display=True) is None


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the process exit code (non-zero when a worker failed)."""
    args_in = sys.argv[1:] if argv is None else argv
    if args_in and args_in[0] in ("convert", "recover"):  # file tools (mimocorb2._convert_cli)
        from mimocorb2._convert_cli import main as file_tools

        return file_tools(args_in)
    if args_in and args_in[0] == "report":  # the run report again (mimocorb2._report)
        from mimocorb2._report import main as report

        return report(args_in[1:])
    parser = argparse.ArgumentParser(
        prog="mimocorb2",
        description="Run a mimocorb2 data-acquisition setup (buffers and workers from YAML).",
    )
    parser.add_argument("setup_file", help="the setup YAML file")
    parser.add_argument(
        "-c",
        "--control",
        dest="mode",
        default=None,
        help="interfaces joined by '+': kbd, gui, stats (default: gui+stats with a display, "
        "else kbd+stats)",
    )
    parser.add_argument("--version", action="version", version=f"mimocorb2 {__version__}")
    args = parser.parse_args(argv)
    mode = args.mode or ("gui+stats" if _has_display() else "kbd+stats")

    from mimocorb2.control import Control
    from mimocorb2.exceptions import MimocorbError

    try:
        control = Control.from_setup_file(args.setup_file, mode)
    except (MimocorbError, ValueError, OSError) as e:
        print(f"mimocorb2: {e}", file=sys.stderr)
        return 2
    print(f"mimocorb2: running {args.setup_file} in {mode} mode", file=sys.stderr)
    control()
    return control.exit_code


if __name__ == "__main__":
    sys.exit(main())
