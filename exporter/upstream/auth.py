"""Bearer tokens for the API: a static token, or OAuth2 client credentials cached until expiry.

The expiry rule is pure (`TokenState.needs_refresh(now)`); only `ClientCredentials.token`
touches the network, and concurrent callers share one refresh.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import msgspec
import structlog

from exporter.domain.errors import AuthError, ClientHTTPError, PollError
from exporter.domain.scrub import scrub
from exporter.upstream.transport import HttpResponse, HttpTransport, status_error

DEFAULT_TOKEN_LIFETIME = 3600.0
# A token is refreshed at least this often, whatever `expires_in` says (1e300 is not a lifetime).
MAX_TOKEN_LIFETIME = 86400.0
# Characters of an upstream value (token_type, scope) quoted in a message.
_QUOTED = 40
# RFC 6749 section 5.2 error codes that mean "these credentials get no token here".
REFUSALS = frozenset({"invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope"})
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")
# After a failed early refresh, the still-valid token is used this long before trying again.
EARLY_REFRESH_HOLDOFF = 10.0


class TokenProvider(Protocol):
    """Something that hands out a bearer token and can be told it was rejected."""

    @property
    def expires_at(self) -> float | None: ...

    async def token(self) -> str: ...

    def invalidate(self, rejected: str | None = None) -> None: ...


def header_safe(value: str) -> bool:
    """Whether `value` can be sent as a header value as it is: printable ASCII.

    A CR or LF would end the header (and let a hostile token endpoint inject others); aiohttp
    refuses such values with an exception that is not an API error.
    """
    return value.isascii() and value.isprintable()


class StaticToken:
    """A token configured by the user: never refreshed, never expires as far as we know."""

    expires_at: float | None = None

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        if not header_safe(self._token):
            raise AuthError("access_token has characters not allowed in a header")
        return self._token

    def invalidate(self, rejected: str | None = None) -> None:
        """A static token cannot be renewed; the next 401 fails the poll as `auth`."""


@dataclass(frozen=True, slots=True)
class TokenState:
    """A cached token and when it expires."""

    access_token: str
    expires_at: float
    lifetime: float

    def needs_refresh(self, now: float) -> bool:
        """Refresh a little early: 10% of the lifetime, at most a minute, before expiry."""
        return now >= self.expires_at - min(60.0, self.lifetime * 0.1)


class TokenResponse(msgspec.Struct):
    """The fields of a token response the exporter uses (`scope` only for diagnosis).

    Only `access_token` is typed strictly; the others are taken as any JSON value and judged
    here, so an odd `expires_in` or `scope` costs a warning, not the token.
    """

    access_token: str
    token_type: object = "Bearer"  # noqa: S105 -- the OAuth2 token type, not a secret
    expires_in: object = None
    # RFC 6749 says a space-separated string; a list is tolerated, never fatal to the poll.
    scope: object = None

    @property
    def scopes(self) -> list[str] | None:
        """The granted scopes, or None when the response does not state them (usably)."""
        if isinstance(self.scope, str):
            return self.scope.split()
        if isinstance(self.scope, list):
            return [item for item in self.scope if isinstance(item, str)]
        return None

    @property
    def bearer(self) -> bool:
        """Whether `token_type` is Bearer (case-insensitive, RFC 6750), the only kind sent;
        a missing (or null) one is taken for Bearer, as gateways that omit it mean."""
        kind = self.token_type
        return kind is None or (isinstance(kind, str) and kind.lower() == "bearer")

    def lifetime(self) -> tuple[float, str | None]:
        """Seconds the token is used for, and why that is not `expires_in` as sent, if it is not.

        Missing or not a positive number (``"abc"``, ``-5``, ``0``): the default lifetime.
        Longer than MAX_TOKEN_LIFETIME: capped, so the token is still refreshed now and then.
        """
        raw = self.expires_in
        if raw is None:
            return DEFAULT_TOKEN_LIFETIME, None
        seconds = _number(raw)
        if seconds is None or not 0 < seconds < math.inf:
            shown = scrub(msgspec.json.encode(raw).decode(), _QUOTED)
            problem = f"expires_in {shown} is not a positive number of seconds"
            return DEFAULT_TOKEN_LIFETIME, f"{problem}: {DEFAULT_TOKEN_LIFETIME:g} s assumed"
        if seconds > MAX_TOKEN_LIFETIME:
            problem = f"expires_in {seconds:g} s is longer than {MAX_TOKEN_LIFETIME:g} s"
            return MAX_TOKEN_LIFETIME, f"{problem}: refreshed after {MAX_TOKEN_LIFETIME:g} s"
        return seconds, None


def _number(raw: object) -> float | None:
    """A number, or a string holding one (some gateways, Apigee among them, send strings)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str) and len(raw) <= 40:
        try:
            return float(raw.strip())
        except ValueError:
            return None
    return None


class _OAuthError(msgspec.Struct):
    error: str = ""


@dataclass(frozen=True, slots=True)
class ClientCredentialsConfig:
    """What a token request needs."""

    token_url: str
    client_id: str
    # Secrets stay out of the repr, which can end up in logs and tracebacks.
    client_secret: str = field(repr=False)
    api_key: str = field(repr=False)
    scope: str = "emailqueueapi"
    auth_method: str = "client_secret_basic"
    # Alvaria's token service wants the organisation as `realm`; "" sends none.
    realm: str = ""

    @property
    def url(self) -> str:
        """The token URL with `realm` added as a query parameter, unless it already has one."""
        return with_realm(self.token_url, self.realm)

    def request_parts(self) -> tuple[dict[str, str], dict[str, str]]:
        """The form and headers of a token request."""
        form = {"grant_type": "client_credentials", "scope": self.scope}
        if self.realm:
            form["realm"] = self.realm
        headers = {"x-api-key": self.api_key, "Accept": "application/json"}
        if self.auth_method == "client_secret_post":
            form |= {"client_id": self.client_id, "client_secret": self.client_secret}
        else:
            headers["Authorization"] = basic_auth(self.client_id, self.client_secret)
        return form, headers


def with_realm(url: str, realm: str) -> str:
    """`url` with ``realm=<realm>`` appended to its query, unless empty or already there."""
    parts = urlsplit(url)
    if not realm or any(key == "realm" for key, _ in parse_qsl(parts.query, True)):
        return url
    query = f"{parts.query}&" if parts.query else ""
    return parts._replace(query=f"{query}realm={quote(realm, safe='')}").geturl()


def refusal_code(body: bytes | bytearray | memoryview) -> str:
    """The OAuth2 `error` code of a refusal body, or "" (only a short lowercase code is kept)."""
    try:
        code = msgspec.json.decode(body, type=_OAuthError, strict=False).error
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
        return ""
    return code if _ERROR_CODE.fullmatch(code) else ""


def check_token_response(response: HttpResponse) -> TokenResponse:
    """The decoded token of a token-endpoint answer; raises with the reason it is unusable.

    Refused credentials (401, 403, an OAuth2 refusal code in a 4xx, no usable token in a 2xx,
    a token type other than Bearer) are `auth`; any other 4xx is `http_4xx`, e.g. a wrong token
    URL that answers 404; a 1xx or 3xx (redirects are never followed) is `http_other`.
    (5xx, 429 and network failures never get here: the transport raised them already.)
    Whatever the endpoint wrote is quoted only through `scrub`.
    """
    status = response.status
    if not 200 <= status < 300:
        code = refusal_code(response.body)
        detail = f"{status} {code}" if code else str(status)
        if status in (401, 403) or code in REFUSALS:
            raise AuthError(f"token endpoint refused the credentials ({detail})", status=status)
        error = status_error("token", status)
        if error is None or isinstance(error, ClientHTTPError):
            # Other 4xx: token_url is not the token endpoint, or the request is malformed.
            raise ClientHTTPError(f"token endpoint answered {detail}", status=status)
        raise error
    try:
        decoded = msgspec.json.decode(response.body, type=TokenResponse, strict=False)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise AuthError("token endpoint returned no usable access_token") from exc
    if not decoded.access_token:
        raise AuthError("token endpoint returned an empty access_token")
    if not header_safe(decoded.access_token):
        raise AuthError(
            "token endpoint returned an access_token with characters not allowed in a header"
        )
    if not decoded.bearer:
        shown = scrub(msgspec.json.encode(decoded.token_type).decode(), _QUOTED)
        raise AuthError(f"token endpoint returned token_type {shown}; only Bearer is supported")
    return decoded


def basic_auth(client_id: str, client_secret: str) -> str:
    """The `Authorization` value for client_secret_basic (RFC 6749 section 2.3.1)."""
    # Both parts are form-encoded first, so a ':' or non-ASCII character in them survives;
    # aiohttp.BasicAuth is deprecated and rejects a ':' in the id with a ValueError.
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


class ClientCredentials:
    """OAuth2 client-credentials grant with a cached, early-refreshed token."""

    def __init__(
        self,
        config: ClientCredentialsConfig,
        transport: HttpTransport,
        *,
        clock: Callable[[], float] = time.time,
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._config = config
        self._log = logger or structlog.get_logger("exporter.upstream.auth")
        self._url = config.url
        self._transport = transport
        self._clock = clock
        self._state: TokenState | None = None
        self._refresh_not_before = 0.0
        self._lock = asyncio.Lock()

    @property
    def expires_at(self) -> float | None:
        return self._state.expires_at if self._state else None

    def invalidate(self, rejected: str | None = None) -> None:
        """Forget the cached token, unless `rejected` names one that was already replaced."""
        # Pages in flight with the old token all get 401; only the first of them may
        # cause a refresh, the rest must not throw away the token it fetched.
        if rejected is None or (self._state is not None and self._state.access_token == rejected):
            self._state = None

    async def token(self) -> str:
        state = self._state
        if state is not None and not self._wants_refresh(state):
            return state.access_token
        async with self._lock:
            state = self._state
            if state is None or self._wants_refresh(state):
                try:
                    state = self._state = await self._request()
                except PollError:
                    # An early refresh failed but the cached token still works: keep using it
                    # and try again a little later rather than on every page.
                    if state is None or self._clock() >= state.expires_at:
                        raise
                    self._refresh_not_before = self._clock() + EARLY_REFRESH_HOLDOFF
            return state.access_token

    def _wants_refresh(self, state: TokenState) -> bool:
        now = self._clock()
        return now >= state.expires_at or (
            state.needs_refresh(now) and now >= self._refresh_not_before
        )

    async def _request(self) -> TokenState:
        cfg = self._config
        form, headers = cfg.request_parts()
        # Transport failures keep their own reason (connection, timeout, http_5xx, rate_limited,
        # decode): the credentials were never judged, so they are not `auth`.
        response = await self._transport.request(
            "token", "POST", self._url, data=form, headers=headers
        )
        decoded = check_token_response(response)
        lifetime, problem = decoded.lifetime()
        if problem is not None:
            # The token works; only its lifetime is a guess. Said once per token fetched.
            self._log.warning("token_lifetime", problem=problem, lifetime_seconds=lifetime)
        return TokenState(decoded.access_token, self._clock() + lifetime, lifetime)
