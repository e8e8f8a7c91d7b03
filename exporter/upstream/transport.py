"""One HTTP request to the upstream with bounded time and size, retried with backoff.

Shared by the token provider and the emails client. Every attempt is reported to the
observer (`endpoint`, `code`, seconds) so `api_requests_total` counts what really went out; every
answer's rate-limit headers to `on_limits` and to the key's limiter, and the `notAfter` of the
certificate an https host presented to `on_certificate`.
"""

from __future__ import annotations

import asyncio
import math
import mmap
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from exporter.domain.errors import (
    ClientHTTPError,
    ConnectionFailedError,
    DecodeError,
    OtherHTTPError,
    PollError,
    RateLimitedError,
    RequestTimeoutError,
    ServerHTTPError,
)
from exporter.upstream.limit_headers import UNANNOUNCED, Announced, read_announced
from exporter.upstream.ratelimit import Limiter

# Bodies up to this size (a page of 1000 emails is about 700 KB) are read in one step.
READ_AT_ONCE = 2 * 1024 * 1024
# A response body: bytes, or (for large ones) a view of the mapping it was read into.
Body = bytes | bytearray | memoryview
EnvProxy = tuple[URL | None, aiohttp.BasicAuth | None]
RequestObserver = Callable[[str, str, float], None]
LimitsObserver = Callable[[str, Announced], None]
CertificateObserver = Callable[[str, float], None]
Sleep = Callable[[float], Awaitable[None]]


def _ignore(endpoint: str, code: str, seconds: float) -> None:
    """Default observer: record nothing."""


def _ignore_limits(endpoint: str, announced: Announced) -> None:
    """Default: record no rate-limit headers."""


def _ignore_certificate(endpoint: str, not_after: float) -> None:
    """Default: record no certificate expiry."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry 429, 5xx, timeouts and connection errors."""

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0
    # A Retry-After longer than this is not waited out inside a poll: the poll fails as
    # rate limited and the poller delays the next one instead.
    max_retry_after: float = 60.0

    def backoff(self, attempt: int, rand: float) -> float:
        """Exponential backoff with full jitter for retry number `attempt` (0-based)."""
        return rand * min(self.max_delay, self.base_delay * 2.0**attempt)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete upstream response (body already read and size-checked)."""

    status: int
    headers: Mapping[str, str]  # case-insensitive, as aiohttp gives them
    body: Body
    announced: Announced = UNANNOUNCED


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # float() also accepts "inf" and "nan"; neither is a usable delay.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # HTTP dates are GMT; a zone-less one must not be read in the host's local time.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class HttpTransport:
    """Sends requests with a per-request timeout, a body-size cap and retries."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        request_timeout: float = 10.0,
        max_response_bytes: int = 32 * 1024 * 1024,
        retry: RetryPolicy | None = None,
        observer: RequestObserver = _ignore,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        ssl: Any = True,
        limiter: Limiter | None = None,
        on_limits: LimitsObserver = _ignore_limits,
        on_certificate: CertificateObserver = _ignore_certificate,
    ) -> None:
        self._session = session
        # The request rate limiter of the API key (max_requests_per_second), shared with the other
        # organisations of the key; every attempt, retries included, waits for its turn.
        self._limiter = limiter
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._max_bytes = max_response_bytes
        self._retry = retry or RetryPolicy()
        self._observer = observer
        self._on_limits = on_limits
        self._on_certificate = on_certificate
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._ssl = ssl
        self._proxies: dict[tuple[str, str | None, int | None], EnvProxy] = {}

    def _proxy(self, url: str) -> EnvProxy:
        """The proxy HTTPS_PROXY/HTTP_PROXY/NO_PROXY name for `url`, looked up once per origin.

        aiohttp's `trust_env` would look it up (and read ~/.netrc) in a worker thread on every
        request, two thread hops per page that cost more CPU than decoding it; the environment
        is only read at start anyway.
        """
        parsed = URL(url)
        origin = (parsed.scheme, parsed.host, parsed.port)
        found = self._proxies.get(origin)
        if found is None:
            try:
                found = get_env_proxy_for_url(parsed)
            except LookupError:
                found = (None, None)
            self._proxies[origin] = found
        return found

    async def request(self, endpoint: str, method: str, url: str, **kwargs: Any) -> HttpResponse:
        """The first response that is not worth retrying; raises once retries are exhausted."""
        retry = self._retry
        attempt = 0
        while True:
            try:
                response = await self._attempt(endpoint, method, url, **kwargs)
            except (RequestTimeoutError, ConnectionFailedError):
                if attempt >= retry.max_retries:
                    raise
                await self._sleep(retry.backoff(attempt, self._rand()))
                attempt += 1
                continue
            error = _retryable_error(endpoint, response)
            if error is None:
                return response
            delay = retry.backoff(attempt, self._rand())
            if response.status == 429:
                retry_after = self._retry_after(endpoint, response)
                error.retry_after = retry_after
                if retry_after is not None:
                    if retry_after > retry.max_retry_after:
                        raise error
                    # Never less than the backoff: a Retry-After of 0 or a date in the past
                    # must not turn the retries into a burst.
                    delay = max(delay, retry_after)
                left = self._limiter.time_left() if self._limiter is not None else None
                if left is not None and delay > left:
                    raise error  # not waited for: the poll's deadline comes first
            if attempt >= retry.max_retries:
                raise error
            await self._sleep(delay)
            attempt += 1

    def _retry_after(self, endpoint: str, response: HttpResponse) -> float | None:
        """Seconds a 429 asks to wait (`Retry-After`, else the announced reset), told to the
        key's limiter so its other organisations wait too."""
        now = self._clock()
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        reset_at = response.announced.reset_at
        if retry_after is None and reset_at is not None:
            retry_after = max(0.0, reset_at - now)
        if retry_after and self._limiter is not None:
            self._limiter.throttled(endpoint, retry_after)
        return retry_after

    async def _attempt(self, endpoint: str, method: str, url: str, **kwargs: Any) -> HttpResponse:
        if self._limiter is not None:
            await self._limiter.take(endpoint)
        started = time.monotonic()
        code = "error"
        try:
            proxy, proxy_auth = self._proxy(url)
            async with self._session.request(
                method,
                url,
                timeout=self._timeout,
                ssl=self._ssl,
                allow_redirects=False,
                proxy=proxy,
                proxy_auth=proxy_auth,
                **kwargs,
            ) as resp:
                code = str(resp.status)
                announced = self._heard(endpoint, resp)
                body = await self._read_body(endpoint, resp)
                return HttpResponse(resp.status, resp.headers, body, announced)
        except (TimeoutError, aiohttp.ClientError) as exc:
            code = "error"
            raise transport_error(endpoint, exc) from exc
        finally:
            self._observer(endpoint, code, time.monotonic() - started)

    def _heard(self, endpoint: str, resp: aiohttp.ClientResponse) -> Announced:
        """Pass on what the answer says of the key's rate limit and of the host's certificate."""
        announced = read_announced(resp.headers, self._clock())
        if not announced.empty:
            self._on_limits(endpoint, announced)
            if self._limiter is not None:
                self._limiter.learn(endpoint, announced)
        not_after = peer_not_after(resp)
        if not_after is not None:
            self._on_certificate(endpoint, not_after)
        return announced

    async def _read_body(self, endpoint: str, resp: aiohttp.ClientResponse) -> Body:
        limit = self._max_bytes
        if resp.content_length is not None and resp.content_length > limit:
            size = resp.content_length
            raise DecodeError(f"{endpoint} response body of {size} bytes exceeds {limit}")
        encoded = resp.headers.get("Content-Encoding", "identity").lower() != "identity"
        if resp.content_length is not None and resp.content_length <= READ_AT_ONCE and not encoded:
            # Small, of known length (a compressed body's length says nothing of what it
            # inflates to), and aiohttp stops at it: read at once, the cheapest way. A larger
            # body is read chunk by chunk, so no single step copies or touches all of it.
            return await resp.read()
        # One buffer, handed on as it is (a list of chunks joined at the end would hold the body
        # twice). Past READ_AT_ONCE it moves to a private anonymous mapping of `limit` bytes:
        # only the pages written become resident, nothing is copied as it grows, and it is
        # unmapped the moment the body is dropped. Large bodies grown on the heap fragmented it,
        # and a daemon fed oversized pages every poll grew without bound.
        body = bytearray()
        mapped: mmap.mmap | None = None
        size = 0
        try:
            async for chunk in resp.content.iter_chunked(256 * 1024):
                size += len(chunk)
                if size > limit:
                    raise DecodeError(f"{endpoint} response body exceeds {limit} bytes")
                if mapped is not None:
                    mapped.write(chunk)
                elif size > READ_AT_ONCE:
                    mapped = mmap.mmap(-1, limit)
                    mapped.write(body)
                    mapped.write(chunk)
                    body = bytearray()
                else:
                    body += chunk
        except BaseException:
            # Too large, failed or cancelled: freed now, not when the traceback that still sees
            # this frame (a cancelled request's can sit in a reference cycle) is collected.
            body, mapped = bytearray(), None
            raise
        return body if mapped is None else memoryview(mapped)[:size]


def peer_not_after(resp: aiohttp.ClientResponse) -> float | None:
    """Unix time of the `notAfter` of the certificate the host presented (https), to the second.

    Read from the connection the answer came on (a new one or a reused one: the certificate of
    the last TLS connection). Upstream certificates are always verified, so the standard library
    has decoded it; anything unexpected is None, never an error.
    """
    # The connection goes back to the pool as soon as a small body is in (before the caller
    # sees the response), so its protocol, which keeps the transport, is asked instead.
    connection = resp.connection
    protocol = connection.protocol if connection is not None else getattr(resp, "_protocol", None)
    transport = getattr(protocol, "transport", None)
    tls = transport.get_extra_info("ssl_object") if transport is not None else None
    if not isinstance(tls, ssl.SSLObject):
        return None
    try:
        not_after = (tls.getpeercert() or {}).get("notAfter")
        return float(ssl.cert_time_to_seconds(str(not_after))) if not_after else None
    except (ValueError, OverflowError, ssl.SSLError):
        return None


def transport_error(endpoint: str, exc: TimeoutError | aiohttp.ClientError) -> PollError:
    """The poll error for a request that got no response: `timeout` or `connection`."""
    if isinstance(exc, TimeoutError):
        return RequestTimeoutError(f"{endpoint} request timed out")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ConnectionFailedError(f"{endpoint} response body incomplete")
    if isinstance(exc, aiohttp.ClientConnectorError):
        # Host, port and the OS reason say what to fix; the URL (with its query) is not shown.
        errno = exc.os_error.errno or 0
        # DNS and TLS failures carry no meaningful errno; their class names say what failed.
        plain = errno > 0 and not isinstance(exc.os_error, ssl.SSLError)
        reason = os.strerror(errno) if plain else type(exc).__name__
        return ConnectionFailedError(
            f"{endpoint} request failed: cannot connect to {exc.host}:{exc.port}: {reason}"
        )
    return ConnectionFailedError(f"{endpoint} request failed: {type(exc).__name__}")


def status_error(endpoint: str, status: int) -> PollError | None:
    """The error a final answer of this status is, by class; None for a 2xx with content.

    1xx and 3xx (a redirect is never followed: it would carry the credentials elsewhere) are
    `http_other`; 4xx `http_4xx`; 204 has no body to decode, so it is `decode`, as is any other
    2xx whose body turns out not to be JSON (found when it is decoded).
    """
    if status == 204:
        return DecodeError(f"{endpoint} endpoint answered 204 (no content)", status=status)
    if 200 <= status < 300:
        return None
    if 400 <= status < 500:
        return ClientHTTPError(f"{endpoint} endpoint answered {status}", status=status)
    if status >= 500:
        return ServerHTTPError(f"{endpoint} endpoint answered {status}", status=status)
    kind = "a redirect, not followed" if 300 <= status < 400 else "an informational status"
    return OtherHTTPError(f"{endpoint} endpoint answered {status} ({kind})", status=status)


def _retryable_error(endpoint: str, response: HttpResponse) -> PollError | None:
    """The error to raise if retries run out, or None when the response is final."""
    if response.status == 429:
        return RateLimitedError(f"{endpoint} endpoint rate limited the request (429)", status=429)
    if response.status >= 500:
        status = response.status
        return ServerHTTPError(f"{endpoint} endpoint answered {status}", status=status)
    return None
