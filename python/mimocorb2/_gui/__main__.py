"""Entry of the GUI process: ``python -m mimocorb2._gui`` (started by the control).

Reads the control's messages on stdin and writes its own on the original stdout; everything
else printed by Python or Qt goes to stderr (the control saves it in ``logs/gui.log``).
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    """Runs the window until it is closed; returns the exit code."""
    # Ctrl-C in the terminal is the control's business (it shuts the roots down).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    to_control = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    from_control = sys.stdin.buffer

    from mimocorb2._gui.link import Endpoint

    endpoint = Endpoint(from_control, to_control)
    try:
        setup = endpoint.wait_setup(timeout=30.0)
    except TimeoutError as e:
        print(f"mimocorb2 GUI: {e}", file=sys.stderr)
        return 1
    from mimocorb2._gui.window import run_window

    return run_window(endpoint, setup)


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # The reader thread may be blocked in stdin; a normal interpreter shutdown would wait for
    # its lock (a fatal error), so leave right away: the window is closed, nothing is pending.
    os._exit(code)
