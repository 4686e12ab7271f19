"""Command line tools for files: ``mimocorb2 convert`` and ``mimocorb2 recover``.

``mimocorb2 convert IN.mimo OUT.{h5,parquet,root,csv}`` converts a ``.mimo`` file with a
progress bar (:func:`mimocorb2.mimo_file.convert_to`); ``mimocorb2 recover FILE.h5``
makes an HDF5 file left by a crashed ``exporters.hdf5`` a plain HDF5 file
(:func:`mimocorb2._file_formats.recover_hdf5`).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from mimocorb2 import _file_formats as ff
from mimocorb2.mimo_file import convert_to

COMMANDS = ("convert", "recover")
"""First words of the command line handled here instead of running a setup."""

_BAR_WIDTH = 30
_REDRAW_S = 0.1


def _bytes(n: float) -> str:
    """``n`` bytes in B, kB, MB or GB (decimal units)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


class ProgressBar:
    """A one-line progress bar on a terminal (only the final line elsewhere).

    Args:
        label: Text before the bar.
        record_bytes: Bytes per event (for MB and MB/s).
        stream: Where to draw (default: standard error).
    """

    def __init__(self, label: str, record_bytes: int, stream: TextIO | None = None) -> None:
        """Starts the clock."""
        self.label = label
        self.record_bytes = record_bytes
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._drawn = 0.0
        self.line = ""

    def text(self, done: int, total: int) -> str:
        """The bar for ``done`` of ``total`` events."""
        fraction = done / total if total else 1.0
        filled = round(fraction * _BAR_WIDTH)
        elapsed = max(time.monotonic() - self.start, 1e-9)
        size = done * self.record_bytes
        return (
            f"{self.label} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {fraction:4.0%} "
            f"{done}/{total} events, {_bytes(size)}/{_bytes(total * self.record_bytes)}, "
            f"{_bytes(size / elapsed)}/s"
        )

    def __call__(self, done: int, total: int) -> None:
        """Redraws the bar (at most every 0.1 s on a terminal; at the end always)."""
        now = time.monotonic()
        if done < total and (not self.tty or now - self._drawn < _REDRAW_S):
            return
        self._drawn = now
        self.line = self.text(done, total)
        if self.tty:
            self.stream.write("\r" + self.line)
            if done >= total:
                self.stream.write("\n")
        elif done >= total:
            self.stream.write(self.line + "\n")
        self.stream.flush()


def main(argv: list[str]) -> int:
    """Runs ``convert`` or ``recover`` (``argv`` starts with the command); returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="mimocorb2",
        description="Convert .mimo files to files physicists open directly, or recover an "
        "HDF5 file left by a crash.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert",
        help="convert a .mimo file to HDF5, Parquet, ROOT or CSV",
        description="Convert IN.mimo to OUT.h5, OUT.parquet, OUT.root or OUT.csv (the format "
        "follows the ending of OUT unless --format is given). OUT must not exist.",
    )
    convert.add_argument("source", help="the .mimo file")
    convert.add_argument("target", help="the new file: .h5/.hdf5, .parquet, .root or .csv")
    convert.add_argument("--format", choices=sorted(ff.SUFFIXES), help="format of the target")
    convert.add_argument("--compression", help="codec of the target format (default: none)")
    convert.add_argument("--level", type=int, help="compression level")
    convert.add_argument(
        "--trust",
        action="store_true",
        help="read a file of the reference implementation (loads its pickled header)",
    )
    convert.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    recover = commands.add_parser(
        "recover",
        help="make an HDF5 file of a crashed exporters.hdf5 writer a plain HDF5 file",
        description="Clear the 'open for writing' mark of an HDF5 file whose writer died "
        "(like h5clear) and cut its datasets to the events that were flushed. Only for files "
        "whose writer is gone.",
    )
    recover.add_argument("file", help="the .h5 file")
    args = parser.parse_args(argv)
    try:
        if args.command == "recover":
            n = ff.recover_hdf5(args.file)
            print(f"mimocorb2: {args.file}: {n} events; it opens as a plain HDF5 file now")
            return 0
        fmt = args.format or ff.format_of(args.target)
        bar = None
        if not args.quiet:
            from mimocorb2.mimo_file import MimoReader

            with MimoReader(args.source, allow_truncated=True, trust=args.trust) as r:
                size = r.record_size
            bar = ProgressBar(f"{args.source} -> {args.target}", size)
        n = convert_to(
            args.source,
            args.target,
            fmt,
            trust=args.trust,
            progress=bar,
            compression=args.compression,
            compression_level=args.level,
        )
    except FileExistsError as e:
        print(
            f"mimocorb2 {args.command}: {e.filename} exists; give a new file name or remove it",
            file=sys.stderr,
        )
        return 2
    except (OSError, ValueError, ImportError) as e:
        print(f"mimocorb2 {args.command}: {e}", file=sys.stderr)
        return 2
    if args.command == "convert" and args.quiet:
        print(f"mimocorb2: wrote {n} events to {args.target}")
    return 0
