"""The web config applied by the HTTP server: basic auth and headers on every request, the TLS
context swapped on reload.

Like exporter-toolkit, basic auth covers every path, ``/healthz`` and ``/readyz`` included: the
format has no way to exempt a path.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter.settings.web_config import WebConfig
from exporter.web.basic_auth import BasicAuth, Verdict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard_for(
    config: WebConfig, auth: BasicAuth | None
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Basic auth on every path, then the configured headers on every response."""
    headers = dict(config.headers)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        verdict = Verdict.OK
        if auth is not None:
            verdict = await auth.judge(request.headers.get("Authorization"))
        if verdict is Verdict.DENIED:
            response: web.StreamResponse = web.Response(
                status=401,
                text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="alvaria-emailqueue-exporter"'},
            )
        elif verdict is Verdict.BUSY and auth is not None:
            await asyncio.sleep(auth.busy_delay)
            response = web.Response(
                status=503,
                text="Too many credentials waiting to be checked; retry\n",
                headers={"Retry-After": "1"},
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                exc.headers.update(headers)
                raise
        if not response.prepared:
            response.headers.update(headers)
        return response

    return guard


class LiveWebConfig:
    """The web config in force, swapped by a reload: basic auth and headers apply to the next
    request, certificates to the next TLS handshake.

    The listening socket keeps the TLS context it started with; its SNI callback (called on
    every handshake, with or without SNI) hands the connection the current context instead.
    Turning TLS on or off, or changing client certificate checks, needs a restart.
    """

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.auth = BasicAuth(config.users) if config.users else None
        self._guard = guard_for(config, self.auth)
        self._server_context = config.ssl_context
        if self._server_context is not None:
            self._server_context.sni_callback = self._pick_context

    @property
    def server_context(self) -> ssl.SSLContext | None:
        """The context to listen with (fixed for the life of the process)."""
        return self._server_context

    def check(self, new: WebConfig) -> str | None:
        """Why `new` cannot replace the config in force without a restart, or None."""
        old = self._server_context
        if (old is None) != (new.ssl_context is None):
            return "turning TLS on or off needs a restart"
        if old is not None and new.ssl_context is not None:
            if old.verify_mode != new.ssl_context.verify_mode:
                return "changing client_auth_type needs a restart"
        return None

    def swap(self, new: WebConfig) -> None:
        """Put `new` in force; call only after `check` returned None.

        Unchanged users keep their `BasicAuth`, and with it the passwords it has already
        verified: a reload during a password-guessing flood must not send every legitimate
        scraper back through bcrypt, where the flood keeps it busy (503).
        """
        if not (self.auth is not None and new.users == self.config.users):
            self.auth = BasicAuth(new.users) if new.users else None
        self.config = new
        self._guard = guard_for(new, self.auth)

    def _pick_context(self, conn: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        current = self.config.ssl_context
        if current is not None and current is not ctx:
            conn.context = current

    @property
    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        """A middleware that always applies the config in force."""

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._guard(request, handler)

        return guard
