"""What a response's rate-limit headers say about the API key's rate limit (pure; `now` passed in).

Read from every token and emails answer, in the spellings gateways use::

    RateLimit-Limit: 110          X-RateLimit-Limit: 110        X-Rate-Limit-Limit: 110
    RateLimit-Remaining: 17       X-RateLimit-Remaining: 17     X-Rate-Limit-Remaining: 17
    RateLimit-Reset: 42           X-RateLimit-Reset: 1767225642 X-Rate-Limit-Reset: 42

and the IETF draft's one-header forms, ``RateLimit: limit=110, remaining=17, reset=42`` (draft 07)
and ``RateLimit: "default";r=17;t=42`` with ``RateLimit-Policy: "default";q=110;w=60`` (draft 08+).
`Reset` is seconds until the window resets, or a Unix time when it is larger than a year in
seconds (some gateways send milliseconds: a 13-digit value). Of a list (``110, 110;w=60``) the
first member counts.

The values come from the upstream and are untrusted: a header longer than `MAX_HEADER_CHARS` is
ignored, numbers are read by a bounded pattern (no float parsing of arbitrary text), and a
value that is not a plain non-negative number, or a reset more than a year away, is ignored on
its own without spoiling the others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MAX_HEADER_CHARS = 256
YEAR = 365 * 86400.0
MAX_COUNT = 10**9
# Prefixes of the three-header spellings, in the order they are preferred.
PREFIXES = ("RateLimit-", "X-RateLimit-", "X-Rate-Limit-")
_INTEGER = re.compile(r"[0-9]{1,10}")
_NUMBER = re.compile(r"([0-9]{1,13})(?:\.[0-9]{1,6})?")
# One `key=value` member or parameter of the structured forms (value: a number or a token).
_PARAM = re.compile(
    r"\s*([a-z][a-z0-9_-]{0,15})\s*=\s*([0-9.]{1,20}|\"[^\"]{0,64}\"|[a-z0-9_-]{1,64})"
)


@dataclass(frozen=True, slots=True)
class Announced:
    """A response's word on the key's rate limit; None where it said nothing usable."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None  # Unix time at which the window resets

    @property
    def empty(self) -> bool:
        """True when the response carried none of the three."""
        return self.limit is None and self.remaining is None and self.reset_at is None

    def merged(self, newer: Announced) -> Announced:
        """These values overwritten by what `newer` said (a field it left out keeps its value)."""
        return Announced(
            self.limit if newer.limit is None else newer.limit,
            self.remaining if newer.remaining is None else newer.remaining,
            self.reset_at if newer.reset_at is None else newer.reset_at,
        )


# An answer without rate-limit headers.
UNANNOUNCED = Announced()


def _first_member(value: str | None) -> str | None:
    """The first member of a header list, without its parameters; None for an oversized value."""
    if value is None or len(value) > MAX_HEADER_CHARS:
        return None
    return value.split(",", 1)[0].split(";", 1)[0].strip()


def count(value: str | None) -> int | None:
    """A non-negative request count (the limit or what remains of it), else None."""
    member = _first_member(value)
    if member is None or not _INTEGER.fullmatch(member):
        return None
    number = int(member)
    return number if number <= MAX_COUNT else None


def reset_time(value: str | None, now: float) -> float | None:
    """The Unix time a `Reset` value means: delta seconds, or a Unix time (s or ms), else None."""
    member = _first_member(value)
    if member is None:
        return None
    match = _NUMBER.fullmatch(member)
    if match is None:
        return None
    seconds = float(member)
    if seconds <= YEAR:
        return now + seconds
    if seconds >= 1e12:  # a Unix time in milliseconds
        seconds /= 1000.0
    # A Unix time. One more than a year ahead is garbage (or a clock gone wrong), not a window.
    return seconds if seconds <= now + YEAR else None


def _params(value: str | None) -> dict[str, str]:
    """`key=value` pairs of the first member of a structured header (at most a few)."""
    if value is None or len(value) > MAX_HEADER_CHARS:
        return {}
    first = value.split(",", 1)[0] if ";" in value else value
    pairs: dict[str, str] = {}
    for part in re.split(r"[;,]", first)[:8]:
        match = _PARAM.fullmatch(part)
        if match is not None:
            pairs.setdefault(match.group(1), match.group(2).strip('"'))
    return pairs


def _structured(headers: Mapping[str, str], now: float) -> Announced:
    """The one-header forms: `RateLimit: limit=, remaining=, reset=` or `r=;t=` (+ Policy `q=`)."""
    params = _params(headers.get("RateLimit"))
    if not params:
        return Announced()
    policy = _params(headers.get("RateLimit-Policy"))
    limit = count(params.get("limit") or policy.get("q"))
    remaining = count(params.get("remaining") or params.get("r"))
    reset = params.get("reset") or params.get("t")
    return Announced(limit, remaining, reset_time(reset, now) if reset is not None else None)


def read_announced(headers: Mapping[str, str], now: float) -> Announced:
    """What `headers` (looked up case-insensitively, as aiohttp's are) say of the rate limit."""
    limit = remaining = None
    reset_at: float | None = None
    for prefix in PREFIXES:
        if limit is None:
            limit = count(headers.get(prefix + "Limit"))
        if remaining is None:
            remaining = count(headers.get(prefix + "Remaining"))
        if reset_at is None:
            reset_at = reset_time(headers.get(prefix + "Reset"), now)
    found = Announced(limit, remaining, reset_at)
    if limit is None or remaining is None or reset_at is None:
        found = _structured(headers, now).merged(found)
    return found
