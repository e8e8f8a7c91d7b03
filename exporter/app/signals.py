"""What each signal does: the daemon stops on SIGTERM/SIGINT/SIGQUIT, reloads on SIGHUP, logs on SIGUSR1,
and `--once` interrupted exits 128 + the signal number, its output never half-printed.

| signal | daemon | `--once` |
|---|---|---|
| SIGTERM, SIGINT | clean stop, exit 0 | stop, print nothing, exit 143 / 130 |
| SIGQUIT | clean stop, exit 0 (nginx's "graceful quit") | default (core dump) |
| SIGHUP | reloads the configuration (`exporter.fleet.reload`), keeps running | ignored |
| SIGUSR1 | logs one status line per organisation, keeps running | ignored |

SIGHUP and SIGUSR1 kill a process by default. They are ignored from the process's first
instant (`exporter.__main__`, and again by `ignore_until_handled` for callers of
`exporter.app.main.main`), so one sent during start-up, `--once`, `--check-connection` or the
daemon's shutdown does nothing; the daemon handles them while it serves. Handlers installed for
a block restore what was there before, never the default.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
# Signals whose default action kills, that only the daemon has a use for.
IGNORED_UNTIL_HANDLED = (signal.SIGHUP, signal.SIGUSR1)


def ignore_until_handled() -> None:
    """Ignore SIGHUP and SIGUSR1 until a daemon installs its handlers (idempotent)."""
    for sig in IGNORED_UNTIL_HANDLED:
        with contextlib.suppress(ValueError, OSError):  # not the main thread: nothing to do
            signal.signal(sig, signal.SIG_IGN)


def _restore(loop: asyncio.AbstractEventLoop, sig: signal.Signals, previous: _Handler) -> None:
    """Remove the loop's handler of `sig` and put back what was there before it (asyncio's own
    removal would leave the default, which for SIGHUP kills)."""
    loop.remove_signal_handler(sig)
    if previous is not None:  # None: installed from outside Python, nothing to put back
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(sig, previous)


class Interrupted(Exception):
    """`--once` was stopped by a signal; the exit code is 128 + its number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def cancel_on_signals(
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[None]:
    """Turn these signals into cancelling the current task, raised as `Interrupted`.

    Inside the block a signal never interrupts synchronous code (a `write` of the output runs
    to its end); the task is cancelled at its next `await`.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if not received and task is not None:
            received.append(signum)
            task.cancel()

    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    except asyncio.CancelledError:
        if not received:
            raise
        if task is not None:
            task.uncancel()
        raise Interrupted(received[0]) from None
    finally:
        for sig in signals:
            _restore(loop, sig, previous[sig])


@contextlib.contextmanager
def handle_signals(handlers: Mapping[signal.Signals, Callable[[], None]]) -> Iterator[None]:
    """Install loop signal handlers for the block; where unsupported, do nothing."""
    loop = asyncio.get_running_loop()
    installed: dict[signal.Signals, _Handler] = {}
    for sig, handler in handlers.items():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, handler)
            installed[sig] = previous
    try:
        yield
    finally:
        for sig, previous in installed.items():
            _restore(loop, sig, previous)
