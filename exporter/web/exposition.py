"""`/metrics`: content negotiation, and one render at a time, off the event loop, shared by scrapes.

A scrape takes the collectors' blocks on the event loop (cheap: whole snapshot mappings, see
`exporter.metrics.families`; the queue collector's a few organisations per turn of the loop, so
other requests are answered in between) and hands them to one worker thread, which formats them
(`exporter.metrics.textformat`) and gzips the result. Scrapes that arrive while a render is running wait
for that render instead of starting their own (client_golang's CoalesceGather), and a finished
render serves every scrape for up to `max_age` or until the next poll finishes. Renders are kept
per format and encoding, never per header value, so at most four bodies exist whatever the
scrapers send. Scrapes waiting for a render are not capped: each holds only a reference to the
shared render. Writing is: at most `MAX_IN_FLIGHT` large bodies are written at once (more get
503 and `Retry-After: 1`, counted in `alvaria_emailqueue_http_metrics_busy_total`), none for
longer than `WRITE_DEADLINE`, and connections are bounded by the server's connection limit.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.metrics.families import Part, Registry, SteppedCollector, gather, gather_one
from exporter.metrics.textformat import CONTENT_TYPES, Format, Renderer
from exporter.polling.store import Store

VARY = "Accept, Accept-Encoding"
# Bodies larger than STREAM_ABOVE are written WRITE_CHUNK at a time, each once the client has
# taken the one before: a client that stops reading then holds its connection and one piece,
# not a copy of the body. (Written at once, the kernel takes a few MB and asyncio's transport
# copies the rest: sixty clients that asked for a 29 MB body and never read it held 1.3 GB.)
# Pieces are large, so a client that reads promptly costs few turns of the loop. The
# connection guard drops a connection whose client takes nothing for `write_timeout`.
STREAM_ABOVE = 256 * 1024
WRITE_CHUNK = 512 * 1024
# A large response being written keeps the body it started with alive (a later render is a
# new object), so at most this many are written at once (as client_golang's
# MaxRequestsInFlight; more scrapes get 503 and come again), and none for longer than
# WRITE_DEADLINE: a client reading a few bytes now and then cannot keep a body, or a place, for
# ever. (Scrapes waiting for a render share it; a small body is handed to the socket at once.)
MAX_IN_FLIGHT = 16
WRITE_DEADLINE = 120.0
# (format, how specific the media range was): exact type 2, `type/*` 1, `*/*` 0.
_RANGES: dict[str, tuple[tuple[Format, int], ...]] = {
    "application/openmetrics-text": (("openmetrics", 2),),
    "text/plain": (("text", 2),),
    "application/*": (("openmetrics", 1),),
    "text/*": (("text", 1),),
    "*/*": (("text", 0), ("openmetrics", 0)),
}


@dataclass(slots=True)
class _Render:
    started_at: float
    version: int
    body: asyncio.Future[bytes]
    gzipped: asyncio.Future[bytes] | None = None


class ExpositionCache:
    """Serves `/metrics` from a render at most `max_age` old and never older than the last poll."""

    def __init__(
        self,
        registry: CollectorRegistry,
        store: Store,
        *,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        executor: Executor | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        write_deadline: float = WRITE_DEADLINE,
    ) -> None:
        self._registry = registry
        self._max_in_flight = max_in_flight
        self._write_deadline = write_deadline
        self.in_flight = 0  # large responses being written now
        self.busy = 0  # scrapes answered 503 because MAX_IN_FLIGHT were being written
        self._store = store
        self._max_age = max_age
        self._clock = clock
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="metrics-render")
        self._renderer = Renderer()
        self._renders: dict[Format, _Render] = {}
        self.renders = 0  # renders started, for tests and curiosity

    async def body(self, fmt: Format, gzipped: bool) -> bytes:
        """The current body in `fmt`, gzipped or not; renders at most once for many callers."""
        entry = self._entry(fmt)
        body = await asyncio.shield(entry.body)
        if not gzipped:
            return body
        if entry.gzipped is None:
            loop = asyncio.get_running_loop()
            entry.gzipped = loop.run_in_executor(self._executor, gzip.compress, body, 6)
        return await asyncio.shield(entry.gzipped)

    def _entry(self, fmt: Format) -> _Render:
        now, version = self._clock(), self._store.version
        entry = self._renders.get(fmt)
        if entry is not None and (
            not entry.body.done()  # in flight: share it, however old
            or (
                entry.version == version
                and now - entry.started_at < self._max_age
                and not entry.body.cancelled()
                and entry.body.exception() is None
            )
        ):
            return entry
        future = asyncio.ensure_future(self._render(fmt))
        self.renders += 1
        entry = self._renders[fmt] = _Render(now, version, future)
        return entry

    async def _render(self, fmt: Format) -> bytes:
        parts = await gather_in_steps(self._registry)  # on the loop: reads the store
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._renderer.render, parts, fmt)

    def bodies_kept(self) -> int:
        """Rendered bodies held (at most one per format and encoding)."""
        futures = [f for e in self._renders.values() for f in (e.body, e.gzipped) if f is not None]
        return sum(1 for f in futures if f.done())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The `/metrics` handler: Prometheus text or OpenMetrics by `Accept`, gzip by `Accept-Encoding`."""
        fmt = negotiate(",".join(request.headers.getall("Accept", [])))
        if fmt is None:
            return web.Response(
                status=406,
                text="acceptable: text/plain; version=0.0.4, application/openmetrics-text; version=1.0.0\n",
                headers={"Vary": VARY},
            )
        gzipped = accepts_gzip(",".join(request.headers.getall("Accept-Encoding", [])))
        body = await self.body(fmt, gzipped)  # scrapes waiting for one render share it
        headers = {"Vary": VARY, "Content-Type": CONTENT_TYPES[fmt]}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        if len(body) <= STREAM_ABOVE or request.method == "HEAD":
            return web.Response(body=body, headers=headers)
        if self.in_flight >= self._max_in_flight:
            self.busy += 1
            text = f"{self.in_flight} responses in flight, the most this exporter writes at once\n"
            return web.Response(status=503, text=text, headers={"Retry-After": "1"})
        self.in_flight += 1
        try:
            return await self._stream(request, body, headers)
        finally:
            self.in_flight -= 1

    async def _stream(
        self, request: web.Request, body: bytes, headers: dict[str, str]
    ) -> web.StreamResponse:
        """Write `body` a piece at a time, as the client takes it."""
        response = web.StreamResponse(headers=headers)
        response.content_length = len(body)
        try:
            async with asyncio.timeout(self._write_deadline):
                await response.prepare(request)
                view = memoryview(body)
                for start in range(0, len(view), WRITE_CHUNK):
                    await response.write(view[start : start + WRITE_CHUNK])
        except ConnectionError:
            pass  # the client went away, or was dropped for not reading: nothing to answer
        except TimeoutError:
            if request.transport is not None:
                request.transport.abort()  # too slow: the rest of the body is not worth its memory
        return response

    async def close(self, _app: web.Application | None = None) -> None:
        """Stop the render thread (an app `on_cleanup` hook); a render under way finishes."""
        for entry in self._renders.values():
            entry.body.cancel()  # one still reading the store stops there; a finished one stays
        self._executor.shutdown(wait=False, cancel_futures=True)


async def gather_in_steps(registry: CollectorRegistry) -> list[Part]:
    """`gather`, giving the event loop a turn between the steps of a collector that has them
    (`QueueCollector.steps`): with hundreds of organisations, one scrape's reading of the store
    no longer holds every other request up for tens of milliseconds."""
    if not isinstance(registry, Registry):
        return gather(registry)
    parts: list[Part] = []
    for collector in list(registry.collectors):  # a reload may swap collectors meanwhile
        if not isinstance(collector, SteppedCollector):
            parts.append(gather_one(collector))
            continue
        steps = collector.steps()
        while True:
            try:
                next(steps)
            except StopIteration as done:
                parts.append(done.value)
                break
            await asyncio.sleep(0)
    return parts


def _parameters(item: str) -> tuple[str, float, str | None] | None:
    """(media range, q, version) of one `Accept` element; None when its q is not a number."""
    media, *params = item.split(";")
    quality, version = 1.0, None
    for param in params:
        key, _, value = param.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"')
        if key == "q":
            try:
                quality = min(1.0, max(0.0, float(value)))
            except ValueError:
                return None
        elif key == "version":
            version = value
    return media.strip().lower(), quality, version


def negotiate(accept: str) -> Format | None:
    """The format an `Accept` header asks for (RFC 9110: the most specific range decides each
    format's q, `q=0` refuses it, the highest q wins, then the earliest); text 0.0.4 when the
    header names neither format, None when it refuses both."""
    # format -> (specificity, q, position) of the most specific range matching it
    chosen: dict[Format, tuple[int, float, int]] = {}
    for position, item in enumerate(accept.split(",")):
        parsed = _parameters(item)
        if parsed is None:
            continue
        media, quality, version = parsed
        if media == "application/openmetrics-text" and version and not version.startswith("1."):
            continue  # OpenMetrics 0.0.1 or 2.x: not what we write
        for fmt, specificity in _RANGES.get(media, ()):
            if fmt not in chosen or specificity > chosen[fmt][0]:
                chosen[fmt] = (specificity, quality, position)
    wanted = [
        (q, -position, fmt == "text", fmt) for fmt, (_, q, position) in chosen.items() if q > 0
    ]
    if wanted:
        return max(wanted)[3]
    for fmt in ("text", "openmetrics"):
        if fmt not in chosen:
            return fmt
    return None


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an `Accept-Encoding` header allows gzip (`gzip;q=0` refuses it; `*` allows it)."""
    wildcard = False
    for part in accept_encoding.split(","):
        parsed = _parameters(part)
        if parsed is None:
            continue
        name, quality, _ = parsed
        if name in ("gzip", "x-gzip"):
            return quality > 0
        if name == "*":
            wildcard = quality > 0
    return wildcard
