"""Small helpers shared by the tests: a settable clock, a recording sleep, a token provider,
ports, and waiting on a condition."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


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


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(condition: Callable[[], bool], within: float = 5.0, step: float = 0.01) -> None:
    """Return once `condition()` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(step)  # a bounded wait for the condition, not a timing assumption


async def wait_for(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float) -> T:
    """The first value of `probe` that is `ok`, asked every 0.1 s for at most `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {value!r})")
        await asyncio.sleep(0.1)
