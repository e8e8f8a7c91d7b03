"""The gateway's rate limit (`--rate-limit N/PERIOD`): a fixed window of N requests per API key.

Like Alvaria's gateway, every answer (token and emails, errors included) carries the key's
rate limit, and a request past it is answered 429 with `Retry-After`::

    RateLimit-Limit: 5
    RateLimit-Remaining: 0
    RateLimit-Reset: 7          seconds until the window resets
    Retry-After: 7              on the 429 only

`--rate-limit-headers` picks the spelling: `ietf` (above), `x` (`X-RateLimit-*`, Reset in seconds)
or `x-epoch` (`X-RateLimit-*`, Reset as a Unix time), the three a client must read.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

HEADER_STYLES: Final = ("ietf", "x", "x-epoch")
# Windows of this many distinct keys at most; expired ones go first, then the oldest.
MAX_KEYS: Final = 10_000
_UNITS: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_SPEC: Final = re.compile(r"([0-9]{1,7})/([0-9]{0,6}(?:\.[0-9]{1,3})?)([smh]?)")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`requests` per `period` seconds, per API key."""

    requests: int
    period: float
    headers: str = "ietf"


def parse_rate_limit(text: str) -> tuple[int, float]:
    """`110/1m`, `5/10s`, `25/10` (seconds) or `100/h` as (requests, period in seconds)."""
    match = _SPEC.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected N/PERIOD such as 110/1m or 5/10s, got {text[:40]!r}")
    requests = int(match.group(1))
    period = float(match.group(2) or "1") * _UNITS[match.group(3)]
    if requests < 1 or not 0 < period <= 86400:
        raise ValueError("a rate limit needs at least 1 request per period of up to a day")
    return requests, period


class Gateway:
    """Fixed windows per API key, opened by the key's first request after the last one ended."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        if limit.headers not in HEADER_STYLES:
            raise ValueError(f"rate limit headers must be one of {', '.join(HEADER_STYLES)}")
        self.limit = limit
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window start, requests used)
        # Answers given per key: admitted, and refused with a 429 (for tests and the demo).
        self.admitted: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def admit(self, key: str) -> tuple[bool, dict[str, str]]:
        """Whether a request of `key` is within its rate limit, and the headers of the answer."""
        now = self._clock()
        start, used = self._windows.get(key, (-math.inf, 0))
        if now >= start + self.limit.period:
            start, used = now, 0
            self._make_room()
        allowed = used < self.limit.requests
        if allowed:
            used += 1
            self.admitted[key[:64]] += 1
        else:
            self.refused[key[:64]] += 1
        self._windows[key] = (start, used)
        reset_at = start + self.limit.period
        seconds = max(1, math.ceil(reset_at - now))
        headers = self._headers(self.limit.requests - used, seconds, math.ceil(reset_at))
        if not allowed:
            headers["Retry-After"] = str(seconds)
        return allowed, headers

    def _headers(self, remaining: int, seconds: int, reset_at: int) -> dict[str, str]:
        style = self.limit.headers
        prefix = "RateLimit-" if style == "ietf" else "X-RateLimit-"
        reset = reset_at if style == "x-epoch" else seconds
        return {
            f"{prefix}Limit": str(self.limit.requests),
            f"{prefix}Remaining": str(remaining),
            f"{prefix}Reset": str(reset),
        }

    def _make_room(self) -> None:
        if len(self._windows) < MAX_KEYS:
            return
        now, period = self._clock(), self.limit.period
        self._windows = {k: w for k, w in self._windows.items() if now < w[0] + period}
        while len(self._windows) >= MAX_KEYS:
            del self._windows[next(iter(self._windows))]
        if len(self.admitted) + len(self.refused) > 2 * MAX_KEYS:
            self.admitted.clear()
            self.refused.clear()
