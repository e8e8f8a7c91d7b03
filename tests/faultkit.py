"""A loopback upstream whose every answer a test can script, and the real pipeline polling it.

The pipeline is the production one (transport, token provider, client, poller, store, collector)
over a real aiohttp session; only `sleep` is fake, so retries and Retry-After cost no time and
the delays asked for are recorded.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from exporter.app.wiring import build_poller, build_registry
from exporter.domain.scrub import remember_secrets
from exporter.polling.poller import Poller
from exporter.polling.store import Store
from exporter.settings import Settings, TargetSettings
from exporter.upstream.ratelimit import RequestBudget
from exporter.upstream.targets import configured_secrets
from exporter.web.server import build_app, landing_page
from tests.fakes import Clock

ORG = "acme"
API_KEY = "apikey-7f3c9e"
CLIENT_ID = "client-1"
CLIENT_SECRET = "clientsecret-41d8"
TOKEN = "bearer-token-b3a1"
ADDRESS = "jane.customer@example.com"
SUBJECT = "Refund for order 1234"
UM_ID = "um-5550199"
SECRETS = (API_KEY, CLIENT_SECRET, TOKEN, ADDRESS, SUBJECT, UM_ID)
EMAILS_PATH = f"/via/v2/organizations/{ORG}/emailQueue/emails"
TOKEN_PATH = "/tokenservice/oauth2/access_token"


def item(n: int, **extra: Any) -> dict[str, Any]:
    """An email item carrying personal data that must never leave the exporter."""
    return {
        "id": str(n),
        "state": "Queued",
        "emailType": "InboundEmail",
        "workTypeId": "11",
        "workTypeName": "Billing",
        "queuedTime": "2024-01-01T00:00:00Z",
        "fromAddress": ADDRESS,
        "toAddress": ADDRESS,
        "subject": SUBJECT,
        "umId": UM_ID,
        **extra,
    }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Upstream:
    """The API on a loopback port; `on_emails`/`on_token` replace the well-behaved defaults."""

    items: list[dict[str, Any]] = field(default_factory=lambda: [item(n) for n in range(7)])
    page_cap: int = 3
    report_total: bool = True
    expires_in: float | None = 3600
    on_emails: Handler | None = None
    on_token: Handler | None = None
    calls: Counter[str] = field(default_factory=Counter)
    base_url: str = ""

    async def serve_page(self, request: web.Request) -> web.Response:
        """The honest answer: one page of `items`."""
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"code": 401, "message": "unauthorized"}, status=401)
        start = int(request.query["startIndex"])
        size = min(int(request.query["maxResults"]), self.page_cap)
        body: dict[str, Any] = {"items": self.items[start : start + size]}
        if self.report_total:
            body["totalItems"] = len(self.items)
        return web.json_response(body)

    async def issue_token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "invalid_client"}, status=401)
        body: dict[str, Any] = {"access_token": TOKEN, "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return web.json_response(body)

    async def _emails(self, request: web.Request) -> web.StreamResponse:
        self.calls["emails"] += 1
        return await (self.on_emails or self.serve_page)(request)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        self.calls["token"] += 1
        return await (self.on_token or self.issue_token)(request)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(EMAILS_PATH, self._emails)
        app.router.add_post(TOKEN_PATH, self._token)
        return app


@asynccontextmanager
async def serving(
    upstream: Upstream, ssl_context: SSLContext | None = None
) -> AsyncIterator[Upstream]:
    server = TestServer(upstream.app(), host="127.0.0.1", port=0)
    await server.start_server(ssl=ssl_context)
    upstream.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield upstream
    finally:
        await server.close()


@dataclass
class Rig:
    """The production pipeline for one organisation, pointed at an `Upstream`."""

    poller: Poller
    store: Store
    registry: CollectorRegistry
    clock: Clock
    sleeps: list[float]
    logs: list[MutableMapping[str, Any]]

    @property
    def state(self) -> Any:
        return self.store.orgs[ORG]

    async def poll(self) -> tuple[bool, float]:
        """One poll; its outcome and how long it really took."""
        started = time.monotonic()
        with structlog.testing.capture_logs() as captured:
            ok = await self.poller.poll_once()
        self.logs.extend(captured)
        return ok, time.monotonic() - started

    def metrics_text(self) -> str:
        return generate_latest(self.registry).decode()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(self.metrics_text())
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted({"org": ORG, **labels}.items()))))

    def emails_total(self) -> float:
        return sum(v for (n, _), v in self.metrics().items() if n == "alvaria_emailqueue_emails")

    async def landing(self) -> str:
        app = build_app(self.store, self.registry)
        response = await landing_page(make_mocked_request("GET", "/", app=app))
        assert isinstance(response, web.Response) and response.text is not None
        return response.text

    async def assert_no_leak(self) -> None:
        """No secret and no personal data in logs, /metrics, the landing page or the error."""
        texts = [repr(self.logs), self.metrics_text(), await self.landing()]
        texts.append(repr(self.state.last_error))
        for text in texts:
            for secret in SECRETS:
                assert secret not in text, (secret, text[:2000])


@asynccontextmanager
async def rig(
    upstream: Upstream,
    *,
    api_url: str | None = None,
    token_url: str | None = None,
    request_timeout: float = 2.0,
    max_retries: int = 2,
    poll_interval: float = 10.0,
    max_pages: int = 1000,
    max_response_bytes: int = 1024 * 1024,
    ssl: Any = True,
    server_ssl: SSLContext | None = None,
    client_secret: str = CLIENT_SECRET,
    max_requests_per_second: float | None = None,
) -> AsyncIterator[Rig]:
    """Serve `upstream` and build the production pipeline against it (or the given URLs)."""
    async with serving(upstream, server_ssl), aiohttp.ClientSession() as session:
        store = Store([ORG])
        clock = Clock()
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            await asyncio.sleep(0)

        target = TargetSettings(
            org_id=ORG,
            api_key=SecretStr(API_KEY),
            client_id=CLIENT_ID,
            client_secret=SecretStr(client_secret),
            api_url=api_url or upstream.base_url,
            token_url=token_url or upstream.base_url + TOKEN_PATH,
        )
        cfg = Settings(
            targets=(target,),
            poll_interval=poll_interval,
            page_size=100,
            max_concurrency=2,
            request_timeout=request_timeout,
            max_retries=max_retries,
            max_pages=max_pages,
            max_response_bytes=max_response_bytes,
            age_buckets=(60.0, 3600.0),
        )
        remember_secrets(configured_secrets(cfg), keep_previous=False)  # as the daemon does
        state = store.orgs[ORG]
        budget = RequestBudget(max_requests_per_second) if max_requests_per_second else None
        lane = budget.lane(ORG, state.observe_rate_limit_wait) if budget else None
        poller = build_poller(
            target, cfg, session, state, ssl, clock=clock, sleep=sleep, limiter=lane
        )
        registry = build_registry(store, cfg, clock=clock)
        yield Rig(poller, store, registry, clock, sleeps, [])
