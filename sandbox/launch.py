"""The console script's entry point: a Ctrl-C while the command line is still loading ends in one line.

Why: ``sandbox.cli`` imports every command, and with them numpy, scapy and
the compiled accelerators: about half a second before ``main`` installs its
handlers (sandbox/signals.py).  An interrupt in that window would otherwise
end with the interpreter's traceback of whatever module was loading, which
is exactly what a user pressing Ctrl-C must never see.  So the entry point
imports the command line itself and turns that ``KeyboardInterrupt`` into
the same line and exit code (130) as an interrupt later on.  SIGTERM needs
nothing here: until ``main`` runs, its default action ends the process
without printing anything.
"""

from __future__ import annotations

import signal
import sys

#: As sandbox/signals.py's EXIT_INTERRUPTED (128 + SIGINT), not imported from it: nothing may load before the guard.
_INTERRUPTED = 128 + signal.SIGINT


def main() -> int:
    """``nic-sandbox``: load the command line under the guard, then run it."""
    try:
        from sandbox.cli import main as run
    except KeyboardInterrupt:
        print("nic-sandbox: interrupted", file=sys.stderr)
        return _INTERRUPTED
    return run()


if __name__ == "__main__":
    sys.exit(main())
