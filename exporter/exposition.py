"""Rendered `/metrics` bodies, shared by the scrapes that arrive within the same second.

Rendering a large snapshot costs milliseconds per thousand samples and runs on the event loop,
so twenty scrapers arriving together would each pay for it in turn. Each format is rendered at
most once per `max_age` and again as soon as a poll finishes; gzip is applied once per render.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.store import Store


@dataclass(slots=True)
class _Render:
    rendered_at: float
    version: int
    body: bytes
    gzipped: bytes | None = None


class ExpositionCache:
    """Serves `/metrics` from a render at most `max_age` old and never older than the last poll."""

    def __init__(
        self,
        registry: CollectorRegistry,
        store: Store,
        *,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._store = store
        self._max_age = max_age
        self._clock = clock
        self._renders: dict[str, _Render] = {}

    def render(self, accept: str, gzip_ok: bool) -> tuple[bytes, str, bool]:
        """(body, content type, whether the body is gzipped) for a request's headers."""
        encoder, content_type = choose_encoder(accept)
        now, version = self._clock(), self._store.version
        cached = self._renders.get(content_type)
        if cached is None or cached.version != version or now - cached.rendered_at >= self._max_age:
            cached = self._renders[content_type] = _Render(now, version, encoder(self._registry))
        if not gzip_ok:
            return cached.body, content_type, False
        if cached.gzipped is None:
            cached.gzipped = gzip.compress(cached.body, compresslevel=6)
        return cached.gzipped, content_type, True

    async def handle(self, request: web.Request) -> web.Response:
        """The `/metrics` handler: Prometheus text or OpenMetrics by `Accept`, gzip by `Accept-Encoding`."""
        accept = ",".join(request.headers.getall("Accept", []))
        gzip_ok = accepts_gzip(request.headers.get("Accept-Encoding", ""))
        body, content_type, gzipped = self.render(accept, gzip_ok)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
        return response


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an `Accept-Encoding` header allows gzip (`gzip;q=0` refuses it)."""
    for part in accept_encoding.split(","):
        name, _, params = part.partition(";")
        if name.strip().lower() != "gzip":
            continue
        quality = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
        try:
            return float(quality) > 0
        except ValueError:
            return False
    return False
