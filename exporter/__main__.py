"""`python -m exporter` runs the exporter; `main` is also the console script's entry point.

It is kept free of imports beyond the standard library's `signal` so that the first thing the
process does is ignore SIGHUP and SIGUSR1: their default action kills, and importing the rest
of the exporter takes a while. The daemon handles both once it runs (`exporter.app.signals`);
`--once`, `--check-connection` and `--check-config` keep ignoring them.
"""

import signal
import sys

for _signal in (signal.SIGHUP, signal.SIGUSR1):
    signal.signal(_signal, signal.SIG_IGN)


def main() -> int:
    """Run the command line (`exporter.app.main.main`) with the signals above already ignored."""
    from exporter.app.main import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
