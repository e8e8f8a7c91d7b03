"""Prometheus durations (`90s`, `1h30m`): parse, format and scale."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")


def seconds(duration: str) -> float:
    """A Prometheus duration such as `10m` or `1h30m`, in seconds."""
    parts = _PART.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def duration(value: float) -> str:
    """`value` seconds as the shortest Prometheus duration (whole milliseconds)."""
    millis = round(value * 1000)
    if millis <= 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, millis = divmod(millis, size)
        if count:
            out += f"{count}{unit}"
    return out + (f"{millis}ms" if millis else "")


def scaled(value: str, factor: float) -> str:
    """`value` multiplied by `factor` (for a time-lapse copy of the rules)."""
    return duration(seconds(value) * factor) if value else value
