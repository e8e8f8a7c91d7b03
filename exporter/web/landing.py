"""The HTML landing page at `/`: what this exporter is, what it polls and how each poll went.

A pure function of the page's settings, the store and `now`. It shows host names, counts and
times, and the last error's one-line message (which never holds a secret or personal data,
see `exporter.domain.errors`, and is scrubbed again here: `exporter.domain.scrub`); never a credential, an email address, a subject or an agent name. No
external assets, so it renders the same behind a firewall; readable on a phone (the table
becomes one card per organisation on narrow screens).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from exporter import __version__
from exporter.domain.names import DEFAULT_WAITING_STATES
from exporter.domain.scrub import scrub
from exporter.metrics import buildinfo
from exporter.polling.store import OrgState, Store

DOCS_URL = "https://alvaria-emailqueue-exporter.github.io/alvaria-emailqueue-exporter/"
_ERROR_CHARS = 300
# The page reloads itself every poll interval, within these bounds; `?refresh=0` turns it off
# and `?refresh=N` asks for N seconds.
REFRESH_BOUNDS = (5, 300)


@dataclass(frozen=True, slots=True)
class PageInfo:
    """What the page says beyond the store; main fills it from the settings."""

    poll_interval: float | None = None
    stale_after: float = float("inf")
    waiting_states: frozenset[str] = frozenset(DEFAULT_WAITING_STATES)
    # org -> host of its API URL (a host only: a URL's path or query is never shown).
    api_hosts: Mapping[str, str] = field(default_factory=dict)
    # The built-in simulator's base URL when running with --demo.
    demo_url: str | None = None
    # This replica's shard, shown per organisation (every organisation a replica polls is in
    # its shard); the fleet settings (shard, total_shards) set it.
    shard: str = "0 of 1"
    version: str = __version__
    revision: str = field(default_factory=buildinfo.revision)


def ago(seconds: float) -> str:
    """A short human duration: `42 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def refresh_seconds(query: str | None, poll_interval: float | None) -> int:
    """How often the page reloads itself: `?refresh=0` never, `?refresh=N` every N seconds
    (bounded), otherwise every poll interval (bounded); an unreadable value counts as absent."""
    low, high = REFRESH_BOUNDS
    if query is not None and query.strip().isdecimal():
        asked = int(query.strip()[:6])
        return 0 if asked == 0 else min(max(asked, low), high)
    return min(max(round(poll_interval or 30), low), high)


def _nw(text: str) -> str:
    """`text` kept on one line: a value such as `12 min 2 s` is never wrapped mid-value."""
    return f'<span class="nw">{text}</span>'


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    stamp = datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f'<time datetime="{stamp}">{stamp}</time> ({_nw(ago(now - ts) + " ago")})'


def _cells(state: OrgState, info: PageInfo, now: float) -> list[tuple[str, str, str]]:
    """(column, class, cell HTML) for one organisation."""
    status = "up" if state.up else ("down" if state.polled else "pending")
    error = "none"
    if state.last_error:
        message = scrub(state.last_error, _ERROR_CHARS)
        when = f" at {_when(state.last_error_at, now)}" if state.last_error_at else ""
        error = f"<b>{html.escape(state.last_error_reason or '')}</b>: {html.escape(message)}{when}"
    snapshot = state.live_snapshot(now, info.stale_after)
    waiting, oldest = "no data", "—"
    if snapshot is not None:
        count = sum(n for (st, _, _), n in snapshot.counts.items() if st in info.waiting_states)
        waiting = str(count)
        stamps = [ages.timestamps[0] for ages in snapshot.waiting.values() if ages.timestamps]
        oldest = _nw(ago(now - min(stamps))) if stamps else "—"
    elif state.snapshot is not None:
        waiting = "stale (no successful poll for longer than stale_after)"
    duration = "—" if state.last_duration is None else _nw(f"{state.last_duration:.2f} s")
    interval = "—" if info.poll_interval is None else _nw(ago(info.poll_interval))
    return [
        ("Organisation", "org", html.escape(state.org)),
        ("API host", "", html.escape(info.api_hosts.get(state.org, "—"))),
        ("Status", status, status),
        ("Last success", "", _when(state.last_success, now)),
        ("Last error", "", error),
        ("Failures in a row", "", str(state.failures_in_a_row)),
        ("Emails waiting", "num", waiting),
        ("Oldest wait", "num", oldest),
        ("Last poll took", "num", duration),
        ("Poll interval", "num", interval),
        ("Shard", "", html.escape(info.shard)),
    ]


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1em;line-height:1.4;color:#1f2328}
h1{font-size:1.4em}table{border-collapse:collapse;width:100%}
th,td{padding:.35em .6em;text-align:left;vertical-align:top;border-bottom:1px solid #d0d7de}
th{background:#f6f8fa}.num{text-align:right}
.up{color:#1a7f37;font-weight:bold}.down{color:#cf222e;font-weight:bold}
.pending{color:#9a6700;font-weight:bold}.demo{background:#fff8c5;padding:.5em}
.nw,time{white-space:nowrap}.refresh{color:#59636e;font-size:.9em}
@media (max-width:800px){table,thead,tbody,tr,td{display:block}thead{display:none}
tr{border:1px solid #d0d7de;margin:0 0 1em;padding:.3em}
td,td.num{border:none;padding:.2em .3em;text-align:left;overflow-wrap:anywhere}
td::before{content:attr(data-label) ": ";font-weight:bold}}
"""


def render(info: PageInfo, states: Iterable[OrgState], now: float, refresh: int = 0) -> str:
    """The whole page; with `refresh`, it reloads itself every `refresh` seconds."""
    rows = []
    columns: list[str] = []
    for state in states:
        cells = _cells(state, info, now)
        columns = [name for name, _, _ in cells]
        tds = "".join(
            f'<td data-label="{name}"' + (f' class="{cls}"' if cls else "") + f">{cell}</td>"
            for name, cls, cell in cells
        )
        rows.append(f"<tr>{tds}</tr>")
    head = "".join(f"<th>{name}</th>" for name in columns)
    if info.demo_url is not None:
        mode = (
            '<p class="demo">Demo mode: polling the built-in simulator at '
            f"{html.escape(info.demo_url)}, not Alvaria Cloud.</p>"
        )
    else:
        mode = "<p>Polling the configured API (not the built-in demo simulator).</p>"
    table = (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No organisations configured.</p>"
    )
    if refresh:
        meta = f'<meta http-equiv="refresh" content="{refresh}">\n'
        reloads = f'Refreshes every {refresh} s (<a href="?refresh=0">stop</a>)'
    else:
        meta, reloads = "", 'Not refreshing (<a href="?">refresh automatically</a>)'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
{meta}<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Alvaria EmailQueue exporter</title><style>{_STYLE}</style></head>
<body><h1>Alvaria EmailQueue exporter</h1>
<p>Version {html.escape(info.version)}, revision {html.escape(info.revision)}</p>
{mode}
<ul><li><a href="metrics">Metrics</a></li><li><a href="healthz">Health</a></li>
<li><a href="readyz">Readiness</a></li><li><a href="{DOCS_URL}">Documentation</a></li></ul>
<h2>Organisations</h2>
<p class="refresh">{reloads}</p>
{table}
</body></html>
"""


class PageCache:
    """The last page, reused within the same second while no poll finished.

    With thousands of organisations a render takes tens of milliseconds on the event loop; a
    client reloading `/` in a loop then costs one render a second, not one per request.
    """

    def __init__(self) -> None:
        self._info: PageInfo | None = None
        self._store: Store | None = None
        self._stamp = (-1, -1, -1)
        self._body = ""

    def get(self, info: PageInfo, store: Store, now: float, refresh: int = 0) -> str:
        # Held, so compared by identity: a reload that swaps either renders afresh.
        stamp = (store.version, int(now), refresh)
        if info is not self._info or store is not self._store or stamp != self._stamp:
            self._body = render(info, store.orgs.values(), now, refresh)
            self._info, self._store, self._stamp = info, store, stamp
        return self._body
