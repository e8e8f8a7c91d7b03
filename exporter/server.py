"""The HTTP side: `/metrics`, `/healthz`, `/readyz` and the landing page; owns the poll tasks.

Poll tasks live in a `cleanup_ctx`, so stopping the app cancels and awaits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import signal
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.exposition import ExpositionCache
from exporter.store import Store

PollTask = Callable[[], Coroutine[Any, Any, None]]

STORE = web.AppKey("store", Store)
POLL_TASKS = web.AppKey("poll_tasks", list[asyncio.Task[None]])


def build_app(
    store: Store,
    registry: CollectorRegistry,
    poll_loops: Sequence[PollTask] = (),
    middlewares: Iterable[Any] = (),
) -> web.Application:
    """The exporter's aiohttp application; `poll_loops` run for as long as the app does."""
    app = web.Application(middlewares=list(middlewares))
    app[STORE] = store
    app[POLL_TASKS] = []

    async def run_pollers(app: web.Application) -> AsyncIterator[None]:
        tasks = app[POLL_TASKS]
        tasks.extend(asyncio.create_task(loop(), name="poller") for loop in poll_loops)
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.cleanup_ctx.append(run_pollers)
    exposition = ExpositionCache(registry, store)
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


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def landing_page(request: web.Request) -> web.Response:
    """Version, links and per-organisation status; shows nothing secret."""
    rows = []
    for state in request.app[STORE].orgs.values():
        status = "up" if state.up else ("down" if state.polled else "pending")
        error = f"{state.last_error_reason}: {state.last_error}" if state.last_error else ""
        rows.append(
            f"<tr><td>{html.escape(state.org)}</td><td class={status}>{status}</td>"
            f"<td>{_when(state.last_success)}</td><td>{html.escape(error)}</td></tr>"
        )
    body = f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>Alvaria EmailQueue exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em 1em;text-align:left}}
.up{{color:#1a7f37}}.down{{color:#cf222e}}.pending{{color:#9a6700}}</style></head>
<body><h1>Alvaria EmailQueue exporter</h1><p>Version {__version__}</p>
<ul><li><a href="metrics">Metrics</a></li><li><a href="healthz">Health</a></li>
<li><a href="readyz">Readiness</a></li></ul>
<table><tr><th>Organisation</th><th>Status</th><th>Last success</th><th>Last error</th></tr>
{"".join(rows)}
</table></body></html>
"""
    return web.Response(text=body, content_type="text/html")


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    on_started: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve `app` until SIGTERM/SIGINT (or `stop` is set), then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host or None, port, ssl_context=ssl_context)
        await site.start()
        if on_started is not None:
            scheme = "https" if ssl_context else "http"
            shown = host if host and host not in ("0.0.0.0", "::") else "localhost"  # noqa: S104 -- compared, not bound
            shown = f"[{shown}]" if ":" in shown else shown
            bound = runner.addresses[0][1] if runner.addresses else port
            on_started(f"{scheme}://{shown}:{bound}/metrics")
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await runner.cleanup()
