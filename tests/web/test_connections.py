"""The server's own bounds, against the real aiohttp server on loopback with raw sockets:
header_timeout (slowloris), max_connections, keep-alive idle timeout, malformed requests,
clients that stop reading a response."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from exporter.polling.store import Store
from exporter.web.connections import (
    ConnectionGuard,
    ConnectionLimits,
    ServerCollector,
    Throttle,
    raise_fd_limit,
)
from exporter.web.exposition import WRITE_CHUNK, ExpositionCache
from exporter.web.server import EXPOSITION, build_app, serve

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
MiB = 1024 * 1024


class Rig:
    """A running server and the client connections a test opened (all closed at the end)."""

    def __init__(self, port: int, guard: ConnectionGuard) -> None:
        self.port = port
        self.guard = guard
        self.writers: list[asyncio.StreamWriter] = []

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        return reader, writer

    async def wait_open(self, count: int) -> None:
        """Until the server has seen exactly `count` open connections (at most 5 s)."""
        for _ in range(100):
            if self.guard.stats.open == count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.guard.stats.open} open connections, expected {count}")


@contextlib.asynccontextmanager
async def running(app: web.Application | None = None, **limits: float) -> AsyncIterator[Rig]:
    """The exporter's server (or `app`) on a free loopback port with the given limits."""
    guard = ConnectionGuard(ConnectionLimits(**limits))  # type: ignore[arg-type]
    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    app = app or build_app(Store([]), CollectorRegistry())
    task = asyncio.create_task(
        serve(app, "127.0.0.1", 0, stop=stop, guard=guard, on_started=url.set_result)
    )
    port = int((await asyncio.wait_for(url, 10)).rsplit(":", 1)[1].split("/")[0])
    rig = Rig(port, guard)
    try:
        yield rig
    finally:
        for writer in rig.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        stop.set()
        await asyncio.wait_for(task, 10)


async def response(reader: asyncio.StreamReader) -> bytes:
    """One response to GET /healthz (its body is `ok\\n`)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head + await asyncio.wait_for(reader.readexactly(3), 5)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `seconds`."""
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_incomplete_headers_are_dropped_after_header_timeout() -> None:
    async with running(header_timeout=0.3) as rig:
        silent = await rig.connect()
        partial = await rig.connect()
        partial[1].write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert await closed_within(silent[0], 5) and await closed_within(partial[0], 5)
        assert rig.guard.stats.header_timeouts == 2
        assert rig.guard.stats.open == 0
        # A prompt client is not affected.
        reader, writer = await rig.connect()
        writer.write(REQUEST)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")


async def test_a_kept_alive_connection_is_idle_not_slow_and_its_next_request_is_timed_too() -> None:
    async with running(header_timeout=0.3, keepalive_timeout=30) as rig:
        reader, writer = await rig.connect()
        writer.write(REQUEST)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        # Idle longer than header_timeout: still open (keep-alive is its own, longer timer).
        assert not await closed_within(reader, 0.6)
        writer.write(REQUEST)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        # A second request that stalls half way is dropped like a first one.
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        assert await closed_within(reader, 5)
        assert rig.guard.stats.header_timeouts == 1


async def test_a_slow_handler_is_not_cut_by_the_header_timer() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.6)
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/healthz", slow)
    async with running(app, header_timeout=0.2) as rig:
        reader, writer = await rig.connect()
        writer.write(REQUEST)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        assert rig.guard.stats.header_timeouts == 0


async def test_idle_keep_alive_connections_are_closed_after_keepalive_timeout() -> None:
    async with running(header_timeout=5, keepalive_timeout=0.3) as rig:
        reader, writer = await rig.connect()
        writer.write(REQUEST)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        assert await closed_within(reader, 5)


async def test_connections_past_max_connections_are_closed_at_once() -> None:
    async with running(max_connections=3, header_timeout=30) as rig:
        held = [await rig.connect() for _ in range(3)]
        await rig.wait_open(3)
        extra_reader, _ = await rig.connect()
        assert await closed_within(extra_reader, 2)
        assert rig.guard.stats.rejected == 1
        # The held ones still work; once one goes, a new connection is served again.
        held[0][1].write(REQUEST)
        assert (await response(held[0][0])).startswith(b"HTTP/1.1 200")
        held[1][1].close()
        await held[1][1].wait_closed()
        await rig.wait_open(2)
        reader, writer = await rig.connect()
        writer.write(REQUEST)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
        text = generate_latest(registry_of(rig.guard)).decode()
        assert (
            'alvaria_emailqueue_http_connections_rejected_total{reason="max_connections"} 1.0'
            in text
        )
        assert "alvaria_emailqueue_http_max_connections 3.0" in text
        assert "alvaria_emailqueue_http_connections 3.0" in text


def registry_of(
    guard: ConnectionGuard, exposition: ExpositionCache | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    busy = (lambda: exposition.busy) if exposition is not None else (lambda: 0)
    registry.register(ServerCollector(guard, metrics_busy=busy))
    return registry


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
]


async def test_malformed_requests_get_400_and_at_most_one_short_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    async with running() as rig:
        statuses = []
        for raw in MALFORMED * 4:
            reader, writer = await rig.connect()
            writer.write(raw)
            line = await asyncio.wait_for(reader.readline(), 5)
            statuses.append(line.split()[1] if line else b"closed")
    assert set(statuses) == {b"400"}, statuses
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    loud = [r for r in records if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [r.getMessage() for r in loud]
    (record,) = loud
    assert record.levelname == "WARNING" and record.exc_info is None
    message = record.getMessage()
    assert "malformed HTTP request answered 400" in message and "\n" not in message
    assert len(message) < 200


async def test_a_handler_bug_still_logs_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    guard = ConnectionGuard()
    record = logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        "",
        0,
        "Error handling request from %s",
        ("1.2.3.4",),
        (RuntimeError, RuntimeError("bug"), None),
    )
    assert guard.filter_server_log(record) and record.levelno == logging.ERROR
    assert record.exc_info is not None


def test_accept_failures_are_one_quiet_warning_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = ConnectionGuard()
    loop = asyncio.new_event_loop()
    try:
        context = {
            "message": "socket.accept() out of system resource",
            "exception": OSError(24, "Too many open files"),
        }
        for _ in range(50):
            guard.handle_loop_exception(loop, context)
        guard.handle_loop_exception(loop, {"message": "something else"})
    finally:
        loop.close()
    assert guard.stats.accept_errors == 50
    warnings = [r for r in caplog.records if "cannot accept connections" in r.getMessage()]
    assert len(warnings) == 1 and "Too many open files" in warnings[0].getMessage()
    assert any(r.getMessage() == "something else" for r in caplog.records)


def test_throttle_counts_what_it_held_back() -> None:
    now = [0.0]
    throttle = Throttle(10.0, clock=lambda: now[0])
    assert throttle.allow() == 0
    assert throttle.allow() is None and throttle.allow() is None
    now[0] = 10.0
    assert throttle.allow() == 2


def test_the_open_files_limit_is_raised_and_checked_against_max_connections() -> None:
    assert raise_fd_limit(16) is None
    warning = raise_fd_limit(10**9)
    assert warning is not None and "max_connections (1000000000)" in warning


@contextlib.asynccontextmanager
async def serving_body(
    monkeypatch: pytest.MonkeyPatch, body: bytes, **limits: float
) -> AsyncIterator[Rig]:
    """The server with `/metrics` answering `body` (whatever the exposition would render)."""

    async def rendered(self: ExpositionCache, fmt: str, gzipped: bool) -> bytes:
        return body

    monkeypatch.setattr(ExpositionCache, "body", rendered)
    async with running(None, **limits) as rig:
        yield rig


async def stalled_client(rig: Rig) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that asks for /metrics with a tiny receive window and never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", rig.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    rig.writers.append(writer)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    return reader, writer


async def test_a_client_that_stops_reading_holds_a_piece_of_the_body_then_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = b"x" * (16 * 1024 * 1024)
    async with serving_body(monkeypatch, body, write_timeout=1.0) as rig:
        reader, _ = await stalled_client(rig)
        await rig.wait_open(1)
        await asyncio.sleep(0.5)  # the kernel's buffers are full, the response is waiting
        (guarded,) = rig.guard.connections.values()
        transport = guarded._transport
        assert transport is not None
        # Queued in the process: at most a piece or two, not the rest of a 16 MB body.
        assert transport.get_write_buffer_size() <= 3 * WRITE_CHUNK  # type: ignore[attr-defined]
        assert await closed_within_reading(reader, 5)
        assert rig.guard.stats.write_timeouts == 1
        await rig.wait_open(0)


async def closed_within_reading(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the connection ends within `seconds` (reading nothing until then)."""
    await asyncio.sleep(seconds / 2)  # not reading: the server must give up on its own
    try:
        await asyncio.wait_for(reader.read(-1), seconds)
    except ConnectionResetError:
        return True
    except (TimeoutError, asyncio.LimitOverrunError):
        return False
    return True


async def test_a_client_reading_slowly_but_steadily_gets_the_whole_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than the sockets' buffers hold
    async with serving_body(monkeypatch, body, write_timeout=0.5) as rig:
        reader, writer = await stalled_client(rig)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"Content-Length: %d" % len(body) in head
        received = bytearray()
        paused = False
        for reads in itertools.count():
            if len(received) >= len(body):
                break
            received += await asyncio.wait_for(reader.read(256 * 1024), 5)
            if reads % 256 == 255:  # pauses shorter than write_timeout
                await asyncio.sleep(0.3)
                paused |= any(g._stalled is not None for g in rig.guard.connections.values())
        assert bytes(received) == body
        assert paused  # the server did wait for this client
        assert rig.guard.stats.write_timeouts == 0
        # The connection stays usable for the next scrape.
        writer.write(REQUEST)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")


def metrics_app(monkeypatch: pytest.MonkeyPatch, body: bytes, **options: float) -> web.Application:
    """An app serving only `/metrics` (answering `body`), with the exposition's limits set."""
    monkeypatch.setattr(ExpositionCache, "body", lambda *_: asyncio.sleep(0, body))
    app = web.Application()
    exposition = ExpositionCache(CollectorRegistry(), Store([]), **options)  # type: ignore[arg-type]
    app.router.add_get("/metrics", exposition.handle)
    app[EXPOSITION] = exposition
    return app


async def test_responses_written_at_once_are_capped_and_the_rest_get_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = metrics_app(monkeypatch, b"x" * 16 * MiB, max_in_flight=2)
    async with running(app, write_timeout=1.0) as rig:
        stalled = [await stalled_client(rig) for _ in range(2)]
        await asyncio.sleep(0.3)
        assert app[EXPOSITION].in_flight == 2  # each keeps its body alive while written
        reader, writer = await rig.connect()
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in head
        assert app[EXPOSITION].busy == 1
        collected = generate_latest(registry_of(rig.guard, app[EXPOSITION])).decode()
        assert "alvaria_emailqueue_http_metrics_busy_total 1.0" in collected
        for stalled_reader, _ in stalled:
            assert await closed_within_reading(stalled_reader, 5)
        assert app[EXPOSITION].in_flight == 0


async def test_a_response_is_cut_off_after_the_write_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = metrics_app(monkeypatch, b"x" * 16 * MiB, write_deadline=1.0)
    async with running(app, write_timeout=30.0) as rig:
        reader, _ = await stalled_client(rig)
        received = 0
        for _ in range(40):  # 2 s of reading steadily, but far too slowly for 16 MB
            received += len(await asyncio.wait_for(reader.read(64 * 1024), 5))
            await asyncio.sleep(0.05)
        assert received > 0
        # The server let go of the response and its connection (what the kernel had taken of
        # the body still trickles out); it never stalled: the deadline cut it.
        assert app[EXPOSITION].in_flight == 0
        await rig.wait_open(0)
        assert rig.guard.stats.write_timeouts == 0
