"""The HTTP endpoints: metrics negotiation, health, readiness and the landing page."""

from __future__ import annotations

import asyncio
import gzip

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from exporter.aggregation.builder import AggregationOptions, aggregate
from exporter.domain.models import Email
from exporter.metrics.queue import QueueCollector
from exporter.polling.store import Store
from exporter.web.server import build_app


def make_app(store: Store, loops=()):
    registry = CollectorRegistry()
    registry.register(
        QueueCollector(store, age_buckets=(60.0,), stale_after=1e9, poll_interval=30.0)
    )
    return build_app(store, registry, loops)


async def test_readyz_waits_for_every_first_poll_and_healthz_tracks_loops() -> None:
    store = Store(["a", "b"])
    started = asyncio.Event()

    async def loop() -> None:
        started.set()
        await asyncio.Event().wait()

    async with TestClient(TestServer(make_app(store, [loop]))) as client:
        await started.wait()
        assert (await client.get("/readyz")).status == 503
        store.orgs["a"].record_failure("timeout", "timed out", 1.0, None)
        assert (await client.get("/readyz")).status == 503
        snap = aggregate([], now=0, options=AggregationOptions())
        store.orgs["b"].record_success(snap, 1.0, None, None)
        assert (await client.get("/readyz")).status == 200
        assert (await client.get("/healthz")).status == 200


async def test_healthz_fails_when_a_poll_loop_died() -> None:
    async def crashes() -> None:
        raise RuntimeError("bug")

    async with TestClient(TestServer(make_app(Store(["a"]), [crashes]))) as client:
        await asyncio.sleep(0)
        assert (await client.get("/healthz")).status == 503


async def test_metrics_text_openmetrics_and_gzip() -> None:
    store = Store(["acme"])
    snap = aggregate([Email(id="1", state="Queued")], now=0, options=AggregationOptions())
    store.orgs["acme"].record_success(snap, 1.0, None, None)
    async with TestClient(TestServer(make_app(store))) as client:
        text = await client.get("/metrics")
        assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'alvaria_emailqueue_up{org="acme"} 1.0' in await text.text()
        om = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        body = await om.text()
        assert "# TYPE alvaria_emailqueue_waiting_email_age_seconds gaugehistogram" in body
        assert body.endswith("# EOF\n")
        raw = await client.get(
            "/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False
        )
        assert raw.headers["Content-Encoding"] == "gzip"
        assert b"alvaria_emailqueue_up" in gzip.decompress(await raw.read())


async def test_landing_page_escapes_and_shows_status() -> None:
    store = Store(["<org>"])
    store.orgs["<org>"].record_failure("http_5xx", "API answered 503 <b>", 1.0, None)
    async with TestClient(TestServer(make_app(store))) as client:
        page = await (await client.get("/")).text()
    assert "&lt;org&gt;" in page and "<org>" not in page
    assert "<b>http_5xx</b>: API answered 503 &lt;b&gt;" in page
    assert 'href="metrics"' in page


async def test_reload_answers_only_with_the_lifecycle_api_enabled() -> None:
    from exporter.domain.errors import ConfigError, ConfigErrors

    enabled = False
    calls: list[str] = []

    async def reload(trigger: str) -> None:
        calls.append(trigger)
        raise ConfigErrors(
            [
                ConfigError(
                    "poll_interval",
                    "config file /etc/x/c.yml (poll_interval)",
                    "'sk-live-123' is not a duration",
                ),
                ConfigError("targets[0].api_key", "file ALVARIA_API_KEY_FILE=/run/k", "empty"),
            ]
        )

    app = build_app(Store([]), CollectorRegistry(), reload=reload, lifecycle=lambda: enabled)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/-/reload")
        assert (response.status, await response.text()) == (403, "lifecycle API is not enabled\n")
        assert calls == []
        enabled = True  # a reload can turn it on: asked at each request
        response = await client.post("/-/reload")
        text = await response.text()
        assert response.status == 500 and calls == ["http"]
        assert text == (
            "reload refused: invalid setting poll_interval (from config file); 1 more problem; "
            "the log says why\n"
        )
        assert (await client.get("/-/reload")).status == 405
