"""The HTTP side: `/metrics`, `/healthz`, `/readyz` and the landing page; owns the poll tasks.

Poll tasks live in a `cleanup_ctx`, so stopping the app cancels and awaits them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Sequence,
)
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.domain.errors import ConfigError
from exporter.polling.store import Store
from exporter.web.connections import ConnectionGuard
from exporter.web.exposition import ExpositionCache
from exporter.web.landing import PageCache, PageInfo, refresh_seconds

PollTask = Callable[[], Coroutine[Any, Any, None]]
# Reloads the configuration; raises ConfigError (one line) when it is refused.
Reload = Callable[[str], Awaitable[None]]

STORE = web.AppKey("store", Store)
# Settings the landing page shows (poll interval, API hosts, demo); optional, main sets it.
PAGE_INFO = web.AppKey("page_info", PageInfo)
# Where a reloading daemon keeps its current PageInfo (the app's state is frozen once started).
PAGE_INFO_SOURCE: web.AppKey[Callable[[], PageInfo]] = web.AppKey("page_info_source")
PAGE_CACHE = web.AppKey("page_cache", PageCache)
EXPOSITION = web.AppKey("exposition", ExpositionCache)
DEFAULT_PAGE_INFO = PageInfo()
POLL_TASKS = web.AppKey("poll_tasks", list[asyncio.Task[None]])
RELOAD: web.AppKey[Reload] = web.AppKey("reload")
# Whether POST /-/reload is served (web_enable_lifecycle), asked at each request: a reload may
# turn it on or off.
LIFECYCLE: web.AppKey[Callable[[], bool]] = web.AppKey("lifecycle")


def build_app(
    store: Store,
    registry: CollectorRegistry,
    poll_loops: Sequence[PollTask] = (),
    middlewares: Iterable[Any] = (),
    reload: Reload | None = None,
    lifecycle: Callable[[], bool] = lambda: False,
) -> web.Application:
    """The exporter's aiohttp application; `poll_loops` run for as long as the app does.

    `POST /-/reload` runs `reload` only while `lifecycle()` is true (web_enable_lifecycle);
    otherwise it answers 403, as Prometheus does without --web.enable-lifecycle.
    """
    app = web.Application(middlewares=list(middlewares))
    app[STORE] = store
    app[PAGE_CACHE] = PageCache()
    app[POLL_TASKS] = []
    app[LIFECYCLE] = lifecycle
    if reload is not None:
        app[RELOAD] = reload
        # POST only (aiohttp answers 405 to other methods); behind the same middlewares as all.
        app.router.add_post("/-/reload", reload_config)

    async def run_pollers(app: web.Application) -> AsyncIterator[None]:
        tasks = app[POLL_TASKS]
        tasks.extend(asyncio.create_task(loop(), name="poller") for loop in poll_loops)
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.cleanup_ctx.append(run_pollers)
    exposition = app[EXPOSITION] = ExpositionCache(registry, store)
    app.on_cleanup.append(exposition.close)
    app.router.add_get("/metrics", exposition.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", landing_page)
    return app


async def healthz(request: web.Request) -> web.Response:
    """200 while every poll loop is alive."""
    dead = [t for t in request.app[POLL_TASKS] if t.done()]
    if dead:
        return web.Response(status=503, text="poll loop stopped\n")
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """200 once every organisation has finished its first poll."""
    if request.app[STORE].ready:
        return web.Response(text="ready\n")
    return web.Response(status=503, text="waiting for the first poll of every organisation\n")


async def reload_config(request: web.Request) -> web.Response:
    """Reload the configuration (SPEC §8): 200, or 500 with the one-line reason; 403 unless
    web_enable_lifecycle is on.

    The 500's line names the settings and where they came from, never a value or a path (the
    caller may be anyone the web config lets in; the log says why).
    """
    if not request.app[LIFECYCLE]():
        return web.Response(status=403, text="lifecycle API is not enabled\n")
    try:
        await request.app[RELOAD]("http")
    except ConfigError as exc:
        errors = exc.all
        more = len(errors) - 1
        tail = f"; {more} more problem{'s' * (more > 1)}" if more else ""
        line = f"reload refused: {errors[0].summary}{tail}; the log says why"
        return web.Response(status=500, text=line + "\n")
    return web.Response(text="configuration reloaded\n")


async def landing_page(request: web.Request) -> web.Response:
    """Version, links and per-organisation status; shows nothing secret."""
    source = request.app.get(PAGE_INFO_SOURCE)
    info = source() if source else request.app.get(PAGE_INFO) or DEFAULT_PAGE_INFO
    refresh = refresh_seconds(request.query.get("refresh"), info.poll_interval)
    body = request.app[PAGE_CACHE].get(info, request.app[STORE], time.time(), refresh)
    return web.Response(text=body, content_type="text/html")


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    on_started: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    guard: ConnectionGuard | None = None,
) -> None:
    """Serve `app` until `stop` is set, then shut down cleanly.

    Every connection passes through `guard` (max_connections, header_timeout, keep-alive). The
    process's signals are the app's to handle (`exporter.app.signals`): it sets `stop`.
    """
    stop = stop or asyncio.Event()
    guard = guard or ConnectionGuard()
    loop = asyncio.get_running_loop()
    app.middlewares.insert(0, guard.middleware)  # outermost, before setup freezes the list
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=0.5,
        keepalive_timeout=guard.limits.keepalive_timeout,
    )  # fmt: skip
    server_log = logging.getLogger("aiohttp.server")
    server_log.addFilter(guard.filter_server_log)
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(guard.handle_loop_exception)
    listener: asyncio.Server | None = None
    await runner.setup()
    try:
        assert runner.server is not None  # noqa: S101 - set by setup()
        listener = await loop.create_server(
            guard.protocol_factory(runner.server),
            host or None,
            port,
            ssl=ssl_context,
            # A TLS handshake comes before the header timer starts: bound it the same way.
            ssl_handshake_timeout=guard.limits.header_timeout if ssl_context else None,
            backlog=128,
        )
        if on_started is not None:
            on_started(_url(host, listener, port, ssl_context is not None))
        await stop.wait()
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()
        loop.set_exception_handler(previous_handler)
        server_log.removeFilter(guard.filter_server_log)


def _url(host: str, listener: asyncio.Server, port: int, tls: bool) -> str:
    shown = host if host and host not in ("0.0.0.0", "::") else "localhost"  # noqa: S104 -- compared, not bound
    shown = f"[{shown}]" if ":" in shown else shown
    bound = listener.sockets[0].getsockname()[1] if listener.sockets else port
    return f"{'https' if tls else 'http'}://{shown}:{bound}/metrics"
