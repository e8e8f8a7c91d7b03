"""The one fake Alvaria of the tests: the emails and token endpoints, every answer scriptable.

One set of answers, served two ways:
- `serving(api)`: on a loopback port (plain or TLS), for the daemon as a process and for the
  production pipeline (`tests/pipeline.py`). `on_emails`/`on_token` replace an answer with any
  aiohttp handler, for faults only a socket can show (stalls, resets, short or endless bodies).
- `api.mock(mocked, api_url, token_url)`: inside aiohttp's client through aioresponses, for unit
  tests of the client and the token provider that count tasks and requests in flight in one loop.

Scripting: `emails_script`/`token_script` answer a given call (0-based) with a `Reply`;
`emails_reply`/`token_reply` answer every call while set; `page_sizes` shortens the page at a
start index (a list that shrinks or has a hole); `rejected` tokens get 401; `token_format`
names the tokens issued (`{n}` numbers them). Everything asked is recorded in `emails_seen`,
`token_seen` and `calls`.

By default the items carry personal data and the credentials are distinctive (`SECRETS`), so a
test can check that none of them leaves the exporter. The product's demo upstream is the
simulator (exporter/simulator); this module is the tests' scriptable, hostile one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import CallbackResult, aioresponses
from multidict import CIMultiDict
from pydantic import SecretStr
from yarl import URL

from exporter.settings import TargetSettings

ORG = "acme"
API_KEY = "apikey-7f3c9e"
CLIENT_ID = "client-1"
CLIENT_SECRET = "clientsecret-41d8"
TOKEN = "bearer-token-b3a1"
ADDRESS = "jane.customer@example.com"
SUBJECT = "Refund for order 1234"
UM_ID = "um-5550199"
SECRETS = (API_KEY, CLIENT_SECRET, TOKEN, ADDRESS, SUBJECT, UM_ID)
TOKEN_PATH = "/tokenservice/oauth2/access_token"


def target_for(
    base_url: str,
    *,
    org: str = ORG,
    api_key: str = API_KEY,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    api_url: str | None = None,
    token_url: str | None = None,
) -> TargetSettings:
    """One organisation polling an Alvaria-shaped API at `base_url` (this fake, or the
    simulator with its own credentials), its token from the same host."""
    return TargetSettings(
        org_id=org,
        api_key=SecretStr(api_key),
        client_id=client_id,
        client_secret=SecretStr(client_secret),
        api_url=api_url or base_url,
        token_url=token_url or base_url + TOKEN_PATH,
    )


def emails_path(org: str) -> str:
    """The path of an organisation's emails endpoint."""
    return f"/via/v2/organizations/{org}/emailQueue/emails"


EMAILS_PATH = emails_path(ORG)


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


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, a body and headers (JSON unless they say otherwise)."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(value).encode(), headers or {})

    @property
    def content_type(self) -> str:
        return CIMultiDict(self.headers).get("Content-Type", "application/json")

    def response(self) -> web.Response:
        headers = CIMultiDict(self.headers)
        headers.setdefault("Content-Type", "application/json")
        return web.Response(status=self.status, body=self.body, headers=headers)

    def callback_result(self) -> CallbackResult:
        return CallbackResult(
            status=self.status,
            body=self.body,
            headers=dict(self.headers),
            content_type=self.content_type,
        )


@dataclass(frozen=True)
class Seen:
    """One request as the fake saw it."""

    n: int  # its number among the calls to its endpoint, from 0
    url: URL
    raw_query: str
    headers: CIMultiDict[str]
    form: dict[str, str]

    @property
    def bearer(self) -> str | None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return token if scheme == "Bearer" else None


SEEN = web.RequestKey("seen", Seen)


@dataclass
class FakeAlvaria:
    """The API of one organisation: `items` served in pages of at most `page_cap`."""

    items: list[Any] = field(default_factory=lambda: [item(n) for n in range(7)])
    org: str = ORG
    page_cap: int = 3
    report_total: bool = True
    page_sizes: dict[int, int] = field(default_factory=dict)  # startIndex -> items returned
    api_key: str = API_KEY
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_format: str = TOKEN  # "{n}" numbers the tokens issued, from 1
    expires_in: Any = 3600  # None leaves the field out
    accepted: set[str] = field(default_factory=set)  # bearer tokens valid without being issued
    rejected: set[str] = field(default_factory=set)  # tokens the API no longer accepts
    emails_script: dict[int, Reply] = field(default_factory=dict)
    token_script: dict[int, Reply] = field(default_factory=dict)
    emails_reply: Reply | None = None
    token_reply: Reply | None = None
    on_emails: Handler | None = None
    on_token: Handler | None = None
    calls: Counter[str] = field(default_factory=Counter)
    emails_seen: list[Seen] = field(default_factory=list)
    token_seen: list[Seen] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    base_url: str = ""

    # -- the answers ---------------------------------------------------------------------------

    async def reply_emails(self, seen: Seen) -> Reply:
        """The emails endpoint's answer: scripted, refused, or one page of `items`."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(5):  # stay in flight long enough for concurrent pages to start
                await asyncio.sleep(0)
        finally:
            self.in_flight -= 1
        scripted = self.emails_script.get(seen.n, self.emails_reply)
        if scripted is not None:
            return scripted
        if seen.headers.get("x-api-key") != self.api_key:
            return Reply.json(403, {"code": 403, "message": "forbidden"})
        bearer = seen.bearer
        if bearer is None or bearer in self.rejected or not self._valid(bearer):
            return Reply.json(401, {"code": 401, "message": "unauthorized"})
        if seen.url.path != emails_path(self.org):
            return Reply.json(404, {"code": 404, "message": "not found"})
        start = int(seen.url.query["startIndex"])
        size = self.page_sizes.get(start, min(int(seen.url.query["maxResults"]), self.page_cap))
        body: dict[str, Any] = {"kind": "via#emailList", "items": self.items[start : start + size]}
        if self.report_total:
            body["totalItems"] = len(self.items)
        return Reply.json(200, body)

    async def reply_token(self, seen: Seen) -> Reply:
        """The token endpoint's answer: scripted, refused, or a new token."""
        await asyncio.sleep(0)  # let concurrent callers pile up behind this request
        scripted = self.token_script.get(seen.n, self.token_reply)
        if scripted is not None:
            return scripted
        if not self._client_ok(seen):
            return Reply.json(401, {"error": "invalid_client"})
        self.issued.append(self.token_format.format(n=len(self.issued) + 1))
        body: dict[str, Any] = {"access_token": self.issued[-1], "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return Reply.json(200, body)

    def _valid(self, token: str) -> bool:
        return token in self.issued or token in self.accepted

    def _client_ok(self, seen: Seen) -> bool:
        """The API key, the grant type and the client's credentials, sent either way."""
        scheme, _, encoded = seen.headers.get("Authorization", "").partition(" ")
        if scheme == "Basic":
            try:
                pair = base64.b64decode(encoded, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, _, password = pair.partition(":")
            client = (unquote_plus(user), unquote_plus(password))
        else:
            client = (seen.form.get("client_id", ""), seen.form.get("client_secret", ""))
        return (
            seen.headers.get("x-api-key") == self.api_key
            and seen.form.get("grant_type") == "client_credentials"
            and client == (self.client_id, self.client_secret)
        )

    # -- on a loopback port --------------------------------------------------------------------

    async def serve_page(self, request: web.Request) -> web.Response:
        """The honest answer to an emails request, for `on_emails` handlers to fall back on."""
        seen = request.get(SEEN) or await self._seen_on_the_wire(request, self.emails_seen)
        return (await self.reply_emails(seen)).response()

    async def issue_token(self, request: web.Request) -> web.Response:
        """The honest answer to a token request, for `on_token` handlers to fall back on."""
        seen = request.get(SEEN) or await self._seen_on_the_wire(request, self.token_seen)
        return (await self.reply_token(seen)).response()

    async def _emails(self, request: web.Request) -> web.StreamResponse:
        self.calls["emails"] += 1
        request[SEEN] = await self._seen_on_the_wire(request, self.emails_seen)
        return await (self.on_emails or self.serve_page)(request)

    async def _token(self, request: web.Request) -> web.StreamResponse:
        self.calls["token"] += 1
        request[SEEN] = await self._seen_on_the_wire(request, self.token_seen)
        return await (self.on_token or self.issue_token)(request)

    @staticmethod
    async def _seen_on_the_wire(request: web.Request, log: list[Seen]) -> Seen:
        form = {k: str(v) for k, v in (await request.post()).items()}
        raw_query = request.raw_path.partition("?")[2]
        seen = Seen(len(log), request.url, raw_query, CIMultiDict(request.headers), form)
        log.append(seen)
        return seen

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(emails_path("{org}"), self._emails)
        app.router.add_post(TOKEN_PATH, self._token)
        return app

    def env(self, **extra: str) -> dict[str, str]:
        """Environment variables pointing the exporter at this fake."""
        return {
            "ALVARIA_ORG_ID": self.org,
            "ALVARIA_API_KEY": self.api_key,
            "ALVARIA_CLIENT_ID": self.client_id,
            "ALVARIA_CLIENT_SECRET": self.client_secret,
            "ALVARIA_API_URL": self.base_url,
            "ALVARIA_TOKEN_URL": self.base_url + TOKEN_PATH,
            **extra,
        }

    # -- inside the client, through aioresponses -----------------------------------------------

    def mock(self, mocked: aioresponses, api_url: str, token_url: str) -> FakeAlvaria:
        """Answer the client's requests to `api_url` and `token_url` (any query) in-process."""
        if self.on_emails or self.on_token:
            raise ValueError("on_emails/on_token need a socket: use serving()")
        self.base_url = api_url.rstrip("/")
        emails = re.escape(self.base_url) + r"/via/v2/organizations/[^/?]+/emailQueue/emails"
        mocked.get(re.compile(f"^{emails}(\\?.*)?$"), callback=self._mocked_emails, repeat=True)
        token = re.compile(f"^{re.escape(token_url)}(\\?.*)?$")
        mocked.post(token, callback=self._mocked_token, repeat=True)
        return self

    async def _mocked_emails(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.calls["emails"] += 1
        seen = self._seen_in_process(url, kwargs, self.emails_seen)
        return (await self.reply_emails(seen)).callback_result()

    async def _mocked_token(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.calls["token"] += 1
        seen = self._seen_in_process(url, kwargs, self.token_seen)
        return (await self.reply_token(seen)).callback_result()

    @staticmethod
    def _seen_in_process(url: URL, kwargs: dict[str, Any], log: list[Seen]) -> Seen:
        form = {str(k): str(v) for k, v in (kwargs.get("data") or {}).items()}
        headers: CIMultiDict[str] = CIMultiDict(kwargs.get("headers") or {})
        seen = Seen(len(log), url, url.raw_query_string, headers, form)
        log.append(seen)
        return seen

    # -- what was asked ------------------------------------------------------------------------

    @property
    def starts(self) -> list[int]:
        """The startIndex of every emails request, in the order they arrived."""
        return [int(seen.url.query["startIndex"]) for seen in self.emails_seen]


@asynccontextmanager
async def serving(
    api: FakeAlvaria, ssl_context: SSLContext | None = None
) -> AsyncIterator[FakeAlvaria]:
    """Run `api` on a free loopback port (TLS with `ssl_context`); sets `api.base_url`."""
    server = TestServer(api.app(), host="127.0.0.1", port=0)
    await server.start_server(ssl=ssl_context)
    api.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield api
    finally:
        await server.close()
