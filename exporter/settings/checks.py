"""Checks across sources: unknown ``ALVARIA_*`` variables, and values that would hammer the API."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from exporter.settings.table import FILE_KEYS, SPECS

# Variables of the same prefix that are not settings of the exporter.
_FOREIGN_PREFIXES = ("ALVARIA_SIM_",)  # the simulator's own settings
_KNOWN = {spec.env for spec in SPECS} | {f"ALVARIA_{key.upper()}" for key in FILE_KEYS}

MIN_POLL_INTERVAL = 1.0  # seconds; each poll is at least one API request per organisation
DEADLINE_FACTOR = 3.0  # a poll is abandoned after this many poll intervals (the poller's deadline)
MAX_RETRIES = 10
MAX_CONCURRENCY = 32
DEFAULT_REQUEST_TIMEOUT = 10.0

Add = Callable[[str, str, str], None]  # Problems.add(setting, source, problem)


class Unknown(NamedTuple):
    """An ``ALVARIA_*`` variable that is no setting: a warning, or an error under strict_env."""

    setting: str
    source: str
    problem: str


def unknown_env(environ: Mapping[str, str]) -> Iterator[Unknown]:
    """Every ``ALVARIA_*`` variable that names no setting, with the closest known name."""
    for name in sorted(environ):
        if not name.startswith("ALVARIA_") or name in _KNOWN:
            continue
        if name.startswith(_FOREIGN_PREFIXES):
            continue
        if name.endswith("_FILE"):
            hint = "only api_key, client_secret and access_token can be read from a file"
        else:
            close = difflib.get_close_matches(name, sorted(_KNOWN), n=1)
            hint = f"did you mean {close[0]}?" if close else "see --help for the settings"
        setting = name.removeprefix("ALVARIA_").lower()[:40]
        yield Unknown(setting, f"env {name[:48]}", f"unknown environment variable; {hint}")


def check_limits(values: dict[str, Any], sources: Mapping[str, str], add: Add) -> None:
    """Refuse values that would send the API more requests than anyone means to.

    A request_timeout left at its default is lowered to fit a short poll_interval instead.
    """
    poll = values.get("poll_interval", 30.0)
    if poll < MIN_POLL_INTERVAL:
        add(
            "poll_interval",
            sources["poll_interval"],
            f"must be at least {MIN_POLL_INTERVAL:g}s: each poll sends at least one API request "
            "per organisation",
        )
        poll = MIN_POLL_INTERVAL
    deadline = DEADLINE_FACTOR * poll
    timeout = values.get("request_timeout")
    if timeout is None:
        values["request_timeout"] = min(DEFAULT_REQUEST_TIMEOUT, poll)
    elif timeout >= deadline:
        add(
            "request_timeout",
            sources["request_timeout"],
            f"must be below the poll deadline ({DEADLINE_FACTOR:g} x poll_interval = "
            f"{deadline:g}s): a request outliving it fails the whole poll",
        )
    stale = values.get("stale_after")
    if stale is not None and stale < poll:
        add("stale_after", sources["stale_after"], f"must be at least poll_interval ({poll:g}s)")
    for name, most, why in (
        ("max_retries", MAX_RETRIES, "every retry is another request to the API"),
        ("max_concurrency", MAX_CONCURRENCY, "more page requests in flight only invite 429s"),
    ):
        if values.get(name, 0) > most:
            add(name, sources[name], f"must be at most {most}: {why}")
