"""Fault matrix, HTTP layer: what the API answers when it misbehaves, and what the exporter makes of it.

Every case checks the poll outcome, the `reason` label, a time bound and that no secret or
personal data reached the logs, /metrics, the landing page or the stored error.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
from aiohttp import web

from tests.fake_alvaria import ADDRESS, API_KEY, TOKEN, FakeAlvaria, Handler
from tests.pipeline import rig


def status(code: int, headers: dict[str, str] | None = None, body: str | None = None) -> Handler:
    """A handler answering `code`, by default with an ErrorResponse that echoes secrets back."""

    async def handler(request: web.Request) -> web.Response:
        text = (
            body
            if body is not None
            else f'{{"code": {code}, "message": "key {API_KEY} for {ADDRESS}"}}'
        )
        return web.Response(
            status=code, text=text, headers=headers, content_type="application/json"
        )

    return handler


def first(times: int, handler: Handler, upstream: FakeAlvaria) -> Handler:
    """`handler` for the first `times` calls, then the honest answer."""
    used = 0

    async def scripted(request: web.Request) -> web.StreamResponse:
        nonlocal used
        used += 1
        return await (handler(request) if used <= times else upstream.serve_page(request))

    return scripted


async def check(upstream: FakeAlvaria, *, ok: bool, reason: str | None = None, within: float = 3.0,
                **options: Any) -> Any:  # fmt: skip
    """Poll once and assert outcome, reason, time bound and no leak; returns the rig's state."""
    async with rig(upstream, **options) as r:
        success, elapsed = await r.poll()
        assert success is ok, r.state.last_error
        assert elapsed < within, elapsed
        assert r.value("alvaria_emailqueue_up") == (1 if ok else 0)
        if reason is not None:
            assert r.value("alvaria_emailqueue_poll_errors_total", reason=reason) == 1
            assert r.state.last_error_reason == reason
        if ok:
            assert r.emails_total() == len(upstream.items)
        await r.assert_no_leak()
        return r


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_5xx_once_is_retried(code: int) -> None:
    upstream = FakeAlvaria()
    upstream.on_emails = first(1, status(code), upstream)
    r = await check(upstream, ok=True)
    assert r.value("alvaria_emailqueue_api_requests_total", endpoint="emails", code=str(code)) == 1


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_5xx_always_fails_after_the_retries(code: int) -> None:
    upstream = FakeAlvaria(on_emails=status(code))
    await check(upstream, ok=False, reason="http_5xx", max_retries=2)
    assert upstream.calls["emails"] == 3


async def test_retry_after_in_seconds_is_waited_out() -> None:
    upstream = FakeAlvaria()
    upstream.on_emails = first(1, status(429, {"Retry-After": "7"}), upstream)
    r = await check(upstream, ok=True)
    assert 7.0 in r.sleeps
    assert r.value("alvaria_emailqueue_poll_errors_total", reason="rate_limited") == 0


async def test_retry_after_as_an_http_date_is_waited_out() -> None:
    upstream = FakeAlvaria()
    when = formatdate(time.time() + 20, usegmt=True)
    upstream.on_emails = first(1, status(429, {"Retry-After": when}), upstream)
    # Waited out inside the poll: 20 s fits in min(60 s, poll_interval).
    r = await check(upstream, ok=True, poll_interval=30)
    assert any(15 <= s <= 21 for s in r.sleeps), r.sleeps


async def test_a_429_storm_fails_the_poll_and_pushes_the_next_one_back() -> None:
    upstream = FakeAlvaria(on_emails=status(429, {"Retry-After": "30"}))
    async with rig(upstream, max_retries=2, poll_interval=60) as r:
        ok, elapsed = await r.poll()
        assert not ok and elapsed < 3 and r.state.last_error_reason == "rate_limited"
        assert upstream.calls["emails"] == 3 and r.sleeps.count(30.0) == 2
        first_delay = r.poller.next_delay(elapsed)
        assert first_delay >= 30
        await r.poll()
        # Backs off further on every rate-limited poll in a row.
        assert r.poller.next_delay(0) >= 2 * 60
        upstream.on_emails = None
        assert (await r.poll())[0]
        assert r.poller.next_delay(0) == 60
        await r.assert_no_leak()


async def test_a_retry_after_longer_than_the_interval_is_not_waited_inside_the_poll() -> None:
    upstream = FakeAlvaria(on_emails=status(429, {"Retry-After": "30"}))
    async with rig(upstream, poll_interval=10) as r:
        ok, _ = await r.poll()
        assert not ok and r.state.last_error_reason == "rate_limited"
        assert upstream.calls["emails"] == 1 and r.sleeps == []
        assert r.poller.next_delay(0) == 30


async def test_a_retry_after_beyond_stale_after_is_not_waited_out_at_all() -> None:
    # stale_after is 50 s here: waiting an hour would only leave the data stale. The poll fails
    # as rate limited at once, and the next one tries on schedule (and fails again, and so on).
    upstream = FakeAlvaria(on_emails=status(429, {"Retry-After": "3600"}))
    async with rig(upstream) as r:
        for polls in (1, 2, 3):
            ok, _ = await r.poll()
            assert not ok and r.state.last_error_reason == "rate_limited"
            assert upstream.calls["emails"] == polls and r.sleeps == []
            assert r.poller.next_delay(0) == 10


async def test_an_html_error_page_is_a_5xx_and_its_body_is_never_shown() -> None:
    page = f"<html><body><h1>502 Bad Gateway</h1>{API_KEY} {ADDRESS}</body></html>"
    upstream = FakeAlvaria(on_emails=status(502, {"Content-Type": "text/html"}, page))
    await check(upstream, ok=False, reason="http_5xx")


async def test_an_html_page_with_status_200_is_a_decode_error() -> None:
    upstream = FakeAlvaria(on_emails=status(200, body="<html>maintenance</html>"))
    await check(upstream, ok=False, reason="decode")


async def test_a_401_once_refreshes_the_token_and_retries() -> None:
    upstream = FakeAlvaria()
    upstream.on_emails = first(1, status(401), upstream)
    await check(upstream, ok=True)
    assert upstream.calls["token"] == 2


async def test_a_401_always_fails_as_auth_after_one_refresh() -> None:
    upstream = FakeAlvaria(on_emails=status(401))
    await check(upstream, ok=False, reason="auth")
    assert upstream.calls["token"] == 2 and upstream.calls["emails"] == 2


async def test_403_wrong_api_key_is_auth() -> None:
    await check(FakeAlvaria(on_emails=status(403)), ok=False, reason="auth")


async def test_404_unknown_org_is_http_4xx() -> None:
    await check(FakeAlvaria(on_emails=status(404)), ok=False, reason="http_4xx")


async def test_bad_client_credentials_are_auth() -> None:
    upstream = FakeAlvaria(on_token=status(401, body='{"error": "invalid_client"}'))
    await check(upstream, ok=False, reason="auth")
    assert upstream.calls["emails"] == 0


async def test_token_endpoint_down_is_connection_not_auth(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/tokenservice/oauth2/access_token"
    await check(FakeAlvaria(), ok=False, reason="connection", token_url=url)


async def test_token_endpoint_5xx_is_http_5xx_not_auth() -> None:
    upstream = FakeAlvaria(on_token=status(503, body="down"))
    await check(upstream, ok=False, reason="http_5xx", max_retries=1)
    assert upstream.calls["token"] == 2 and upstream.calls["emails"] == 0


async def test_slow_token_endpoint_times_out_within_the_request_timeout() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    upstream = FakeAlvaria(on_token=slow)
    await check(
        upstream, ok=False, reason="timeout", request_timeout=0.2, max_retries=1, within=1.5
    )


@pytest.mark.parametrize(
    "body",
    ["<html>login</html>", '{"token_type": "Bearer"}', '{"access_token": ""}', "[]", "null"],
)
async def test_junk_from_the_token_endpoint_is_auth(body: str) -> None:
    await check(FakeAlvaria(on_token=status(200, body=body)), ok=False, reason="auth")


async def test_a_token_without_expires_in_lives_an_hour() -> None:
    r = await check(FakeAlvaria(expires_in=None), ok=True)
    expiry = r.value("alvaria_emailqueue_token_expiry_timestamp_seconds")
    assert expiry == pytest.approx(r.clock.now + 3600)


async def test_a_read_timeout_is_timeout() -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    upstream = FakeAlvaria(on_emails=stall)
    await check(
        upstream, ok=False, reason="timeout", request_timeout=0.2, max_retries=1, within=1.5
    )
    assert upstream.calls["emails"] == 2


async def test_a_connect_timeout_is_timeout(blackhole_port: int) -> None:
    url = f"http://127.0.0.1:{blackhole_port}"
    options = {"api_url": url, "token_url": url + "/token", "request_timeout": 0.3}
    await check(FakeAlvaria(), ok=False, reason="timeout", max_retries=0, within=2, **options)
    # With a working token endpoint the emails request itself times out.
    await check(FakeAlvaria(), ok=False, reason="timeout", max_retries=0, within=2, api_url=url,
                request_timeout=0.3)  # fmt: skip


async def test_connection_refused_is_connection(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    await check(FakeAlvaria(), ok=False, reason="connection", api_url=url, within=2)


async def test_a_reset_in_the_middle_of_the_body_is_connection() -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 10_000
        await response.prepare(request)
        await response.write(b'{"items": [{"id": "1", "fromAddress": "' + ADDRESS.encode())
        assert request.transport is not None
        request.transport.abort()  # RST, not FIN
        return response

    await check(FakeAlvaria(on_emails=reset), ok=False, reason="connection")


async def test_a_body_shorter_than_its_content_length_is_connection() -> None:
    async def short(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 10_000
        await response.prepare(request)
        await response.write(b'{"items": []')
        assert request.transport is not None
        request.transport.close()
        return response

    await check(FakeAlvaria(on_emails=short), ok=False, reason="connection")


@pytest.mark.parametrize(
    "body",
    [
        '{"items": [{"id": "1"}',  # truncated JSON with an honest Content-Length
        "{items: []}",
        "",
        '{"items": "many"}',
        '{"items": {"id": "1"}}',
        '[{"id": "1"}]',
        '"items"',
        '{"code": 500, "message": "internal"}',
    ],
)
async def test_malformed_or_misshapen_json_is_decode(body: str) -> None:
    await check(FakeAlvaria(on_emails=status(200, body=body)), ok=False, reason="decode")


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_huge_response_is_cut_off_as_decode(chunked: bool) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = 10 * 1024 * 1024
        await response.prepare(request)
        chunk = b" " * 65536
        for _ in range(160):
            await response.write(chunk)
        return response

    await check(
        FakeAlvaria(on_emails=huge), ok=False, reason="decode", max_response_bytes=256 * 1024
    )


async def test_a_poll_never_outlasts_three_intervals() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.15)  # each request well inside its timeout
        return await upstream.serve_page(request)

    upstream = FakeAlvaria(items=[{"id": str(n)} for n in range(300)], page_cap=1, on_emails=slow)
    async with rig(upstream, poll_interval=0.2) as r:
        ok, elapsed = await r.poll()
        assert not ok and r.state.last_error_reason == "timeout"
        assert 0.55 <= elapsed < 1.0
        await r.assert_no_leak()


async def test_secrets_travel_in_headers_never_in_urls() -> None:
    upstream = FakeAlvaria()
    seen: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request.path_qs)
        return await upstream.serve_page(request)

    upstream.on_emails = record
    await check(upstream, ok=True)
    assert seen and not any(secret in url for url in seen for secret in (API_KEY, TOKEN))


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nobody listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    yield port


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A loopback port whose full accept queue drops new connections: connects hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in (*fillers, listener):
        sock.close()
