"""Tokens: static, and OAuth2 client credentials with caching, early refresh and shared refreshes."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any
from urllib.parse import unquote_plus

import aiohttp
import pytest
from aioresponses import aioresponses

from exporter.domain.errors import (
    AuthError,
    ConnectionFailedError,
    PollError,
    RateLimitedError,
    RequestTimeoutError,
    ServerHTTPError,
)
from exporter.upstream.auth import (
    DEFAULT_TOKEN_LIFETIME,
    ClientCredentials,
    ClientCredentialsConfig,
    StaticToken,
    TokenState,
    with_realm,
)
from exporter.upstream.transport import HttpTransport, RetryPolicy
from tests.fake_alvaria import TOKEN_PATH, FakeAlvaria, Reply, serving
from tests.fakes import Clock, FakeSleep

TOKEN_URL = "http://id.test/tokenservice/oauth2/access_token"
T0 = 1_700_000_000.0


def issuer(expires_in: Any = 3600, reply: Reply | None = None) -> FakeAlvaria:
    """The token endpoint for `make_config`'s client: token-1, token-2, ... or `reply`."""
    return FakeAlvaria(
        client_id="the-client",
        client_secret="the-secret",
        api_key="the-api-key",
        token_format="token-{n}",
        expires_in=expires_in,
        token_reply=reply,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def make_config(
    method: str = "client_secret_basic", url: str = TOKEN_URL
) -> ClientCredentialsConfig:
    return ClientCredentialsConfig(
        token_url=url,
        client_id="the-client",
        client_secret="the-secret",
        api_key="the-api-key",
        scope="emailqueueapi",
        auth_method=method,
    )


def make_provider(
    session: aiohttp.ClientSession,
    clock: Clock,
    sleep: FakeSleep,
    *,
    method: str = "client_secret_basic",
    url: str = TOKEN_URL,
    max_retries: int = 2,
) -> ClientCredentials:
    transport = HttpTransport(
        session, sleep=sleep, rand=lambda: 1.0, clock=clock, retry=RetryPolicy(max_retries)
    )
    return ClientCredentials(make_config(method, url), transport, clock=clock)


def serve(mocked: aioresponses, api: FakeAlvaria) -> FakeAlvaria:
    return api.mock(mocked, "http://api.test", TOKEN_URL)


# --- the request -----------------------------------------------------------------------------


async def test_basic_auth_request(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    api = serve(mocked, issuer())
    assert await make_provider(session, clock, sleep).token() == "token-1"
    (request,) = api.token_seen
    expected = base64.b64encode(b"the-client:the-secret").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert request.form == {"grant_type": "client_credentials", "scope": "emailqueueapi"}
    assert request.headers["x-api-key"] == "the-api-key"


async def test_client_secret_post_puts_credentials_in_the_form(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    api = serve(mocked, issuer())
    await make_provider(session, clock, sleep, method="client_secret_post").token()
    (request,) = api.token_seen
    assert "Authorization" not in request.headers
    assert request.form == {
        "grant_type": "client_credentials",
        "scope": "emailqueueapi",
        "client_id": "the-client",
        "client_secret": "the-secret",
    }
    assert request.headers["x-api-key"] == "the-api-key"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_token_request_on_the_wire(
    session: aiohttp.ClientSession, clock: Clock, sleep: FakeSleep, method: str
) -> None:
    async with serving(issuer(expires_in=60)) as api:
        url = api.base_url + TOKEN_PATH
        token = await make_provider(session, clock, sleep, method=method, url=url).token()
    assert token == "token-1"  # the fake checked the key, the grant type and the credentials
    ((headers, form),) = [(seen.headers, seen.form) for seen in api.token_seen]
    assert headers["x-api-key"] == "the-api-key"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "emailqueueapi"
    if method == "client_secret_basic":
        expected = base64.b64encode(b"the-client:the-secret").decode()
        assert headers["Authorization"] == f"Basic {expected}"
        assert "client_secret" not in form
    else:
        assert "Authorization" not in headers
        assert (form["client_id"], form["client_secret"]) == ("the-client", "the-secret")


async def test_basic_credentials_are_form_encoded_first(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    # RFC 6749 section 2.3.1: a ':' in the id or a '+' in the secret must survive the trip.
    api = FakeAlvaria(client_id="org:client", client_secret="s+/=é %", api_key="k")
    serve(mocked, api)  # it decodes the header as RFC 6749 says and checks the pair
    config = ClientCredentialsConfig(
        token_url=TOKEN_URL, client_id="org:client", client_secret="s+/=é %", api_key="k"
    )
    transport = HttpTransport(session, sleep=sleep, clock=clock)
    assert await ClientCredentials(config, transport, clock=clock).token() == api.issued[0]
    scheme, _, encoded = api.token_seen[0].headers["Authorization"].partition(" ")
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    assert scheme == "Basic"
    assert (unquote_plus(user), unquote_plus(password)) == ("org:client", "s+/=é %")


# --- caching and refresh ---------------------------------------------------------------------


async def test_token_is_cached_across_many_calls(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    api = serve(mocked, issuer(expires_in=3600))
    provider = make_provider(session, clock, sleep)
    for _ in range(50):
        clock.now += 10  # 500 s in all: well inside the lifetime
        assert await provider.token() == "token-1"
    assert api.calls["token"] == 1
    assert provider.expires_at == T0 + 10 + 3600


async def test_token_is_refreshed_before_it_expires(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    api = serve(mocked, issuer(expires_in=100))
    provider = make_provider(session, clock, sleep)
    assert await provider.token() == "token-1"
    clock.now = T0 + 89.9  # refresh margin: 10% of 100 s
    assert await provider.token() == "token-1"
    clock.now = T0 + 90
    assert await provider.token() == "token-2"
    assert provider.expires_at == T0 + 190
    assert api.calls["token"] == 2


async def test_long_lived_token_is_refreshed_a_minute_early(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    serve(mocked, issuer(expires_in=7200))
    provider = make_provider(session, clock, sleep)
    await provider.token()
    clock.now = T0 + 7200 - 60.1
    assert await provider.token() == "token-1"
    clock.now = T0 + 7200 - 60
    assert await provider.token() == "token-2"


@pytest.mark.parametrize("expires_in", [None, 0, -5, "nan", "0"])
async def test_missing_or_useless_expires_in_means_an_hour(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    clock: Clock,
    sleep: FakeSleep,
    expires_in: int | str | None,
) -> None:
    serve(mocked, issuer(expires_in=expires_in))
    provider = make_provider(session, clock, sleep)
    assert provider.expires_at is None
    await provider.token()
    assert DEFAULT_TOKEN_LIFETIME == 3600.0
    assert provider.expires_at == T0 + 3600


async def test_expires_in_as_a_string_is_accepted(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    # Some API gateways send every field of the token response as a string.
    serve(mocked, issuer(expires_in="1799"))
    provider = make_provider(session, clock, sleep)
    assert await provider.token() == "token-1"
    assert provider.expires_at == T0 + 1799


async def test_invalidate_forces_a_new_token(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    api = serve(mocked, issuer())
    provider = make_provider(session, clock, sleep)
    assert await provider.token() == "token-1"
    provider.invalidate()
    assert provider.expires_at is None
    assert await provider.token() == "token-2"
    assert api.calls["token"] == 2


async def test_invalidating_a_token_already_replaced_keeps_the_new_one(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    # Pages in flight with the old token all get 401; only the first may cause a refresh.
    api = serve(mocked, issuer())
    provider = make_provider(session, clock, sleep)
    old = await provider.token()
    provider.invalidate(old)
    assert await provider.token() == "token-2"
    provider.invalidate(old)
    assert await provider.token() == "token-2"
    provider.invalidate("token-2")
    assert await provider.token() == "token-3"
    assert api.calls["token"] == 3


async def test_concurrent_callers_share_one_request(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    api = serve(mocked, issuer())
    provider = make_provider(session, clock, sleep)
    tokens = await asyncio.gather(*(provider.token() for _ in range(20)))
    assert tokens == ["token-1"] * 20
    assert api.calls["token"] == 1
    # And the same again once the token is due for refresh.
    clock.now += 3600
    tokens = await asyncio.gather(*(provider.token() for _ in range(20)))
    assert tokens == ["token-2"] * 20
    assert api.calls["token"] == 2


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_realm_goes_in_the_query_and_the_form(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    clock: Clock,
    sleep: FakeSleep,
    method: str,
) -> None:
    api = serve(mocked, issuer())
    transport = HttpTransport(session, sleep=sleep, clock=clock)
    config = dataclasses.replace(make_config(method), realm="acme/eu")
    assert await ClientCredentials(config, transport, clock=clock).token() == "token-1"
    (request,) = api.token_seen
    assert request.url.query["realm"] == "acme/eu"  # the encoding on the wire: next test
    assert request.form["realm"] == "acme/eu"
    assert request.form["grant_type"] == "client_credentials"


async def test_realm_on_the_wire_of_a_real_server(session: aiohttp.ClientSession) -> None:
    async with serving(issuer(expires_in=60)) as api:
        config = dataclasses.replace(make_config(url=api.base_url + TOKEN_PATH), realm="org 1")
        assert await ClientCredentials(config, HttpTransport(session)).token() == "token-1"
    ((query, form),) = [(seen.raw_query, seen.form) for seen in api.token_seen]
    assert query == "realm=org%201"
    assert form == {"grant_type": "client_credentials", "scope": "emailqueueapi", "realm": "org 1"}


@pytest.mark.parametrize(
    ("url", "realm", "expected"),
    [
        ("https://h/t", "acme", "https://h/t?realm=acme"),
        ("https://h/t?x=1", "acme", "https://h/t?x=1&realm=acme"),
        ("https://h/t?realm=mine", "acme", "https://h/t?realm=mine"),  # the URL's own wins
        ("https://h/t?realm=", "acme", "https://h/t?realm="),
        ("https://h/t", "", "https://h/t"),  # token_realm "" sends none
        ("https://h/t", "a&b=c", "https://h/t?realm=a%26b%3Dc"),
    ],
)
def test_with_realm(url: str, realm: str, expected: str) -> None:
    assert with_realm(url, realm) == expected


async def test_no_realm_sends_neither_query_nor_field(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    api = serve(mocked, issuer())
    await make_provider(session, clock, sleep).token()
    assert "realm" not in api.token_seen[0].form
    assert api.token_seen[0].raw_query == ""


async def test_a_scope_list_instead_of_a_string_still_gives_the_token(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    body = b'{"access_token": "tok", "expires_in": 60, "scope": ["emailqueueapi"]}'
    serve(mocked, issuer(reply=Reply(200, body)))
    assert await make_provider(session, clock, sleep).token() == "tok"


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"",
        b"[]",
        b'{"token_type": "Bearer", "expires_in": 3600}',
        b'{"access_token": "", "expires_in": 3600}',
        b'{"access_token": null}',
        b'{"access_token": 42}',
    ],
)
async def test_unusable_token_response_is_an_auth_error(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    clock: Clock,
    sleep: FakeSleep,
    body: bytes,
) -> None:
    serve(mocked, issuer(reply=Reply(200, body)))
    provider = make_provider(session, clock, sleep)
    with pytest.raises(AuthError) as info:
        await provider.token()
    assert info.value.reason == "auth"
    assert provider.expires_at is None


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_token_endpoint_refusal_is_an_auth_error_without_retry(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    clock: Clock,
    sleep: FakeSleep,
    status: int,
) -> None:
    api = serve(mocked, issuer(reply=Reply(status, b'{"error": "invalid_client"}')))
    with pytest.raises(AuthError) as info:
        await make_provider(session, clock, sleep).token()
    assert info.value.status == status
    assert api.calls["token"] == 1
    assert sleep.delays == []


async def test_token_endpoint_5xx_is_http_5xx_after_retries_not_auth(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    api = serve(mocked, issuer(reply=Reply(503, b"unavailable")))
    with pytest.raises(ServerHTTPError) as info:
        await make_provider(session, clock, sleep, max_retries=2).token()
    assert info.value.status == 503
    assert api.calls["token"] == 3
    assert sleep.delays == [0.5, 1.0]


async def test_token_endpoint_unreachable_is_connection_not_auth(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    mocked.post(TOKEN_URL, exception=aiohttp.ClientConnectionError("refused"), repeat=True)
    with pytest.raises(ConnectionFailedError) as info:
        await make_provider(session, clock, sleep, max_retries=0).token()
    assert info.value.reason == "connection" and str(info.value).startswith("token ")


async def test_token_endpoint_timeout_is_timeout_not_auth(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    mocked.post(TOKEN_URL, exception=TimeoutError(), repeat=True)
    with pytest.raises(RequestTimeoutError) as info:
        await make_provider(session, clock, sleep, max_retries=0).token()
    assert info.value.reason == "timeout"


@pytest.mark.parametrize(
    ("status", "body", "reason", "shown"),
    [
        (400, b'{"error": "invalid_scope"}', "auth", "400 invalid_scope"),
        (400, b'{"error": "unauthorized_client"}', "auth", "400 unauthorized_client"),
        (401, b"", "auth", "401"),
        (401, b'{"error": "Invalid Realm <script>"}', "auth", "401"),  # odd codes are not echoed
        (403, b'{"error": "access_denied"}', "auth", "403 access_denied"),
        (404, b"<html>no such path</html>", "http_4xx", "404"),
        (302, b"", "http_other", "302 (a redirect, not followed)"),
        (101, b"", "http_other", "101 (an informational status)"),
        (400, b'{"error": "invalid_request"}', "http_4xx", "400 invalid_request"),
    ],
)
async def test_token_endpoint_refusals_and_other_4xx(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    clock: Clock,
    sleep: FakeSleep,
    status: int,
    body: bytes,
    reason: str,
    shown: str,
) -> None:
    serve(mocked, issuer(reply=Reply(status, body)))
    with pytest.raises(PollError) as info:
        await make_provider(session, clock, sleep).token()
    assert info.value.reason == reason
    assert str(info.value).endswith(f"({shown})") or str(info.value).endswith(shown)


async def test_secrets_never_appear_in_errors(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    serve(mocked, issuer(reply=Reply.json(401, {"echo": "the-secret"})))
    with pytest.raises(AuthError) as info:
        await make_provider(session, clock, sleep).token()
    assert "the-secret" not in str(info.value)
    assert "the-secret" not in repr(make_config())


async def test_a_failed_refresh_is_retried_on_the_next_call(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    api = serve(mocked, issuer())
    api.token_script[0] = Reply(401)
    provider = make_provider(session, clock, sleep)
    with pytest.raises(AuthError):
        await provider.token()
    assert await provider.token() == "token-1"
    assert api.calls["token"] == 2 and api.issued == ["token-1"]


async def test_a_failed_early_refresh_keeps_the_valid_token_and_holds_off(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    api = serve(mocked, issuer(expires_in=100))
    provider = make_provider(session, clock, sleep)
    assert await provider.token() == "token-1"
    api.token_reply = Reply(503, b"down")
    clock.now = T0 + 95  # inside the early-refresh window, token still valid until T0 + 100
    assert await provider.token() == "token-1"
    failed_attempts = api.calls["token"]
    assert await provider.token() == "token-1"  # held off: no new request per call
    assert api.calls["token"] == failed_attempts
    clock.now = T0 + 100  # expired: a failing refresh now fails the call, with its own reason
    with pytest.raises(ServerHTTPError):
        await provider.token()
    api.token_reply = None
    assert (await provider.token()).startswith("token-")
    assert provider.expires_at == T0 + 200


async def test_a_throttled_token_endpoint_is_rate_limiting_not_auth(
    session: aiohttp.ClientSession, mocked: aioresponses, clock: Clock, sleep: FakeSleep
) -> None:
    serve(mocked, issuer(reply=Reply(429, headers={"Retry-After": "120"})))
    provider = make_provider(session, clock, sleep)
    with pytest.raises(RateLimitedError) as info:
        await provider.token()
    assert info.value.retry_after == 120


# --- static token and pure expiry ------------------------------------------------------------


async def test_static_token_never_requests_anything(mocked: aioresponses) -> None:
    provider = StaticToken("configured")
    assert await provider.token() == "configured"
    provider.invalidate()
    assert await provider.token() == "configured"
    assert provider.expires_at is None
    assert mocked.requests == {}


@pytest.mark.parametrize(
    ("lifetime", "now", "expected"),
    [
        (3600.0, 0.0, False),
        (3600.0, 3539.9, False),
        (3600.0, 3540.0, True),  # one minute early at most
        (3600.0, 3600.0, True),
        (3600.0, 9999.0, True),
        (100.0, 89.9, False),  # 10% early for short lifetimes
        (100.0, 90.0, True),
        (1.0, 0.89, False),
        (1.0, 0.9, True),
    ],
)
def test_needs_refresh(lifetime: float, now: float, expected: bool) -> None:
    state = TokenState("t", expires_at=lifetime, lifetime=lifetime)
    assert state.needs_refresh(now) is expected
