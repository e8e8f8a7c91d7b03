"""A small scripted fake of the EmailQueue API for integration tests (not the product simulator)."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

EMAILS = "/via/v2/organizations/{org}/emailQueue/emails"
TOKEN = "/tokenservice/oauth2/access_token"


@dataclass
class FakeApi:
    """Serves `items` with a page cap; records what the exporter asked for."""

    items: list[dict[str, Any]] = field(default_factory=list)
    org: str = "acme"
    page_cap: int = 3
    api_key: str = "key-123"
    client_id: str = "client-1"
    client_secret: str = "s3cret-value"
    expires_in: int | None = 3600
    # Answers served before the normal ones, e.g. [(429, {"Retry-After": "1"})].
    scripted: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    report_total: bool = True
    requests: Counter[str] = field(default_factory=Counter)
    token_serial: int = 0
    base_url: str = ""

    def _bearer_ok(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "").startswith("Bearer tok-")

    async def token(self, request: web.Request) -> web.Response:
        self.requests["token"] += 1
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        form = await request.post()
        if (
            request.headers.get("x-api-key") != self.api_key
            or request.headers.get("Authorization") != f"Basic {expected}"
            or form.get("grant_type") != "client_credentials"
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        self.token_serial += 1
        body: dict[str, Any] = {"access_token": f"tok-{self.token_serial}", "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return web.json_response(body)

    async def emails(self, request: web.Request) -> web.Response:
        self.requests["emails"] += 1
        if self.scripted:
            status, headers = self.scripted.pop(0)
            return web.json_response(
                {"code": status, "message": "scripted"}, status=status, headers=headers
            )
        if request.headers.get("x-api-key") != self.api_key:
            return web.json_response({"code": 403, "message": "forbidden"}, status=403)
        if not self._bearer_ok(request):
            return web.Response(status=401)
        if request.match_info["org"] != self.org:
            return web.json_response({"code": 404, "message": "not found"}, status=404)
        start = int(request.query.get("startIndex", "0"))
        size = min(int(request.query.get("maxResults", "100")), self.page_cap)
        page = self.items[start : start + size]
        body: dict[str, Any] = {"kind": "via#emailList", "items": page}
        if self.report_total:
            body["totalItems"] = len(self.items)
        return web.json_response(body)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(TOKEN, self.token)
        app.router.add_get(EMAILS.format(org="{org}"), self.emails)
        return app

    def env(self, **extra: str) -> dict[str, str]:
        """Environment variables pointing the exporter at this fake."""
        return {
            "ALVARIA_ORG_ID": self.org,
            "ALVARIA_API_KEY": self.api_key,
            "ALVARIA_CLIENT_ID": self.client_id,
            "ALVARIA_CLIENT_SECRET": self.client_secret,
            "ALVARIA_API_URL": self.base_url,
            "ALVARIA_TOKEN_URL": self.base_url + TOKEN,
            **extra,
        }


@asynccontextmanager
async def serve_fake(api: FakeApi) -> AsyncIterator[FakeApi]:
    """Run `api` on a free loopback port."""
    server = TestServer(api.app(), host="127.0.0.1", port=0)
    await server.start_server()
    api.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield api
    finally:
        await server.close()
