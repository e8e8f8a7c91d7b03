"""A hostile upstream against the real daemon: peak RSS, RSS over many polls, worst loop stall.

Each case is served by `python -m bench.hostile serve CASE PORT` in its own process; the daemon
(its own process too, default settings, page size 1000, 4 pages in flight) polls it every
second while this process probes `/healthz` every 10 ms: the worst probe is the longest the
daemon's event loop was kept from answering.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
from aiohttp import web

from .procs import BIN, _stop, free_port, wait_http
from .scrape import _peak_rss

ORG = "bench"
MB = 1024 * 1024
PATH = f"/via/v2/organizations/{ORG}/emailQueue/emails"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _items(start: int, count: int, **extra: object) -> list[dict[str, object]]:
    return [
        {
            "id": str(start + n),
            "state": "Queued",
            "emailType": "InboundEmail",
            "workTypeId": "7",
            "workTypeName": "Billing",
            "queuedTime": "2026-01-01T00:00:00Z",
            **extra,
        }
        for n in range(count)
    ]


def _json(body: object) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")


async def oversized_later_pages(request: web.Request) -> web.StreamResponse:
    """Page 0 is honest and announces four more pages; every later page never ends."""
    if request.query.get("startIndex", "0") == "0":
        return _json({"totalItems": 5000, "items": _items(0, 1000)})
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"totalItems": 5000, "items": [' + b" " * (MB - 31))
    chunk = b" " * MB
    try:
        for _ in range(4096):  # 4 GiB, far past any limit: the client gives up first
            await response.write(chunk)
    except (ConnectionError, RuntimeError):
        pass
    return response


def _static(body: bytes) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    return handler


def _empty_objects() -> bytes:
    # 30 MB of `{}` (under the default 32 MiB limit): 10 million items where 1000 were asked.
    return b'{"totalItems": 1000, "items": [' + b"{}," * 10_000_000 + b"{}]}"


def _tiny_ids() -> bytes:
    items = b",".join(b'{"id":"%d"}' % n for n in range(1_400_000))
    return b'{"totalItems": 1000, "items": [' + items + b"]}"


def _deep() -> bytes:
    return (
        b'{"totalItems": 1, "items": [{"id": "1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    )


def _long_names() -> bytes:
    items = [
        {**_items(n, 1)[0], "workTypeName": f"{n:04d}" + "W" * 10_240, "state": "Queued\r\n"}
        for n in range(200)
    ]
    return json.dumps({"totalItems": 200, "items": items}).encode()


def _bulky_items() -> bytes:
    # 30 MB in a page of exactly the 1000 items asked for: each carries a field the exporter
    # never reads, an array of 10,000 numbers (skipped, not decoded).
    filler = "[" + ",".join(["1.5"] * 7_500) + "]"
    items = ",".join(json.dumps(item)[:-1] + ', "x": ' + filler + "}" for item in _items(0, 1000))
    return ('{"totalItems": 1000, "items": [' + items + "]}").encode()


def _huge_labels() -> bytes:
    # 30 MB in the 1000 items asked for, all of it in a field that is decoded: the work type.
    items = [{**item, "workTypeName": "W" * 30_000} for item in _items(0, 1000)]
    return json.dumps({"totalItems": 1000, "items": items}).encode()


CASES: dict[str, Callable[[], Handler]] = {
    "endless bodies on pages 2-5": lambda: oversized_later_pages,
    "30 MB page of {} items": lambda: _static(_empty_objects()),
    "25 MB page of 1.4M tiny distinct ids": lambda: _static(_tiny_ids()),
    "100k-level nesting": lambda: _static(_deep()),
    "totalItems of 10^30": lambda: _static(b'{"totalItems": 1' + b"0" * 30 + b', "items": []}'),
    "invalid UTF-8 in a label": lambda: _static(
        b'{"totalItems": 1, "items": [{"id": "1", "state": "Q\xff\xfe"}]}'
    ),
    "200 emails with 10 KB work-type names": lambda: _static(_long_names()),
    "30 MB page of the 1000 items asked, with bulky unread fields": lambda: _static(_bulky_items()),
    "30 MB page of the 1000 items asked, with 30 KB work-type names": lambda: _static(
        _huge_labels()
    ),
}


@dataclass
class Hostile:
    """What one case cost the daemon."""

    case: str
    polls: int
    outcomes: Counter[str] = field(default_factory=Counter)
    rss: list[int] = field(default_factory=list)  # after each poll
    peak_rss: int = 0
    healthz: list[float] = field(default_factory=list)

    @property
    def healthz_worst(self) -> float:
        return max(self.healthz, default=0.0)

    @property
    def healthz_p99(self) -> float:
        ordered = sorted(self.healthz)
        return ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0.0

    @property
    def rss_drift(self) -> float:
        """Median RSS of the last five polls against polls 5-10 (0.05 = 5 % more)."""
        if len(self.rss) < 15:
            return 0.0
        early, late = statistics.median(self.rss[4:10]), statistics.median(self.rss[-5:])
        return late / early - 1


def _events(path: Path) -> list[dict[str, object]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") in ("poll", "poll_crashed"):
            out.append(event)
    return out


async def run_case(case: str, polls: int, interval: float = 1.0) -> Hostile:
    """Serve `case`, run the daemon against it for `polls` polls, and watch it."""
    upstream_port, port = free_port(), free_port()
    upstream = subprocess.Popen(  # noqa: S603, ASYNC220 -- fixed arguments from this module
        [sys.executable, "-m", "bench.hostile", "serve", case, str(upstream_port)],
        stdout=subprocess.DEVNULL,
    )
    result = Hostile(case, polls)
    try:
        await wait_http(f"http://127.0.0.1:{upstream_port}/", upstream, within=120)
        args = [
            str(BIN / "alvaria-emailqueue-exporter"),
            *("--org-id", ORG, "--api-url", f"http://127.0.0.1:{upstream_port}"),
            *("--listen-address", f"127.0.0.1:{port}", "--poll-interval", f"{interval}s"),
            *("--page-size", "1000", "--max-concurrency", "4"),
            *("--log-level", "info", "--log-format", "json"),
        ]
        env = {**os.environ, "ALVARIA_API_KEY": "key", "ALVARIA_ACCESS_TOKEN": "token"}
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "daemon.log"
            with log.open("wb") as out:
                daemon = subprocess.Popen(args, env=env, stdout=out, stderr=out)  # noqa: S603, ASYNC220
                try:
                    await _watch(result, daemon, f"http://127.0.0.1:{port}", log, interval)
                finally:
                    result.peak_rss = _peak_rss(daemon.pid) or 0
                    _stop(daemon)
            events = _events(log)
        result.outcomes = Counter(
            str(e.get("reason") or e.get("outcome") or e["event"]) for e in events
        )
    finally:
        _stop(upstream)
    return result


async def _watch(
    result: Hostile, daemon: subprocess.Popen[bytes], base: str, log: Path, interval: float
) -> None:
    await wait_http(base + "/healthz", daemon, within=30)
    process = psutil.Process(daemon.pid)
    deadline = time.monotonic() + result.polls * (interval + 10) + 30
    seen = 0
    async with aiohttp.ClientSession() as session:
        while seen < result.polls and time.monotonic() < deadline:
            started = time.perf_counter()
            async with session.get(base + "/healthz") as resp:
                await resp.read()
            result.healthz.append(time.perf_counter() - started)
            done = len(_events(log))
            if done > seen:
                result.rss.extend([process.memory_info().rss] * (done - seen))
                seen = done
            await asyncio.sleep(0.01)
    result.polls = seen


async def run_all(polls: int, long_polls: int, cases: list[str] | None = None) -> list[Hostile]:
    """Every case (or those named) in turn; the long ones for `long_polls` polls."""
    out = []
    for case in cases or CASES:
        print(f"… hostile upstream: {case}", file=sys.stderr)
        out.append(await run_case(case, long_polls if case in LONG else polls))
    return out


LONG = {"endless bodies on pages 2-5"}


def table(results: list[Hostile]) -> str:
    rows = [
        "",
        "Hostile upstream, default settings (page size 1000, 4 pages in flight, 32 MiB per "
        "body), a poll every second, `/healthz` probed every 10 ms (its worst answer is the "
        "longest loop stall). RSS drift: median RSS of the last five polls against polls 5-10.",
        "",
        "| case | polls | outcome | daemon peak RSS | RSS drift | `/healthz` p99 | worst |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        outcome = ", ".join(f"{k} x{v}" for k, v in r.outcomes.most_common())
        drift = f"{r.rss_drift * 100:+.0f} %" if len(r.rss) >= 15 else "-"
        rows.append(
            f"| {r.case} | {r.polls} | {outcome} | {r.peak_rss / MB:.0f} MB | {drift} "
            f"| {r.healthz_p99 * 1000:.0f} ms | {r.healthz_worst * 1000:.0f} ms |"
        )
    return "\n".join(rows)


def verdicts(results: list[Hostile]) -> list[tuple[str, bool]]:
    checks = [
        ("hostile upstream: peak RSS ≤ 300 MB in every case", all(
            r.peak_rss <= 300 * MB for r in results
        )),
        ("hostile upstream: /healthz ≤ 50 ms in every case", all(
            r.healthz_worst <= 0.050 for r in results
        )),
        ("hostile upstream: no internal errors", not any(
            r.outcomes.get("internal") or r.outcomes.get("poll_crashed") for r in results
        )),
    ]  # fmt: skip
    for r in results:
        if r.case in LONG and len(r.rss) >= 15:
            checks.append(
                (f"RSS flat (± 10 %) over {r.polls} polls: {r.case}", abs(r.rss_drift) <= 0.10)
            )
    return checks


def serve(case: str, port: int) -> None:
    """The upstream of one case (blocking), with `/` answering once it is up."""
    handler = CASES[case]()
    app = web.Application()
    app.router.add_get(PATH, handler)
    app.router.add_get("/", _static(json.dumps({"case": case}).encode()))
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        results = asyncio.run(run_all(polls=int(sys.argv[1]), long_polls=int(sys.argv[2])))
        print(table(results))
        for name, ok in verdicts(results):
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
