"""The API's own limits end to end: the real pipeline against the simulator's gateway, a
Retry-After no one should wait out, and the certificate of a TLS upstream (SPEC §11)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.app.wiring import build_poller, build_registry
from exporter.polling.store import Store
from exporter.settings import Settings
from exporter.simulator import SimulatorConfig
from exporter.simulator.app import SIMULATOR, create_app
from exporter.upstream.ratelimit import RequestRateLimiter
from exporter.upstream.targets import upstream_ssl
from exporter.web.server import build_app
from tests import fake_alvaria
from tests.certs import make_certs
from tests.fake_alvaria import FakeAlvaria, serving, target_for
from tests.pipeline import rig

ORG = "demo"
PREFIX = "alvaria_emailqueue_"


class ScaledTime:
    """Wall clock, monotonic clock and sleep running `factor` times faster than real time,
    shared by the simulator and the exporter, so a 30 s scenario takes 30 / factor seconds."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self._m0, self._w0 = time.monotonic(), time.time()

    def monotonic(self) -> float:
        return (time.monotonic() - self._m0) * self.factor

    def wall(self) -> float:
        return self._w0 + self.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.factor)


def samples(registry: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()  # type: ignore[arg-type]
    return {
        (s.name.removeprefix(PREFIX), tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    return found.get((name, tuple(sorted({"org": ORG, **labels}.items()))))


@asynccontextmanager
async def simulated(
    config: SimulatorConfig, clock: Callable[[], float] = time.time
) -> AsyncIterator[tuple[web.Application, str]]:
    app = create_app(config, clock=clock)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield app, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def settings(
    base_url: str,
    *,
    org: str = ORG,
    key: str = "demo",
    secret: str = "demo",
    client: str = "demo",
    **exporter: object,
) -> Settings:
    target = target_for(base_url, org=org, api_key=key, client_id=client, client_secret=secret)
    return Settings(targets=(target,), age_buckets=(60.0, 3600.0), **exporter)


async def test_polls_stay_within_the_gateways_budget() -> None:
    # 25 requests per 10 s per key; 100 emails in pages of 10 (10 requests a poll, and a token
    # request at first) every 2 s: twice the budget. Run for 30 s, five times faster than real.
    scaled = ScaledTime(5.0)
    config = SimulatorConfig(scenario="large", emails=100, seed=1, rate_limit=(25, 10.0))
    async with simulated(config, scaled.wall) as (app, url), aiohttp.ClientSession() as session:
        cfg = settings(url, poll_interval=2.0, page_size=10, max_concurrency=4, request_timeout=1.0)
        store = Store([ORG])
        state = store.orgs[ORG]
        lane = RequestRateLimiter(None, clock=scaled.wall).lane(
            ORG,
            state.observe_rate_limit_wait,
            max_wait=cfg.stale_after,
            sleep=scaled.sleep,
            monotonic=scaled.monotonic,
        )
        poller = build_poller(
            cfg.targets[0], cfg, session, state, True,
            clock=scaled.wall, sleep=scaled.sleep, limiter=lane, monotonic=scaled.monotonic,
        )  # fmt: skip
        task = asyncio.create_task(poller.run())
        try:
            done, _ = await asyncio.wait({task}, timeout=30.0 / scaled.factor)
            assert not done  # the poll loop never ends on its own
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        gateway = app[SIMULATOR].gateway
        assert gateway is not None
        found = samples(build_registry(store, cfg, clock=scaled.wall))
    refused = sum(gateway.refused.values())
    assert refused <= 1, (refused, dict(state.api_requests))
    assert state.rate_limit_wait > 2.0
    assert value(found, "rate_limit_wait_seconds_total") == state.rate_limit_wait
    # Polls keep succeeding: about two per 10 s window, none of them failed.
    assert state.polls >= 5 and sum(state.poll_errors.values()) == 0, state.poll_errors
    assert state.up
    assert value(found, "api_rate_limit_limit", endpoint="emails") == 25
    assert value(found, "api_rate_limit_limit", endpoint="token") == 25


@pytest.mark.parametrize("style", ["ietf", "x", "x-epoch"])
async def test_each_header_spelling_exports_limit_remaining_and_reset(style: str) -> None:
    config = SimulatorConfig(seed=1, rate_limit=(110, 60.0), rate_limit_headers=style)
    async with simulated(config) as (_, url), aiohttp.ClientSession() as session:
        cfg = settings(url, poll_interval=30.0)
        store = Store([ORG])
        poller = build_poller(cfg.targets[0], cfg, session, store.orgs[ORG], True)
        before = time.time()
        assert await poller.poll_once()
        found = samples(build_registry(store, cfg))
    sent = sum(store.orgs[ORG].api_requests.values())
    assert value(found, "api_rate_limit_limit", endpoint="token") == 110
    assert value(found, "api_rate_limit_remaining", endpoint="token") == 109
    assert value(found, "api_rate_limit_limit", endpoint="emails") == 110
    assert value(found, "api_rate_limit_remaining", endpoint="emails") == 110 - sent
    for endpoint in ("token", "emails"):
        reset = value(found, "api_rate_limit_reset_timestamp_seconds", endpoint=endpoint)
        assert reset is not None and before < reset <= time.time() + 61, (endpoint, reset)
    # Plain http: no certificate to report.
    assert not any(name == "api_certificate_expiry_timestamp_seconds" for name, _ in found)


async def test_a_retry_after_of_27_hours_keeps_polls_on_schedule() -> None:
    answered: list[float] = []

    async def throttled(request: web.Request) -> web.Response:
        answered.append(time.monotonic())
        return web.json_response({"code": 429}, status=429, headers={"Retry-After": "100000"})

    upstream = FakeAlvaria(on_emails=throttled)
    async with serving(upstream), aiohttp.ClientSession() as session:
        cfg = settings(
            upstream.base_url,
            org=fake_alvaria.ORG,
            key=fake_alvaria.API_KEY,
            client=fake_alvaria.CLIENT_ID,
            secret=fake_alvaria.CLIENT_SECRET,
            poll_interval=0.25,
            request_timeout=0.5,
        )
        store = Store([fake_alvaria.ORG])
        poller = build_poller(cfg.targets[0], cfg, session, store.orgs[fake_alvaria.ORG], True)
        app = build_app(store, build_registry(store, cfg), [poller.run])
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        health: list[float] = []
        try:
            async with asyncio.timeout(10):
                while len(answered) < 6:
                    started = time.monotonic()
                    async with session.get(server.make_url("/healthz")) as resp:
                        assert resp.status == 200
                    health.append(time.monotonic() - started)
                    await asyncio.sleep(0.05)
        finally:
            await server.close()
    state = store.orgs[fake_alvaria.ORG]
    # One request a poll, each poll failing as rate limited, every poll_interval: not 27 hours.
    gaps = [b - a for a, b in itertools.pairwise(answered)]
    assert all(0.2 <= gap < 0.6 for gap in gaps), gaps
    assert state.poll_errors["rate_limited"] >= 5 and state.poll_errors.total() == state.polls
    assert max(health) < 0.2, health


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext, float]:
    certs = make_certs(tmp_path_factory.mktemp("limits-certs"))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(certs.server_cert, certs.server_key)
    cert = x509.load_pem_x509_certificate(certs.server_cert.read_bytes())
    return certs.ca, server, cert.not_valid_after_utc.timestamp()


async def test_a_tls_upstream_trusted_through_ca_file_exports_its_certificates_expiry(
    tls_upstream: tuple[Path, ssl.SSLContext, float],
) -> None:
    ca_file, server_ssl, not_after = tls_upstream
    assert not_after > time.time() and not_after == int(not_after)
    # The context the daemon builds from `ca_file` (the system store does not know this CA).
    trusted = upstream_ssl(settings("https://127.0.0.1", ca_file=ca_file))
    async with rig(FakeAlvaria(), server_ssl=server_ssl, ssl=trusted) as r:
        assert (await r.poll())[0]
        assert (
            r.value(PREFIX + "api_certificate_expiry_timestamp_seconds", endpoint="emails")
            == not_after
        )
        assert (
            r.value(PREFIX + "api_certificate_expiry_timestamp_seconds", endpoint="token")
            == not_after
        )
        exact = dt.datetime.fromtimestamp(not_after, dt.UTC)
        assert exact.microsecond == 0
