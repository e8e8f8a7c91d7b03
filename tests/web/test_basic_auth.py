"""Basic auth under abuse: long passwords, bcrypt errors, and a flood of wrong passwords."""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.polling.store import Store
from exporter.settings.web_config import WebConfig
from exporter.web.access import guard_for
from exporter.web.basic_auth import BCRYPT_MAX_PASSWORD, BasicAuth, Verdict, check_password
from exporter.web.server import build_app

LONG = "p" * 70 + "ü" * 10  # 90 bytes in UTF-8
SHORT = "correct horse battery"


def hashed(password: str) -> bytes:
    # pyca/bcrypt >= 5 refuses to hash more than 72 bytes; Go's tools and htpasswd hash the first 72.
    return bcrypt.hashpw(password.encode()[:BCRYPT_MAX_PASSWORD], bcrypt.gensalt(4))


def basic(user: str, password: str | bytes) -> str:
    raw = password if isinstance(password, bytes) else password.encode()
    return "Basic " + base64.b64encode(user.encode() + b":" + raw).decode()


USERS = {"alice": hashed(SHORT), "bob": hashed(LONG)}


@asynccontextmanager
async def served(auth: BasicAuth) -> AsyncIterator[str]:
    """The exporter's app behind `auth` on a free loopback port; yields its base URL."""
    app = build_app(Store([]), CollectorRegistry(), middlewares=[guard_for(WebConfig(), auth)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "password",
    ["x" * 73, "y" * 1000, SHORT + "z" * 100, "ü" * 40],
    ids=["73 bytes", "1000 bytes", "right prefix, too long", "80 bytes of umlauts"],
)
async def test_any_wrong_password_length_is_401_never_500(password: str) -> None:
    async with served(BasicAuth(USERS)) as url, aiohttp.ClientSession() as session:
        async with session.get(
            f"{url}/healthz", headers={"Authorization": basic("alice", password)}
        ) as r:
            assert r.status == 401


async def test_the_first_72_bytes_decide_as_in_exporter_toolkit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The choice, documented in README Security: a hash made for a long password (by htpasswd
    or Go, which hash its first 72 bytes) logs in with that password, as with node_exporter;
    bytes past the 72nd are not checked, and the first such login is logged as a warning."""
    auth = BasicAuth(USERS)
    async with served(auth) as url, aiohttp.ClientSession() as session:
        for password, status in [
            (LONG, 200),
            (LONG, 200),
            (LONG[:-1] + "X", 200),  # differs past byte 72: bcrypt cannot see it
            (LONG[:60], 401),
            ("q" + LONG[1:], 401),
        ]:
            headers = {"Authorization": basic("bob", password)}
            async with session.get(f"{url}/healthz", headers=headers) as r:
                assert r.status == status, password
    warnings = [r for r in caplog.records if "longer than 72 bytes" in r.getMessage()]
    assert len(warnings) == 1 and "'bob'" in warnings[0].getMessage()
    assert LONG not in caplog.text


def test_check_password_never_raises_for_long_passwords() -> None:
    assert check_password(LONG.encode(), USERS["bob"])
    assert not check_password(b"w" * 5000, USERS["alice"])


async def test_a_bcrypt_error_is_a_denial_not_a_500() -> None:
    def broken(password: bytes, hashed: bytes) -> bool:
        raise ValueError("password too long")

    async with served(BasicAuth(USERS, check=broken)) as url, aiohttp.ClientSession() as session:
        async with session.get(
            f"{url}/healthz", headers={"Authorization": basic("alice", SHORT)}
        ) as r:
            assert r.status == 401


class Gate:
    """A bcrypt stand-in that blocks until released, counting calls."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.calls = 0

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls += 1
        assert self.open.wait(10)
        return password == SHORT.encode()


async def test_a_full_bcrypt_queue_answers_503_at_once_and_cached_scrapers_pass() -> None:
    gate = Gate()
    auth = BasicAuth(USERS, check=gate, queue_limit=4, busy_delay=0.05)
    gate.open.set()
    assert await auth.judge(basic("alice", SHORT)) is Verdict.OK  # the scraper, cached now
    gate.open.clear()
    flood = [asyncio.ensure_future(auth.judge(basic("alice", f"wrong-{i}"))) for i in range(4)]
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await auth.judge(basic("alice", "one-too-many")) is Verdict.BUSY
    assert await auth.judge(basic("alice", SHORT)) is Verdict.OK
    assert time.monotonic() - started < 1.0
    async with served(auth) as url, aiohttp.ClientSession() as session:
        headers = {"Authorization": basic("mallory", "x")}
        async with session.get(f"{url}/healthz", headers=headers) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "1"
        async with session.get(
            f"{url}/healthz", headers={"Authorization": basic("alice", SHORT)}
        ) as r:
            assert r.status == 200
    assert auth.busy == 2
    gate.open.set()
    assert [v for v in await asyncio.gather(*flood)] == [Verdict.DENIED] * 4
    assert await auth.judge(basic("alice", "now-there-is-room")) is Verdict.DENIED


async def test_a_flood_of_wrong_passwords_cannot_evict_the_scrapers_verdict() -> None:
    calls: list[bytes] = []

    def check(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return password == SHORT.encode()

    auth = BasicAuth(USERS, check=check)
    assert await auth.verify(basic("alice", SHORT))
    for start in range(0, 3000, 30):
        await asyncio.gather(
            *(auth.verify(basic("alice", f"w{i}")) for i in range(start, start + 30))
        )
    before = len(calls)
    assert await auth.verify(basic("alice", SHORT))
    assert len(calls) == before  # still cached


async def test_bcrypt_runs_one_check_at_a_time() -> None:
    running: list[int] = []
    peak: list[int] = [0]
    lock = threading.Lock()

    def check(password: bytes, hashed: bytes) -> bool:
        with lock:
            running.append(1)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.02)
        with lock:
            running.pop()
        return False

    auth = BasicAuth(USERS, check=check)
    verdicts = await asyncio.gather(*(auth.judge(basic("alice", f"w{i}")) for i in range(10)))
    assert set(verdicts) == {Verdict.DENIED} and peak[0] == 1


def test_the_warning_names_the_user_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    BasicAuth(USERS)._warn_long("bob")
    BasicAuth(USERS)._warn_long("bob")
    assert len(caplog.records) == 2  # once per BasicAuth, i.e. per start or reload
