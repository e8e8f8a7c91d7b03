"""`--check-connection`: a step-by-step first-run diagnosis of every organisation (SPEC §9).

It talks to Alvaria Cloud through the daemon's own transport, token request and client, one
request per step and no retries, and prints one line per step (abridged)::

    org acme: token host myaspect.id.aspect-cloud.net, API host acme.via.aspect-cloud.net
      ok    resolve token host  myaspect.id.aspect-cloud.net -> 203.0.113.7
      ok    connect token host  TLSv1.3, certificate valid until 2027-03-01
      ok    token               200, Bearer, expires_in 3600 s, scope emailqueueapi, realm acme
      ok    first page          200, totalItems 812, 500 items for maxResults=500, ...

Only host names, addresses, statuses, counts and the presence of fields are printed: never a
secret, a token, an email address, a subject or an agent name. Every line goes through
`exporter.domain.scrub.scrub` on its way out (bounded, no control characters, configured secrets
masked), so whatever a token endpoint echoes cannot forge a line or leak a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from exporter.app.findings import (
    connect_hint,
    cut,
    page_hint,
    page_notes,
    token_hint,
    token_problems,
    token_warnings,
)
from exporter.domain.errors import PollError
from exporter.domain.scrub import remember_secrets, scrub
from exporter.metrics import buildinfo
from exporter.settings import Settings, TargetSettings
from exporter.upstream.auth import StaticToken, check_token_response
from exporter.upstream.client import EmailQueueClient
from exporter.upstream.targets import (
    client_options,
    configured_secrets,
    credentials_config,
    upstream_ssl,
)
from exporter.upstream.transport import HttpTransport, RetryPolicy, transport_error

Status = Literal["ok", "WARN", "FAIL", "skip"]
_NAME_WIDTH = 19
_DETAIL_CHARS = 400  # one step's detail at most


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one step: `ok`, `WARN` (works, but see why), `FAIL` or `skip`."""

    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"  {self.status:<5} {self.name:<{_NAME_WIDTH}} {scrub(self.detail, _DETAIL_CHARS)}"


class Diagnosis:
    """The steps for one organisation; each returns a `Step` and never raises for the network."""

    def __init__(
        self,
        target: TargetSettings,
        cfg: Settings,
        session: aiohttp.ClientSession,
        ssl_context: ssl.SSLContext | bool,
    ) -> None:
        self._target = target
        self._cfg = cfg
        self._session = session
        self._ssl = ssl_context
        self._transport = HttpTransport(
            session,
            request_timeout=cfg.request_timeout,
            max_response_bytes=cfg.max_response_bytes,
            retry=RetryPolicy(max_retries=0),  # a diagnosis shows the first answer as it is
            ssl=ssl_context,
        )

    async def run(self, emit: Callable[[Step], None]) -> None:
        """Every step in order; a step whose premise failed is skipped, saying which."""
        target = self._target
        static = target.access_token is not None
        urls = {"token": target.token_url, "API": target.api_url}
        reachable: dict[str, bool] = {}
        for kind in ("resolve", "connect"):
            for which, url in urls.items():
                name = f"{kind} {which} host"
                if which == "token" and static:
                    emit(Step(name, "skip", "access_token is set: no token requests"))
                elif kind == "connect" and not reachable[which]:
                    emit(Step(name, "skip", f"resolve {which} host failed"))
                else:
                    step = await (self._resolve(name, url) if kind == "resolve" else
                                  self._connect(name, url))  # fmt: skip
                    reachable[which] = step.status != "FAIL"
                    emit(step)
        token: str | None = None
        if target.access_token is not None:
            token = target.access_token.get_secret_value()
            emit(Step("token", "skip", "access_token is set"))
        elif not reachable["token"]:
            emit(Step("token", "skip", "the token host is not reachable"))
        else:
            step, token = await self._token()
            emit(step)
        if token is None:
            emit(Step("first page", "skip", "no token"))
        elif not reachable["API"]:
            emit(Step("first page", "skip", "the API host is not reachable"))
        else:
            emit(await self._first_page(token))

    # --- name resolution and connection ----------------------------------------------------

    def _proxy(self, url: URL) -> URL | None:
        if not self._session.trust_env:
            return None
        try:
            return get_env_proxy_for_url(url)[0]
        except LookupError:
            return None

    async def _resolve(self, name: str, url_text: str) -> Step:
        url = URL(url_text)
        proxy = self._proxy(url)
        hop = proxy or url
        host, port = hop.host or "", hop.port
        via = f" (proxy for {url.host}, which the proxy resolves)" if proxy else ""
        try:
            async with asyncio.timeout(self._cfg.request_timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
        except TimeoutError:
            return Step(name, "FAIL", f"{host}: timed out{via}")
        except OSError as exc:
            hint = "" if proxy else "; check region, token_url and api_url (docs: regions)"
            return Step(name, "FAIL", f"{host}: {exc.strerror or type(exc).__name__}{via}{hint}")
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        more = f" (+{len(addresses) - 3} more)" if len(addresses) > 3 else ""
        return Step(name, "ok", f"{host} -> {', '.join(addresses[:3])}{more}{via}")

    async def _connect(self, name: str, url_text: str) -> Step:
        url = URL(url_text)
        proxy = self._proxy(url)
        if proxy is not None:
            return await self._connect_via_proxy(name, url, proxy)
        host, port = url.host or "", url.port
        tls = url.scheme == "https"
        context = (
            self._ssl if isinstance(self._ssl, ssl.SSLContext) else ssl.create_default_context()
        )
        try:
            async with asyncio.timeout(self._cfg.request_timeout):
                _, writer = await asyncio.open_connection(
                    host, port, ssl=context if tls else None, server_hostname=host if tls else None
                )
        except TimeoutError:
            return Step(name, "FAIL", f"{host}:{port}: timed out; check firewall and proxy")
        except ssl.SSLCertVerificationError as exc:
            detail = exc.verify_message or exc.reason or "certificate not trusted"
            hint = "; a private CA needs ca_file, a wrong host name the region or URL"
            return Step(name, "FAIL", f"{host}:{port}: TLS: {detail}{hint}")
        except ssl.SSLError as exc:
            detail = exc.reason or type(exc).__name__
            hint = connect_hint(detail)
            return Step(name, "FAIL", f"{host}:{port}: TLS handshake failed: {detail}; {hint}")
        except OSError as exc:
            # asyncio's message names the address again; the errno says what happened.
            reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
            return Step(name, "FAIL", f"{host}:{port}: {reason}; {connect_hint(reason)}")
        try:
            if not tls:
                return Step(name, "ok", f"{host}:{port}, plain http (no TLS)")
            return Step(name, "ok", f"{host}:{port}, {_describe_tls(writer)}")
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _connect_via_proxy(self, name: str, url: URL, proxy: URL) -> Step:
        hop = f"via proxy {proxy.host}:{proxy.port}"
        try:
            async with self._session.head(
                url.origin(),
                ssl=self._ssl,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._cfg.request_timeout),
            ) as response:
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            return Step(name, "FAIL", f"{hop}: {transport_error('connect', exc)}")
        return Step(name, "ok", f"{url.host}:{url.port} {hop} (HEAD / answered {status})")

    # --- token and first page --------------------------------------------------------------

    async def _token(self) -> tuple[Step, str | None]:
        config = credentials_config(self._target)
        form, headers = config.request_parts()
        realm = f"realm {config.realm}" if config.realm else "no realm, token_realm is empty"
        try:
            response = await self._transport.request(
                "token", "POST", config.url, data=form, headers=headers
            )
            decoded = check_token_response(response)
        except PollError as exc:
            hint = token_hint(exc, realm, self._target.scope)
            return Step("token", "FAIL", f"{exc.reason}: {exc}; {hint}"), None
        problems, warnings = token_problems(decoded), token_warnings(decoded)
        seconds, _ = decoded.lifetime()
        if decoded.expires_in is None:
            lifetime = f"no expires_in ({seconds:g} s assumed)"
        else:
            lifetime = f"token used for {seconds:g} s" if warnings else f"expires_in {seconds:g} s"
        granted = (
            "scope not stated (as requested, RFC 6749)"
            if decoded.scopes is None
            else f"scope {cut(' '.join(decoded.scopes))}"
        )
        kind = cut(str(decoded.token_type), 20)
        detail = f"{response.status}, {kind}, {lifetime}, {granted}, {realm}"
        if problems:
            return Step("token", "FAIL", f"{'; '.join(problems)} ({detail})"), None
        if warnings:
            return Step("token", "WARN", f"{'; '.join(warnings)} ({detail})"), decoded.access_token
        return Step("token", "ok", detail), decoded.access_token

    async def _first_page(self, token: str) -> Step:
        target, cfg = self._target, self._cfg
        client = EmailQueueClient(
            api_url=target.api_url,
            org_id=target.org_id,
            api_key=target.api_key.get_secret_value(),
            auth=StaticToken(token),
            transport=self._transport,
            options=client_options(cfg, target),
        )
        try:
            page = await client.page(0)
        except PollError as exc:
            return Step("first page", "FAIL", f"{exc.reason}: {exc}; {page_hint(exc)}")
        notes, warnings = page_notes(page, cfg.page_size, target.extended_info)
        return Step("first page", "WARN" if warnings else "ok", ", ".join(["200", *notes]))


def _describe_tls(writer: asyncio.StreamWriter) -> str:
    ssl_object = writer.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return "TLS"
    cert = ssl_object.getpeercert() or {}
    not_after = cert.get("notAfter")
    until = ""
    if isinstance(not_after, str):
        expiry = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), UTC)
        until = f", certificate valid until {expiry:%Y-%m-%d}"
    return f"{ssl_object.version() or 'TLS'}{until}"


async def check_connection(cfg: Settings, write: Callable[[str], object]) -> int:
    """Diagnose every organisation in order; 0 when no step failed, else 1."""
    failed = 0
    counts: dict[str, int] = {}

    def emit(step: Step) -> None:
        nonlocal failed
        counts[step.status] = counts.get(step.status, 0) + 1
        failed += step.status == "FAIL"
        write(step.line() + "\n")

    version, revision, python = buildinfo.labels()
    write(f"alvaria-emailqueue-exporter {version} (revision {revision}, Python {python})\n")
    remember_secrets(configured_secrets(cfg))
    async with aiohttp.ClientSession(trust_env=True) as session:
        ssl_context = upstream_ssl(cfg)
        for target in cfg.targets:
            token_host = (
                "none (access_token)" if target.access_token else URL(target.token_url).host
            )
            write(
                f"org {target.org_id}: token host {token_host}, API host {URL(target.api_url).host}\n"
            )
            await Diagnosis(target, cfg, session, ssl_context).run(emit)
    summary = ", ".join(f"{counts[s]} {s}" for s in ("ok", "WARN", "FAIL", "skip") if s in counts)
    verdict = "FAILED" if failed else "passed"
    write(f"check-connection {verdict}: {len(cfg.targets)} organisation(s), {summary}\n")
    return 1 if failed else 0
