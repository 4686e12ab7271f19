"""Command line: ``mimocorb2 SETUP [-c MODE]`` runs an experiment from a setup file.

``mimocorb2 convert IN.mimo OUT.{h5,parquet,root,csv}`` and ``mimocorb2 recover FILE.h5`` are
the file tools of :mod:`mimocorb2._convert_cli`; ``mimocorb2 report RUN_DIR`` makes a run's
report again (:mod:`mimocorb2._report`). ``mimocorb2 SETUP --serve tcp://HOST:PORT`` serves a
run to ``mimocorb2 --connect tcp://HOST:PORT`` on another host; ``mimocorb2 keygen DIR`` writes
the keys for that (:mod:`mimocorb2._remote`). ``mimocorb2 schema`` prints the JSON Schema of
the setup file (:mod:`mimocorb2._schema`).
"""

from __future__ import annotations

import argparse
import sys

from mimocorb2 import __version__


def _has_display() -> bool:
    """Whether the default mode opens the GUI: a display a user sees, Qt and pyqtgraph."""
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
    if args_in and args_in[0] == "schema":  # the setup file's JSON Schema (mimocorb2._schema)
        from mimocorb2._schema import main as schema

        return schema(args_in[1:])
    if args_in and args_in[0] == "keygen":  # CURVE keys for --serve/--connect
        from mimocorb2._remote import keygen_main

        return keygen_main(args_in[1:])
    parser = argparse.ArgumentParser(
        prog="mimocorb2",
        description="Run a mimocorb2 data-acquisition setup (buffers and workers from YAML).",
    )
    parser.add_argument("setup_file", nargs="?", help="the setup YAML file")
    parser.add_argument(
        "-c",
        "--control",
        dest="mode",
        default=None,
        help="interfaces joined by '+': kbd, gui, stats (default: gui+stats with a display, "
        "else kbd+stats)",
    )
    parser.add_argument(
        "--serve",
        metavar="tcp://HOST:PORT",
        help="publish the run and take commands from 'mimocorb2 --connect' (PORT alone: "
        "loopback only; any other host needs --keys)",
    )
    parser.add_argument(
        "--connect",
        metavar="tcp://HOST:PORT",
        help="open the GUI or the terminal (-c gui|kbd) for a run served on another host",
    )
    parser.add_argument(
        "--keys", metavar="DIR", help="CURVE keys of 'mimocorb2 keygen DIR' for --serve/--connect"
    )
    parser.add_argument("--version", action="version", version=f"mimocorb2 {__version__}")
    args = parser.parse_args(argv)
    if args.connect is not None:
        if args.setup_file is not None or args.serve is not None:
            parser.error("--connect takes no setup file and no --serve")
        from mimocorb2._remote import connect_main

        return connect_main(args.connect, args.mode, args.keys)
    if args.setup_file is None:
        parser.error("the setup file is required (or --connect tcp://HOST:PORT)")
    if args.serve is not None:
        from mimocorb2._remote import RemoteError, check_serve

        try:
            check_serve(args.serve, args.keys, probe=True)  # before anything is created
        except RemoteError as e:
            print(f"mimocorb2: {e}", file=sys.stderr)
            return 2
    mode = args.mode or ("gui+stats" if _has_display() else "kbd+stats")

    from mimocorb2._control_types import CommandQueue
    from mimocorb2._faces import build_faces
    from mimocorb2.control import Control
    from mimocorb2.exceptions import MimocorbError

    try:
        commands = CommandQueue()  # the faces put their commands in, the control takes them
        faces = build_faces(mode, commands)
        control = Control.from_setup_file(args.setup_file, faces=faces, commands=commands)
    except (MimocorbError, ValueError, OSError) as e:
        print(f"mimocorb2: {e}", file=sys.stderr)
        return 2
    if args.serve is not None:
        from mimocorb2._remote import RemoteError

        try:
            where = control.serve(args.serve, args.keys)
        except RemoteError as e:
            print(f"mimocorb2: {e}", file=sys.stderr)
            return 2
        print(f"mimocorb2: serving the run on {where}", file=sys.stderr)
    print(f"mimocorb2: running {args.setup_file} in {mode} mode", file=sys.stderr)
    control()
    return control.exit_code


if __name__ == "__main__":
    sys.exit(main())
