"""The real daemon as a process: invalid configurations, leaks in its output, SIGTERM mid-poll."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.fake_alvaria import (
    ADDRESS,
    API_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    ORG,
    SECRETS,
    TOKEN_PATH,
    FakeAlvaria,
    serving,
)
from tests.fakes import free_port


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
    return env | extra


def valid_env(**extra: str) -> dict[str, str]:
    base = {
        "ALVARIA_ORG_ID": ORG,
        "ALVARIA_API_KEY": API_KEY,
        "ALVARIA_CLIENT_ID": CLIENT_ID,
        "ALVARIA_CLIENT_SECRET": CLIENT_SECRET,
    }
    return clean_env(**(base | extra))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 -- our own interpreter and module
        [sys.executable, "-m", "exporter", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


BAD_CONFIGS: dict[str, tuple[dict[str, str], str]] = {
    "no org": ({"ALVARIA_ORG_ID": ""}, "org_id"),
    "bad org id": ({"ALVARIA_ORG_ID": "../etc"}, "org_id"),
    "no api key": ({"ALVARIA_API_KEY": ""}, "api_key"),
    "secret without id": ({"ALVARIA_CLIENT_ID": ""}, "client_id"),
    "poll interval": ({"ALVARIA_POLL_INTERVAL": "fast"}, "poll_interval"),
    "stale before poll": (
        {"ALVARIA_POLL_INTERVAL": "1m", "ALVARIA_STALE_AFTER": "30s"},
        "stale_after",
    ),
    "listen address": ({"ALVARIA_LISTEN_ADDRESS": "everywhere"}, "listen_address"),
    "api url scheme": ({"ALVARIA_API_URL": "ftp://api.example.com"}, "api_url"),
    "api url credentials": (
        {"ALVARIA_API_URL": f"https://user:{CLIENT_SECRET}@api.example.com"},
        "api_url",
    ),
    "page size": ({"ALVARIA_PAGE_SIZE": "0"}, "page_size"),
    "region": ({"ALVARIA_REGION": "mars"}, "region"),
    "max response bytes": ({"ALVARIA_MAX_RESPONSE_BYTES": "lots"}, "max_response_bytes"),
    "ca file": ({"ALVARIA_CA_FILE": "/nonexistent/ca.pem"}, "ca_file"),
    "secret file": ({"ALVARIA_API_KEY": "", "ALVARIA_API_KEY_FILE": "/nonexistent"}, "api_key"),
}


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_invalid_configuration_exits_2_naming_the_setting(name: str) -> None:
    overrides, setting = BAD_CONFIGS[name]
    result = cli(valid_env(**overrides))  # the daemon itself, not only --check-config
    assert result.returncode == 2, result.stderr
    assert setting in result.stderr
    for secret in (API_KEY, CLIENT_SECRET):
        assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        (f"api_key: {API_KEY}\nclient_secret: [{CLIENT_SECRET}\n", "config_file"),
        (f"client_secret: {CLIENT_SECRET}\npoll_intervall: 5s\n", "poll_intervall"),
        ("basic_auth_users:\n  admin: $2y$10$" + "x" * 53 + "\ntls: {}\n", "web_config_file"),
    ],
)
def test_invalid_files_exit_2_without_quoting_secrets(
    tmp_path: Path, text: str, setting: str
) -> None:
    path = tmp_path / "file.yml"
    path.write_text(text)
    name = "ALVARIA_WEB_CONFIG_FILE" if setting == "web_config_file" else "ALVARIA_CONFIG_FILE"
    result = cli(valid_env(**{name: str(path)}), "--check-config")
    assert result.returncode == 2 and setting in result.stderr
    for secret in (API_KEY, CLIENT_SECRET, "x" * 53):
        assert secret not in result.stderr + result.stdout


def test_check_config_masks_every_secret() -> None:
    result = cli(valid_env(ALVARIA_ACCESS_TOKEN="static-token-9z"), "--check-config")
    assert result.returncode == 0, result.stderr
    for secret in (API_KEY, CLIENT_SECRET, "static-token-9z"):
        assert secret not in result.stdout + result.stderr


async def wait_until(probe: object, within: float) -> None:
    deadline = time.monotonic() + within
    while not await probe():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_sigterm_during_a_stalled_poll_exits_cleanly_within_a_second() -> None:
    stalled = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        stalled.set()
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    upstream = FakeAlvaria(on_emails=stall)
    async with serving(upstream):
        port = free_port()
        env = valid_env(
            ALVARIA_API_URL=upstream.base_url,
            ALVARIA_TOKEN_URL=upstream.base_url + TOKEN_PATH,
            ALVARIA_LISTEN_ADDRESS=f"127.0.0.1:{port}",
            ALVARIA_REQUEST_TIMEOUT="60s",
            ALVARIA_LOG_FORMAT="json",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", env=env, stderr=asyncio.subprocess.PIPE
        )
        try:
            await asyncio.wait_for(stalled.wait(), 20)

            async def landing() -> bool:
                try:
                    async with (
                        aiohttp.ClientSession() as s,
                        s.get(f"http://127.0.0.1:{port}/") as r,
                    ):
                        return r.status == 200 and ADDRESS not in await r.text()
                except aiohttp.ClientError:
                    return False

            await wait_until(landing, 10)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 5)
            elapsed = time.monotonic() - started
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.stderr is not None
        logs = (await proc.stderr.read()).decode()
    assert code == 0, logs
    assert elapsed < 1.0, elapsed
    assert "Traceback" not in logs
    for secret in SECRETS:
        assert secret not in logs
