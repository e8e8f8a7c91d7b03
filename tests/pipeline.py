"""The production pipeline for one organisation, polling the fake Alvaria over a real socket.

The pipeline is the production one (transport, token provider, client, poller, store, collector)
over a real aiohttp session; only `sleep` is fake, so retries and Retry-After cost no time and
the delays asked for are recorded (the fake wall clock moves on by them). The upstream is
`tests.fake_alvaria.FakeAlvaria`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app.wiring import build_poller, build_registry
from exporter.domain.scrub import remember_secrets
from exporter.polling.poller import Poller
from exporter.polling.store import Store
from exporter.settings import Settings
from exporter.upstream.ratelimit import RequestRateLimiter
from exporter.upstream.targets import configured_secrets
from exporter.web.server import build_app, landing_page
from tests.fake_alvaria import (
    CLIENT_SECRET,
    ORG,
    SECRETS,
    FakeAlvaria,
    serving,
    target_for,
)
from tests.fakes import Clock


@dataclass
class Rig:
    """The production pipeline for one organisation, pointed at a `FakeAlvaria`."""

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
    upstream: FakeAlvaria,
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
            clock.now += seconds  # the wall clock moves with the time slept
            await asyncio.sleep(0)

        target = target_for(
            upstream.base_url, client_secret=client_secret, api_url=api_url, token_url=token_url
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
        limiter = RequestRateLimiter(max_requests_per_second) if max_requests_per_second else None
        lane = limiter.lane(ORG, state.observe_rate_limit_wait) if limiter else None
        poller = build_poller(
            target, cfg, session, state, ssl, clock=clock, sleep=sleep, limiter=lane
        )
        registry = build_registry(store, cfg, clock=clock)
        yield Rig(poller, store, registry, clock, sleeps, [])
