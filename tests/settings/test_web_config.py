"""The exporter-toolkit web config: validation, basic auth with its cache, TLS and headers."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from exporter.domain.errors import ConfigError
from exporter.polling.store import Store
from exporter.settings.web_config import WebConfig, load
from exporter.web.access import LiveWebConfig
from exporter.web.basic_auth import BasicAuth
from exporter.web.server import build_app
from tests.certs import Certs, make_certs
from tests.fake_alvaria import FakeAlvaria, serving
from tests.fakes import free_port, wait_for
from tests.fleetkit import status

PASSWORD = "correct horse battery"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


BAD_FILES = {
    "unknown top-level key": ("basic_auth_user:\n  a: x\n", "basic_auth_user: unknown key"),
    "rate_limit": ("rate_limit:\n  interval: 1s\n  burst: 5\n", "rate_limit"),
    "cipher_suites": (
        "tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
        "tls_server_config.cipher_suites",
    ),
    "unknown tls key": ("tls_server_config:\n  cert_fil: x\n", "did you mean cert_file"),
    "forbidden header": (
        "http_server_config:\n  headers:\n    Server: x\n",
        "headers.Server: this header cannot be configured",
    ),
    "header value": (
        "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
        "X-Frame-Options: must be one of deny, sameorigin",
    ),
    "http2 not a bool": ("http_server_config:\n  http2: maybe\n", "http2"),
    "not a bcrypt hash": (f"basic_auth_users:\n  alice: {HASH[:-3]}\n", "basic_auth_users.alice"),
    "plain password": ("basic_auth_users:\n  alice: hunter2hunter2\n", "not a bcrypt hash"),
    "user with colon": (f"basic_auth_users:\n  'a:b': {HASH}\n", "without ':'"),
    "key_file missing": ("tls_server_config:\n  cert_file: server.pem\n", "key_file: required"),
    "cert file absent": (
        "tls_server_config:\n  cert_file: nope.pem\n  key_file: nope.key\n",
        "cert_file: cannot read",
    ),
    "yaml error": (f"basic_auth_users:\n  alice: {HASH}\n   bob: [\n", "invalid YAML at line"),
    "not a mapping": ("- a\n- b\n", "must be a mapping"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_invalid_files_name_the_key_and_never_echo_a_hash(tmp_path: Path, name: str) -> None:
    text, expected = BAD_FILES[name]
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text))
    message = str(info.value)
    assert info.value.setting == "web_config_file"
    assert expected in message
    assert HASH[7:] not in message and "hunter2" not in message


TLS_ERRORS = {
    "min_version": ("min_version: TLS14", "min_version: 'TLS14' is not one of"),
    "max below min": ("min_version: TLS13\n  max_version: TLS12", "lower than min_version"),
    "unknown auth type": ("client_auth_type: Maybe", "unknown value 'Maybe'"),
    "require any": ("client_auth_type: RequireAnyClientCert", "RequireAndVerifyClientCert"),
    "verify without ca": ("client_auth_type: VerifyClientCertIfGiven", "client_ca_file: required"),
    "ca without auth type": ("client_ca_file: ca.pem", "without a client_auth_type"),
}


@pytest.mark.parametrize("name", TLS_ERRORS)
def test_invalid_tls_settings(tmp_path: Path, certs: Certs, name: str) -> None:
    extra, expected = TLS_ERRORS[name]
    text = f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
    text += f"  {extra.replace('ca.pem', str(certs.ca))}\n"
    with pytest.raises(ConfigError, match="tls_server_config") as info:
        load(write(tmp_path, text))
    assert expected in str(info.value)


def test_a_key_that_does_not_match_is_refused_without_showing_it(
    tmp_path: Path, certs: Certs
) -> None:
    text = f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.client_key}\n"
    with pytest.raises(ConfigError, match="cannot load cert_file/key_file") as info:
        load(write(tmp_path, text))
    assert "PRIVATE KEY" not in str(info.value)


def test_relative_paths_are_read_next_to_the_file(tmp_path: Path, certs: Certs) -> None:
    for src in (certs.server_cert, certs.server_key):
        (tmp_path / src.name).write_bytes(src.read_bytes())
    text = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"
    config = load(write(tmp_path, text))
    assert config.ssl_context is not None
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_an_empty_file_means_plain_http_without_auth(tmp_path: Path) -> None:
    config = load(write(tmp_path, ""))
    assert config.ssl_context is None and not config.users and not config.headers


async def test_bcrypt_runs_once_per_distinct_credential_even_in_a_storm() -> None:
    calls: list[bytes] = []

    def check(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return bcrypt.checkpw(password, hashed)

    auth = BasicAuth({"alice": HASH.encode()}, check=check)
    good, bad = basic("alice", PASSWORD), basic("alice", "wrong")
    results = await asyncio.gather(*(auth.verify(good) for _ in range(50)))
    assert all(results) and len(calls) == 1
    assert not any(await asyncio.gather(*(auth.verify(bad) for _ in range(50))))
    assert len(calls) == 2
    assert await auth.verify(good) and len(calls) == 2


async def test_a_reload_with_the_same_users_keeps_the_verified_passwords(tmp_path: Path) -> None:
    # A SIGHUP during a password-guessing flood must not send the scrapers back to bcrypt.
    path = write(tmp_path, f"basic_auth_users:\n  alice: '{HASH}'\n")
    live = LiveWebConfig(load(path))
    auth = live.auth
    assert auth is not None and await auth.verify(basic("alice", PASSWORD))
    live.swap(load(path))
    assert live.auth is auth, "same users: same verifier, same cache"
    other = bcrypt.hashpw(b"new password", bcrypt.gensalt(4)).decode()
    write(tmp_path, f"basic_auth_users:\n  alice: '{other}'\n")
    live.swap(load(path))
    assert live.auth is not auth and live.auth is not None
    assert not await live.auth.verify(basic("alice", PASSWORD)), "a changed password applies"


async def test_unknown_users_cost_a_bcrypt_check_too_and_fail() -> None:
    calls: list[bytes] = []

    def check(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return bcrypt.checkpw(password, hashed)

    auth = BasicAuth({"alice": HASH.encode()}, check=check)
    # Even the right password under another name must not pass.
    assert not await auth.verify(basic("mallory", PASSWORD))
    assert calls == [HASH.encode()]


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()],
)
async def test_malformed_authorization_headers_fail(header: str | None) -> None:
    assert not await BasicAuth({"alice": HASH.encode()}).verify(header)


@asynccontextmanager
async def running(config: WebConfig) -> AsyncIterator[str]:
    """The exporter's app behind `config` on a free loopback port; yields its base URL."""
    app = build_app(
        Store(["acme"]), CollectorRegistry(), middlewares=[LiveWebConfig(config).middleware]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=config.ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if config.ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def full_config(tmp_path: Path, certs: Certs, extra: str = "") -> WebConfig:
    text = f"""
tls_server_config:
  cert_file: {certs.server_cert}
  key_file: {certs.server_key}
{extra}
http_server_config:
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
basic_auth_users:
  alice: {HASH}
"""
    return load(write(tmp_path, text))


async def test_tls_and_basic_auth_guard_every_path(tmp_path: Path, certs: Certs) -> None:
    async with (
        running(full_config(tmp_path, certs)) as base,
        aiohttp.ClientSession() as session,
    ):
        tls = certs.client_context()
        for path in ("/metrics", "/healthz", "/readyz", "/"):
            async with session.get(base + path, ssl=tls) as r:
                assert r.status == 401, path
                assert r.headers["WWW-Authenticate"].startswith("Basic")
                assert r.headers["X-Frame-Options"] == "deny"
        wrong = {"Authorization": basic("alice", "wrong")}
        async with session.get(base + "/metrics", ssl=tls, headers=wrong) as r:
            assert r.status == 401
        right = {"Authorization": basic("alice", PASSWORD)}
        async with session.get(base + "/metrics", ssl=tls, headers=right) as r:
            assert r.status == 200
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        async with session.get(base + "/nope", ssl=tls, headers=right) as r:
            assert r.status == 404 and r.headers["X-Frame-Options"] == "deny"


async def test_tls_1_1_is_refused_and_1_2_accepted(tmp_path: Path, certs: Certs) -> None:
    async with running(full_config(tmp_path, certs)) as base:
        host, port = base.removeprefix("https://").split(":")
        old = certs.client_context()
        with warnings.catch_warnings():
            # Python deprecates TLS 1.0/1.1, which is exactly what this client must offer.
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _, writer = await asyncio.open_connection(host, int(port), ssl=old)
            writer.close()
        modern = certs.client_context()
        modern.maximum_version = ssl.TLSVersion.TLSv1_2
        _, writer = await asyncio.open_connection(host, int(port), ssl=modern)
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
        writer.close()
        await writer.wait_closed()


async def test_client_certificates_are_required_and_verified(tmp_path: Path, certs: Certs) -> None:
    extra = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n"
    config = full_config(tmp_path, certs, extra)
    right = {"Authorization": basic("alice", PASSWORD)}
    async with running(config) as base, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(base + "/healthz", ssl=certs.client_context(), headers=right):
                pass
        tls = certs.client_context(with_cert=True)
        async with session.get(base + "/healthz", ssl=tls, headers=right) as r:
            assert r.status == 200


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
    env |= {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": "key-xyz", "ALVARIA_ACCESS_TOKEN": "t0k"}
    return subprocess.run(  # noqa: S603 -- our own interpreter and module
        [sys.executable, "-m", "exporter", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_check_config_validates_the_web_config_file(tmp_path: Path) -> None:
    bad = write(tmp_path, f"basic_auth_users:\n  alice: {HASH}\nrate_limits: {{}}\n")
    result = cli("--check-config", "--web-config-file", str(bad))
    assert result.returncode == 2
    assert "web_config_file" in result.stderr and "rate_limits" in result.stderr
    assert HASH not in result.stderr + result.stdout
    good = write(tmp_path, f"basic_auth_users:\n  alice: {HASH}\n")
    result = cli("--check-config", "--web-config-file", str(good))
    assert result.returncode == 0, result.stderr
    assert HASH not in result.stdout


# Runs the exporter's command line with every open of the web config file counted (os.open and
# io.open, so a read by any path, pathlib included, shows).
COUNT_OPENS = """
import builtins, io, os, sys
web, tally = os.path.realpath(os.environ["WEB_CONFIG"]), os.environ["OPEN_TALLY"]
os_open, io_open = os.open, io.open

def note(path):
    if not isinstance(path, int) and os.path.realpath(os.fspath(path)) == web:
        with io_open(tally, "a") as out:
            out.write("open\\n")

def counting_os_open(path, *args, **kwargs):
    note(path)
    return os_open(path, *args, **kwargs)

def counting_io_open(file, *args, **kwargs):
    note(file)
    return io_open(file, *args, **kwargs)

os.open, io.open, builtins.open = counting_os_open, counting_io_open, counting_io_open
from exporter.app.main import main
sys.exit(main())
"""


async def test_the_web_config_file_is_read_once_per_start_and_once_per_reload(
    tmp_path: Path,
) -> None:
    web_config = tmp_path / "web.yml"
    web_config.write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    tally = tmp_path / "opens"
    tally.touch()
    port = free_port()
    async with serving(FakeAlvaria()) as api:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
        env |= api.env(
            ALVARIA_LISTEN_ADDRESS=f"127.0.0.1:{port}",
            ALVARIA_WEB_CONFIG_FILE=str(web_config),
            ALVARIA_WEB_ENABLE_LIFECYCLE="true",
            WEB_CONFIG=str(web_config),
            OPEN_TALLY=str(tally),
        )
        log = (tmp_path / "log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", COUNT_OPENS, env=env, stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_for(lambda: status(base + "/readyz"), lambda s: s == 200, within=20)
            assert tally.read_text().count("open") == 1
            async with aiohttp.ClientSession() as session:
                for reloads in (1, 2):
                    async with session.post(base + "/-/reload") as response:
                        assert response.status == 200, await response.text()
                    assert tally.read_text().count("open") == 1 + reloads
                async with session.get(base + "/healthz") as response:
                    assert response.headers["X-Frame-Options"] == "deny"  # the file is applied
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
            log.close()
