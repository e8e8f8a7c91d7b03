"""Small fakes shared by the tests: a settable clock, a recording sleep, a token provider."""

from __future__ import annotations

import time


class Clock:
    """Wall-clock time that tests move by hand (`clock.now += 30`)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


class FakeSleep:
    """Records every delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class NoAuth:
    """A token provider that never expires and never asks anyone."""

    expires_at = None

    async def token(self) -> str:
        return "t"

    def invalidate(self, rejected: str | None = None) -> None:
        """Nothing to forget."""
