"""What each signal does: the daemon stops on SIGTERM/SIGINT/SIGQUIT, reloads on SIGHUP, logs on SIGUSR1,
and `--once` interrupted exits 128 + the signal number, its output never half-printed.

| signal | daemon | `--once` |
|---|---|---|
| SIGTERM, SIGINT | clean stop, exit 0 | stop, print nothing, exit 143 / 130 |
| SIGQUIT | clean stop, exit 0 (nginx's "graceful quit") | default (core dump) |
| SIGHUP | reloads the configuration (`exporter.fleet.reload`), keeps running | default |
| SIGUSR1 | logs one status line per organisation, keeps running | default |
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator, Mapping

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


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
            loop.remove_signal_handler(sig)


@contextlib.contextmanager
def handle_signals(handlers: Mapping[signal.Signals, Callable[[], None]]) -> Iterator[None]:
    """Install loop signal handlers for the block; where unsupported, do nothing."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig, handler in handlers.items():
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
