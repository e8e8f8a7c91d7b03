"""Reloader: validate and build first, then swap at once; refusals change nothing."""

from __future__ import annotations

import asyncio
import gc
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web as aiohttp_web
from prometheus_client import CollectorRegistry

from exporter.domain.errors import ConfigError
from exporter.fleet.pollers import Fleet
from exporter.fleet.reload import Hooks, Reloader
from exporter.metrics.families import Registry
from exporter.metrics.fleet import FleetCollector
from exporter.polling.store import Store
from exporter.settings import Settings, web_config
from exporter.settings.web_config import WebConfig
from exporter.web.access import LiveWebConfig
from exporter.web.exposition import ExpositionCache
from exporter.web.server import build_app
from tests.certs import Certs, make_certs
from tests.fakes import free_port
from tests.fleet.test_pollers import Builder, settings, target


class Loads:
    """A configuration source the test edits between reloads."""

    def __init__(self, cfg: Settings) -> None:
        self.cfg: Settings | Exception = cfg
        self.web = WebConfig()

    def __call__(self) -> tuple[Settings, WebConfig]:
        if isinstance(self.cfg, Exception):
            raise self.cfg
        return self.cfg, self.web


def reloader(cfg: Settings, build: Builder | None = None) -> tuple[Reloader, Loads, list[str]]:
    fleet = Fleet(Store([]), build or Builder())
    fleet.apply(fleet.plan(cfg))
    loads = Loads(cfg)
    finished: list[str] = []

    def prepare(new: Settings) -> object:
        return lambda: finished.append(new.log_level)

    hooks = Hooks(prepare)  # type: ignore[arg-type]
    return Reloader(loads, fleet, LiveWebConfig(WebConfig()), cfg, hooks=hooks), loads, finished


async def test_success_swaps_and_records_the_time() -> None:
    r, loads, finished = reloader(settings(target("a")))
    loads.cfg = settings(target("a"), target("b"), log_level="debug")
    before = time.time()
    await r.reload("test")
    store = r._fleet.store
    assert list(store.orgs) == ["a", "b"] and finished == ["debug"]
    assert store.fleet.last_reload_successful
    assert store.fleet.last_reload_success is not None and store.fleet.last_reload_success >= before


async def test_listen_address_needs_a_restart() -> None:
    r, loads, finished = reloader(settings(target("a")))
    loads.cfg = settings(target("a"), target("b"), listen_address="127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"listen_address.*needs a restart"):
        await r.reload("test")
    assert list(r._fleet.store.orgs) == ["a"] and not finished
    assert not r._fleet.store.fleet.last_reload_successful


async def test_a_target_that_cannot_be_built_changes_nothing() -> None:
    build = Builder()
    r, loads, finished = reloader(settings(target("a")), build)
    state = r._fleet.store.orgs["a"]
    build.fail_for = "c"
    loads.cfg = settings(target("a", secret="rotated"), target("b"), target("c"))
    with pytest.raises(ConfigError):
        await r.reload("test")
    assert r._fleet.store.orgs == {"a": state} and not finished
    # The last good configuration is what a later reload compares with.
    assert r.current.targets == (target("a"),)


async def test_turning_tls_on_needs_a_restart() -> None:
    r, loads, _ = reloader(settings(target("a")))
    loads.web = WebConfig(ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    with pytest.raises(ConfigError, match=r"web_config_file.*TLS on or off"):
        await r.reload("test")


async def test_an_unexpected_error_is_one_line_and_changes_nothing() -> None:
    r, loads, _ = reloader(settings(target("a")))
    loads.cfg = RuntimeError("boom")
    with pytest.raises(ConfigError, match="internal error: RuntimeError"):
        await r.reload("test")
    assert list(r._fleet.store.orgs) == ["a"]


async def test_a_renewed_certificate_serves_the_next_handshake(tmp_path: Path) -> None:
    first, second = make_certs(_dir(tmp_path, "a")), make_certs(_dir(tmp_path, "b"))
    web = tmp_path / "web.yml"

    def use(certs: Certs) -> WebConfig:
        web.write_text(
            f"tls_server_config:\n  cert_file: {certs.server_cert}\n"
            f"  key_file: {certs.server_key}\n"
        )
        return web_config.load(web)

    live = LiveWebConfig(use(first))
    app = build_app(Store([]), CollectorRegistry(), middlewares=[live.middleware])
    runner = aiohttp_web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await aiohttp_web.TCPSite(runner, "127.0.0.1", port, ssl_context=live.server_context).start()
    url = f"https://127.0.0.1:{port}/healthz"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=first.client_context()) as resp:
                assert resp.status == 200
            renewed = use(second)
            assert live.check(renewed) is None
            live.swap(renewed)
            async with session.get(url, ssl=second.client_context()) as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with session.get(url, ssl=first.client_context()):
                    pass
    finally:
        await runner.cleanup()


def _dir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir()
    return path


class CountingLoads(Loads):
    """Loads that count how often the files were read, each read taking a little while."""

    def __init__(self, cfg: Settings) -> None:
        super().__init__(cfg)
        self.reads = 0

    def __call__(self) -> tuple[Settings, WebConfig]:
        self.reads += 1
        time.sleep(0.05)  # reading and validating take time: requests arrive meanwhile
        return super().__call__()


async def test_concurrent_reloads_share_one() -> None:
    fleet = Fleet(Store([]), Builder())
    cfg = settings(target("a"))
    fleet.apply(fleet.plan(cfg))
    loads = CountingLoads(settings(target("a"), target("b")))
    r = Reloader(loads, fleet, LiveWebConfig(WebConfig()), cfg)
    await asyncio.gather(*(r.reload(f"http {i}") for i in range(200)))
    assert loads.reads <= 2, "one reload running, at most one more for everyone who came later"
    assert list(fleet.store.orgs) == ["a", "b"]
    # Requests that arrive after a reload started get one of their own (the files may have
    # changed since it read them).
    before = loads.reads
    first = asyncio.create_task(r.reload("first"))
    await asyncio.sleep(0.01)  # it has started reading
    await asyncio.gather(first, *(r.reload("later") for _ in range(50)))
    assert loads.reads == before + 2


async def test_concurrent_reloads_share_a_refusal() -> None:
    r, loads, _ = reloader(settings(target("a")))
    loads.cfg = ConfigError("poll_interval", "test", "refused")
    results = await asyncio.gather(*(r.reload("x") for i in range(20)), return_exceptions=True)
    assert all(isinstance(e, ConfigError) for e in results)


class SlowBuilder(Builder):
    """A builder that takes its time per organisation, as a large configuration does."""

    def __call__(self, *args: Any) -> Any:
        time.sleep(0.02)
        return super().__call__(*args)


async def test_building_runs_off_the_event_loop() -> None:
    build = SlowBuilder()
    r, loads, _ = reloader(settings(target("a")), build)
    loads.cfg = settings(*(target(f"o{i}") for i in range(25)))  # ~0.5 s of building
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append(time.monotonic() - before)

    ticking = asyncio.create_task(ticker())
    try:
        await r.reload("test")
    finally:
        ticking.cancel()
    assert len(r._fleet.store.orgs) == 25
    assert max(lags) < 0.2, max(lags)


async def test_a_refused_reload_shows_in_the_very_next_scrape() -> None:
    # A /metrics body is shared for up to a second; one rendered before a refused reload must
    # not be served after it with config_last_reload_successful 1. The clock stands still here.
    r, loads, _ = reloader(settings(target("a")))
    store = r._fleet.store
    registry = Registry()
    registry.register(FleetCollector(store))
    cache = ExpositionCache(registry, store, clock=lambda: 0.0)
    line = "alvaria_emailqueue_config_last_reload_successful"
    try:
        assert f"{line} 1.0" in (await cache.body("text", False)).decode()
        loads.cfg = ConfigError("poll_interval", "reload", "bad")
        with pytest.raises(ConfigError):
            await r.reload("http")
        assert f"{line} 0.0" in (await cache.body("text", False)).decode()
        loads.cfg = settings(target("a"))
        await r.reload("http")
        assert f"{line} 1.0" in (await cache.body("text", False)).decode()
    finally:
        await cache.close()


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


async def test_what_a_reload_builds_is_out_of_the_collectors_sight_when_collection_resumes(
    unfrozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Otherwise the first young collection walks every new poller in one go, holding the GIL.
    r, loads, _ = reloader(settings(target("a")))
    loads.cfg = settings(target("a", secret="rotated"), target("b"))
    gc.unfreeze()
    await r.reload("test")
    new = [p for org, p in zip("ab", r._fleet.pollers, strict=True) if org == "b"]
    watched = {id(o) for o in gc.get_objects()}
    assert new and not any(id(p) in watched for p in new)
    assert id(r._fleet.store.orgs["b"]) not in watched
    # An unchanged configuration builds nothing: nothing is frozen (only garbage would be).
    freezes: list[None] = []
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append(None))
    await r.reload("test")
    assert not freezes
