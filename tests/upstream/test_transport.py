"""HttpTransport: retries with backoff, Retry-After, timeouts, connection errors, body-size cap."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from exporter.domain.errors import (
    ConnectionFailedError,
    DecodeError,
    RateLimitedError,
    RequestTimeoutError,
    ServerHTTPError,
)
from exporter.upstream.limit_headers import Announced
from exporter.upstream.transport import HttpTransport, RetryPolicy, parse_retry_after
from tests.fakes import FakeSleep

URL_ = "http://api.test/emails"
NOW = 1_700_000_000.0


class Observer:
    """Records every (endpoint, code) the transport reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, endpoint: str, code: str, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append((endpoint, code))

    @property
    def codes(self) -> list[str]:
        return [code for _, code in self.calls]


@pytest.fixture
def observer() -> Observer:
    return Observer()


def make_transport(
    session: aiohttp.ClientSession,
    sleep: FakeSleep,
    observer: Observer | None = None,
    *,
    rand: float = 1.0,
    **kwargs: Any,
) -> HttpTransport:
    return HttpTransport(
        session,
        sleep=sleep,
        rand=lambda: rand,
        clock=lambda: NOW,
        observer=observer or Observer(),
        **kwargs,
    )


def sent(mocked: aioresponses, url: str = URL_, method: str = "GET") -> int:
    """How many requests went to `url`."""
    return len(mocked.requests.get((method, URL(url)), []))


# --- Retry-After -----------------------------------------------------------------------------


async def test_429_with_retry_after_seconds_waits_exactly_that(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep, observer: Observer
) -> None:
    mocked.get(URL_, status=429, headers={"Retry-After": "7"})
    mocked.get(URL_, status=200, body=b"ok")
    response = await make_transport(session, sleep, observer).request("emails", "GET", URL_)
    assert response.status == 200
    assert response.body == b"ok"
    assert sleep.delays == [7.0]
    assert observer.calls == [("emails", "429"), ("emails", "200")]


async def test_429_with_retry_after_http_date(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, status=429, headers={"Retry-After": formatdate(NOW + 12, usegmt=True)})
    mocked.get(URL_, status=200)
    response = await make_transport(session, sleep).request("emails", "GET", URL_)
    assert response.status == 200
    assert sleep.delays == [12.0]


async def test_retry_after_above_the_maximum_fails_without_sleeping(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, status=429, headers={"Retry-After": "120"}, repeat=True)
    transport = make_transport(session, sleep, retry=RetryPolicy(max_retry_after=60.0))
    with pytest.raises(RateLimitedError) as info:
        await transport.request("emails", "GET", URL_)
    assert info.value.retry_after == 120.0
    assert info.value.status == 429
    assert sleep.delays == []
    assert sent(mocked) == 1


async def test_429_storm_exhausts_retries(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep, observer: Observer
) -> None:
    mocked.get(URL_, status=429, repeat=True)
    transport = make_transport(session, sleep, observer, retry=RetryPolicy(max_retries=2))
    with pytest.raises(RateLimitedError) as info:
        await transport.request("emails", "GET", URL_)
    assert info.value.retry_after is None
    # No Retry-After: exponential backoff, base 0.5 s, full jitter with rand() = 1.
    assert sleep.delays == [0.5, 1.0]
    assert observer.codes == ["429"] * 3


async def test_429_storm_with_retry_after_reports_it_on_the_error(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, status=429, headers={"Retry-After": "3"}, repeat=True)
    transport = make_transport(session, sleep, retry=RetryPolicy(max_retries=2))
    with pytest.raises(RateLimitedError) as info:
        await transport.request("emails", "GET", URL_)
    assert info.value.retry_after == 3.0
    assert sleep.delays == [3.0, 3.0]
    assert sent(mocked) == 3


async def test_a_retry_after_date_in_the_past_keeps_the_backoff(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    # A past date means "now": it must not turn the retries into a burst (they were sent back
    # to back, four requests within 10 ms); the exponential backoff still spaces them.
    past = formatdate(NOW - 3600, usegmt=True)
    mocked.get(URL_, status=429, headers={"Retry-After": past}, repeat=True)
    transport = make_transport(session, sleep, rand=0.5, retry=RetryPolicy(max_retries=3))
    with pytest.raises(RateLimitedError):
        await transport.request("emails", "GET", URL_)
    assert sleep.delays == [0.25, 0.5, 1.0]
    assert sent(mocked) == 4


async def test_a_retry_after_shorter_than_the_backoff_waits_the_backoff(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, status=429, headers={"Retry-After": "0"}, repeat=True)
    transport = make_transport(session, sleep, rand=1.0, retry=RetryPolicy(max_retries=2))
    with pytest.raises(RateLimitedError):
        await transport.request("emails", "GET", URL_)
    assert sleep.delays == [0.5, 1.0]


async def test_a_429_without_retry_after_waits_for_the_announced_reset(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, status=429, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "9"})
    mocked.get(URL_, status=200)
    response = await make_transport(session, sleep).request("emails", "GET", URL_)
    assert response.status == 200 and sleep.delays == [9.0]


class HeardLimiter:
    """A limiter that records what the transport passes on of each answer."""

    def __init__(self) -> None:
        self.limits: list[tuple[str, Announced]] = []
        self.learned: list[tuple[str, Announced]] = []
        self.throttles: list[tuple[str, float]] = []
        self.left: float | None = None

    async def take(self, endpoint: str) -> float:
        return 0.0

    def learn(self, endpoint: str, announced: Announced) -> None:
        self.learned.append((endpoint, announced))

    def throttled(self, endpoint: str, seconds: float) -> None:
        self.throttles.append((endpoint, seconds))

    def time_left(self) -> float | None:
        return self.left


async def test_every_answers_rate_limit_headers_are_passed_on(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    heard = HeardLimiter()
    headers = {"X-RateLimit-Limit": "25", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "4"}
    mocked.get(URL_, status=429, headers=headers)
    mocked.get(URL_, status=200, headers={"RateLimit-Remaining": "24"})
    mocked.get(URL_, status=200)
    transport = make_transport(
        session,
        sleep,
        limiter=heard,
        on_limits=lambda endpoint, said: heard.limits.append((endpoint, said)),
    )
    await transport.request("emails", "GET", URL_)
    await transport.request("emails", "GET", URL_)
    said = [("emails", Announced(25, 0, NOW + 4)), ("emails", Announced(None, 24, None))]
    assert heard.limits == said and heard.learned == said  # the answer without any: nothing
    assert heard.throttles == [("emails", 4.0)]
    assert sleep.delays == [4.0]


async def test_a_429_wait_past_the_polls_deadline_fails_at_once(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    heard = HeardLimiter()
    heard.left = 5.0
    mocked.get(URL_, status=429, headers={"Retry-After": "8"}, repeat=True)
    transport = make_transport(session, sleep, limiter=heard)
    with pytest.raises(RateLimitedError) as info:
        await transport.request("emails", "GET", URL_)
    assert info.value.retry_after == 8.0 and sleep.delays == [] and sent(mocked) == 1


# --- 5xx -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_then_success(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    sleep: FakeSleep,
    observer: Observer,
    status: int,
) -> None:
    mocked.get(URL_, status=status)
    mocked.get(URL_, status=200, body=b"{}")
    response = await make_transport(session, sleep, observer).request("emails", "GET", URL_)
    assert response.status == 200
    assert sleep.delays == [0.5]
    assert observer.codes == [str(status), "200"]


async def test_5xx_always_fails_after_every_retry_with_exponential_backoff(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep, observer: Observer
) -> None:
    mocked.get(URL_, status=503, repeat=True)
    transport = make_transport(session, sleep, observer, rand=0.5)
    with pytest.raises(ServerHTTPError) as info:
        await transport.request("emails", "GET", URL_)
    assert info.value.status == 503
    assert info.value.reason == "http_5xx"
    assert sent(mocked) == 4  # max_retries=3, plus the first attempt
    assert sleep.delays == [0.25, 0.5, 1.0]  # half of 0.5, 1, 2
    assert observer.codes == ["503"] * 4


async def test_backoff_is_capped_at_max_delay(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, status=500, repeat=True)
    policy = RetryPolicy(max_retries=5, base_delay=1.0, max_delay=3.0)
    with pytest.raises(ServerHTTPError):
        await make_transport(session, sleep, retry=policy).request("emails", "GET", URL_)
    assert sleep.delays == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_backoff_applies_full_jitter() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    assert policy.backoff(0, 0.0) == 0.0
    assert policy.backoff(3, 1.0) == 4.0
    assert policy.backoff(3, 0.25) == 1.0
    assert policy.backoff(20, 1.0) == 30.0


async def test_no_retries_means_one_attempt(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, status=500, repeat=True)
    with pytest.raises(ServerHTTPError):
        await make_transport(session, sleep, retry=RetryPolicy(max_retries=0)).request(
            "emails", "GET", URL_
        )
    assert sent(mocked) == 1
    assert sleep.delays == []


# --- 4xx -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405])
async def test_4xx_is_returned_without_retrying(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    sleep: FakeSleep,
    observer: Observer,
    status: int,
) -> None:
    mocked.get(URL_, status=status, body=b'{"code": 1}', repeat=True)
    response = await make_transport(session, sleep, observer).request("emails", "GET", URL_)
    assert response.status == status
    assert response.body == b'{"code": 1}'
    assert sent(mocked) == 1
    assert sleep.delays == []
    assert observer.codes == [str(status)]


# --- timeouts and connection errors ------------------------------------------------------------


async def test_timeouts_fail_after_every_retry(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep, observer: Observer
) -> None:
    mocked.get(URL_, exception=TimeoutError(), repeat=True)
    transport = make_transport(session, sleep, observer, retry=RetryPolicy(max_retries=2))
    with pytest.raises(RequestTimeoutError) as info:
        await transport.request("emails", "GET", URL_)
    assert info.value.reason == "timeout"
    assert sleep.delays == [0.5, 1.0]
    assert observer.codes == ["error"] * 3


async def test_timeout_then_success(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, exception=TimeoutError())
    mocked.get(URL_, status=200, body=b"x")
    response = await make_transport(session, sleep).request("emails", "GET", URL_)
    assert response.body == b"x"
    assert sleep.delays == [0.5]


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ClientConnectionError("refused"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("truncated"),
    ],
)
async def test_connection_errors_fail_after_every_retry(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    sleep: FakeSleep,
    observer: Observer,
    exc: Exception,
) -> None:
    mocked.get(URL_, exception=exc, repeat=True)
    transport = make_transport(session, sleep, observer, retry=RetryPolicy(max_retries=1))
    with pytest.raises(ConnectionFailedError) as info:
        await transport.request("emails", "GET", URL_)
    assert info.value.reason == "connection"
    assert sent(mocked) == 2
    assert sleep.delays == [0.5]
    assert observer.codes == ["error", "error"]


async def test_connection_error_then_success(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, exception=aiohttp.ClientConnectionError("reset"))
    mocked.get(URL_, status=200)
    assert (await make_transport(session, sleep).request("emails", "GET", URL_)).status == 200


async def test_request_options_are_forwarded(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    seen: list[dict[str, Any]] = []

    def callback(url: URL, **kwargs: Any) -> CallbackResult:
        seen.append(kwargs)
        return CallbackResult(status=200)

    mocked.post(URL_, callback=callback)
    transport = make_transport(session, sleep, request_timeout=2.5)
    await transport.request("token", "POST", URL_, headers={"x-api-key": "k"}, data={"a": "b"})
    (kwargs,) = seen
    assert kwargs["allow_redirects"] is False
    assert kwargs["timeout"].total == 2.5
    assert kwargs["headers"] == {"x-api-key": "k"}
    assert kwargs["data"] == {"a": "b"}


# --- body-size cap ---------------------------------------------------------------------------


async def test_body_over_the_cap_by_content_length_is_a_decode_error(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, status=200, body=b"x" * 10, headers={"Content-Length": "5000"}, repeat=True)
    transport = make_transport(session, sleep, max_response_bytes=1000)
    with pytest.raises(DecodeError) as info:
        await transport.request("emails", "GET", URL_)
    assert info.value.reason == "decode"
    assert sent(mocked) == 1  # not retried
    assert sleep.delays == []


async def test_body_over_the_cap_without_content_length_is_a_decode_error(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, status=200, body=b"x" * 1001, repeat=True)
    transport = make_transport(session, sleep, max_response_bytes=1000)
    with pytest.raises(DecodeError):
        await transport.request("emails", "GET", URL_)
    assert sent(mocked) == 1


async def test_body_exactly_at_the_cap_is_accepted(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    mocked.get(URL_, status=200, body=b"x" * 1000, headers={"Content-Length": "1000"})
    transport = make_transport(session, sleep, max_response_bytes=1000)
    assert len((await transport.request("emails", "GET", URL_)).body) == 1000


CHUNK = b"y" * 16 * 1024


async def _stream(request: web.Request) -> web.StreamResponse:
    """A chunked body (no Content-Length) of `n` chunks."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for _ in range(int(request.query["n"])):
            await response.write(CHUNK)
    except ConnectionError:
        pass  # the client stopped reading at its cap
    return response


@pytest.fixture
async def stream_server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_get("/stream", _stream)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def test_streamed_body_over_the_cap_is_a_decode_error(
    stream_server: TestServer, session: aiohttp.ClientSession, sleep: FakeSleep
) -> None:
    url = str(stream_server.make_url("/stream").with_query(n=64))  # 1 MiB
    transport = make_transport(session, sleep, max_response_bytes=100 * 1024)
    with pytest.raises(DecodeError):
        await transport.request("emails", "GET", url)
    assert sleep.delays == []


async def test_streamed_body_under_the_cap_is_read_whole(
    stream_server: TestServer, session: aiohttp.ClientSession, sleep: FakeSleep
) -> None:
    url = str(stream_server.make_url("/stream").with_query(n=4))
    transport = make_transport(session, sleep, max_response_bytes=4 * len(CHUNK))
    response = await transport.request("emails", "GET", url)
    assert response.body == CHUNK * 4
    assert response.headers.get("Transfer-Encoding") == "chunked"


# --- parse_retry_after -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("5", 5.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        (formatdate(NOW - 30, usegmt=True), 0.0),
        ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),
        ("Tue, 14 Nov 2023 23:13:50 +0100", 30.0),
        ("Mon, 32 Foo 2023 99:99:99 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.fixture
def local_time_not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with the host's local time zone five hours behind UTC."""
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_not_utc")
def test_retry_after_date_without_zone_is_gmt_not_local_time() -> None:
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50", NOW) == 30.0
