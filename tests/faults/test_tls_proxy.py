"""Upstream TLS and proxies: verification on by default, a private CA, HTTPS_PROXY and NO_PROXY."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.certs import Certs, make_certs
from tests.fake_alvaria import FakeAlvaria
from tests.pipeline import rig


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("upstream-certs"))


def server_context(certs: Certs) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.server_cert, certs.server_key)
    return ctx


class ConnectProxy:
    """A tiny HTTP CONNECT proxy on loopback that counts the tunnels it opens."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.url = ""
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        method, target, _ = request.split("\r\n", 1)[0].split(" ")
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        self.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self.writers.append(up_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextlib.asynccontextmanager
async def connect_proxy() -> AsyncIterator[ConnectProxy]:
    proxy = ConnectProxy()
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield proxy
    finally:
        server.close()
        for writer in proxy.writers:
            writer.close()
        await server.wait_closed()


async def test_certificates_are_verified_by_default(certs: Certs) -> None:
    upstream = FakeAlvaria()
    async with rig(upstream, server_ssl=server_context(certs), max_retries=0) as r:
        assert upstream.base_url.startswith("https://")
        ok, _ = await r.poll()
        # The test CA is not in the system store: the handshake fails, classified, no hang
        # (the token request comes first; a TLS failure is `connection`, not `auth`).
        assert not ok and r.state.last_error_reason == "connection"
        assert "Certificate" in r.state.last_error
        assert upstream.calls["token"] == 0
        await r.assert_no_leak()


async def test_a_private_ca_file_is_trusted(certs: Certs) -> None:
    trusted = ssl.create_default_context(cafile=str(certs.ca))
    async with rig(FakeAlvaria(), server_ssl=server_context(certs), ssl=trusted) as r:
        assert (await r.poll())[0]


async def test_https_proxy_is_used_and_no_proxy_bypasses_it(
    certs: Certs, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trusted = ssl.create_default_context(cafile=str(certs.ca))
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with connect_proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        upstream = FakeAlvaria()
        async with rig(upstream, server_ssl=server_context(certs), ssl=trusted) as r:
            assert (await r.poll())[0]
            port = upstream.base_url.rsplit(":", 1)[1]
            # The token and every page went through the tunnel (connections are pooled).
            assert proxy.tunnels and set(proxy.tunnels) == {f"127.0.0.1:{port}"}
            assert upstream.calls["token"] == 1 and upstream.calls["emails"] == 3
        proxy.tunnels.clear()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with rig(FakeAlvaria(), server_ssl=server_context(certs), ssl=trusted) as r:
            assert (await r.poll())[0]
            assert proxy.tunnels == []
