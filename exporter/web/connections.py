"""Bounds on the exporter's own HTTP connections, which aiohttp leaves open-ended.

- ``max_connections``: past it a new connection is closed as soon as it is accepted.
- ``header_timeout``: a connection must deliver a request line and headers this long after it
  opens (or after its first byte following an idle keep-alive pause); aiohttp has no such timer,
  so one slow client per file descriptor could otherwise hold the server (slowloris).
- ``keepalive_timeout``: an idle keep-alive connection is closed after this long.
- Malformed requests still get aiohttp's 400, but are logged as one WARNING line at most every
  few seconds instead of an ERROR with a traceback each; the same for ``accept()`` failing for
  want of file descriptors.

Every connection is wrapped in a small protocol that forwards everything to aiohttp's own
``RequestHandler``; a middleware tells it when a request's headers have been parsed.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from exporter.domain import names

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Metric = GaugeMetricFamily | CounterMetricFamily
_FD_RESERVE = 64  # descriptors beyond max_connections: upstream sessions, logs, listeners


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many connections, and how long each may take to say what it wants."""

    max_connections: int = 512
    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0  # longer than the usual 1m scrape interval, so reused
    # A client that takes none of a response for this long is dropped (a scrape reading slowly
    # but steadily is not); until then a large response waits in pieces (see exposition).
    write_timeout: float = 30.0


@dataclass(slots=True)
class ConnectionStats:
    """What the limits did; read by the collector, written only on the event loop."""

    open: int = 0
    rejected: int = 0  # closed at once: max_connections reached
    header_timeouts: int = 0  # closed: headers not complete within header_timeout
    accept_errors: int = 0  # accept() failed for want of descriptors or memory
    write_timeouts: int = 0  # closed: the client took none of a response within write_timeout

    def rejections(self) -> dict[str, int]:
        """Closed connections by the `reason` label of http_connections_rejected_total."""
        counts = (self.rejected, self.header_timeouts, self.accept_errors, self.write_timeouts)
        return dict(zip(names.CONNECTION_REJECT_REASONS, counts, strict=True))


class Throttle:
    """Lets one event through per `interval` seconds and counts the ones it held back."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")
        self.held_back = 0

    def allow(self) -> int | None:
        """The number held back since the last one allowed, or None to stay quiet."""
        now = self._clock()
        if now < self._next:
            self.held_back += 1
            return None
        self._next = now + self._interval
        held, self.held_back = self.held_back, 0
        return held


class _Guarded(asyncio.Protocol):
    """One connection: admission, the header timer, then aiohttp's handler does the rest."""

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], RequestHandler]) -> None:
        self._guard = guard
        self._factory = factory
        self._inner: RequestHandler | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stalled: asyncio.TimerHandle | None = None  # armed while writing is paused
        self._in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if guard.stats.open >= guard.limits.max_connections:
            guard.stats.rejected += 1
            transport.abort()  # type: ignore[attr-defined]
            return
        guard.stats.open += 1
        self._transport = transport
        self._inner = self._factory()
        guard.connections[self._inner] = self
        self._arm()
        self._inner.connection_made(transport)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.limits.header_timeout, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._in_request:
            self._guard.stats.header_timeouts += 1
            self._transport.abort()  # type: ignore[attr-defined]

    def request_started(self) -> None:
        self._in_request = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def request_finished(self) -> None:
        self._in_request = False

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._timer is None and not self._in_request and data:
            self._arm()  # the first byte of the next request on a kept-alive connection
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            self._inner.eof_received()
        return None  # close the transport, as aiohttp's handler does

    def pause_writing(self) -> None:
        if self._inner is not None:
            if self._stalled is None:
                loop = asyncio.get_running_loop()
                self._stalled = loop.call_later(self._guard.limits.write_timeout, self._stall)
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        if self._inner is not None:
            self._inner.resume_writing()

    def _stall(self) -> None:
        self._stalled = None
        if self._transport is not None:
            self._guard.stats.write_timeouts += 1
            self._transport.abort()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._timer, self._stalled):
            if timer is not None:
                timer.cancel()
        self._timer = self._stalled = None
        inner, self._inner, self._transport = self._inner, None, None
        if inner is None:
            return  # rejected at once
        self._guard.stats.open -= 1
        self._guard.connections.pop(inner, None)
        inner.connection_lost(exc)


@dataclass(eq=False)
class ConnectionGuard:
    """The limits of one server, its counters and the hooks that enforce them."""

    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    stats: ConnectionStats = field(default_factory=ConnectionStats)
    log_interval: float = 10.0
    connections: dict[RequestHandler, _Guarded] = field(default_factory=dict)
    _bad_request_log: Throttle = field(init=False)
    _accept_log: Throttle = field(init=False)

    def __post_init__(self) -> None:
        self._bad_request_log = Throttle(self.log_interval)
        self._accept_log = Throttle(self.log_interval)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """What `loop.create_server` calls per accepted connection."""
        return lambda: _Guarded(self, server)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outermost: the request's headers are in, so its connection's header timer stops."""
        guarded = self.connections.get(request.protocol)
        if guarded is not None:
            guarded.request_started()
        try:
            return await handler(request)
        finally:
            if guarded is not None:
                guarded.request_finished()

    def filter_server_log(self, record: logging.LogRecord) -> bool:
        """A `logging` filter for ``aiohttp.server``: malformed requests become a quiet WARNING."""
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True  # anything else may be a bug: keep its traceback
        held = self._bad_request_log.allow()
        if held is None:
            return False
        record.msg = "malformed HTTP request answered 400 (%s from %s)" + _more(held)
        record.args = (type(exc).__name__, _peer(record.args))
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True

    def handle_loop_exception(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]
    ) -> None:
        """`loop.set_exception_handler`: accept() out of descriptors becomes a quiet WARNING."""
        if context.get("message") != "socket.accept() out of system resource":
            loop.default_exception_handler(context)
            return
        self.stats.accept_errors += 1
        held = self._accept_log.allow()
        if held is not None:
            exc = context.get("exception")
            logging.getLogger("exporter.web.connections").warning(
                "cannot accept connections (%s): out of file descriptors or memory; "
                "lower max_connections or raise the nofile limit" + _more(held),
                getattr(exc, "strerror", None) or type(exc).__name__,
            )


def _more(held: int) -> str:
    return f"; {held} more since the last such line" if held else ""


def _peer(args: Any) -> str:
    return str(args[0]) if isinstance(args, tuple) and args else "unknown"


def raise_fd_limit(max_connections: int) -> str | None:
    """Raise the soft `nofile` limit to the hard one (as Go does); a warning if still too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and max_connections + _FD_RESERVE > soft:
        return (
            f"max_connections ({max_connections}) plus {_FD_RESERVE} spare descriptors exceeds "
            f"the open-files limit ({soft}); connections past it fail at accept()"
        )
    return None


class ServerCollector(Collector):
    """The HTTP server's connection counters, so the limits can be seen biting::

    alvaria_emailqueue_http_connections 3.0
    alvaria_emailqueue_http_max_connections 512.0
    alvaria_emailqueue_http_connections_rejected_total{reason="header_timeout"} 12.0
    """

    def __init__(
        self,
        guard: ConnectionGuard,
        auth_busy: Callable[[], int] = lambda: 0,
        metrics_busy: Callable[[], int] = lambda: 0,
    ) -> None:
        self._guard = guard
        self._auth_busy = auth_busy
        self._metrics_busy = metrics_busy

    def collect(self) -> Iterator[Metric]:
        stats = self._guard.stats
        yield GaugeMetricFamily(
            names.HTTP_CONNECTIONS, "Open connections to the exporter's HTTP server.", stats.open
        )
        yield GaugeMetricFamily(
            names.HTTP_MAX_CONNECTIONS,
            "Configured max_connections: new connections past it are closed at once.",
            self._guard.limits.max_connections,
        )
        rejected = CounterMetricFamily(
            names.HTTP_CONNECTIONS_REJECTED,
            "Connections closed by the server's limits: max_connections reached, headers not "
            "complete within header_timeout, accept() out of file descriptors, or a client "
            "that took none of a response within write_timeout.",
            labels=["reason"],
        )
        for reason, count in stats.rejections().items():
            rejected.add_metric([reason], count)
        yield rejected
        yield CounterMetricFamily(
            names.HTTP_AUTH_BUSY,
            "Requests with credentials not yet verified answered 503 because the bcrypt "
            "queue was full.",
            self._auth_busy(),
        )
        yield CounterMetricFamily(
            names.HTTP_METRICS_BUSY,
            "Scrapes answered 503 because as many large /metrics responses as the exporter "
            "writes at once were being written.",
            self._metrics_busy(),
        )
