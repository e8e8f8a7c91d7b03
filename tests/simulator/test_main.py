"""The `alvaria-emailqueue-simulator` command line."""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import sys

import aiohttp
import pytest

from exporter.simulator.__main__ import parse_args


def test_defaults() -> None:
    (host, port), config = parse_args([], {})
    assert (host, port) == ("127.0.0.1", 8080)
    assert config.scenario == "steady" and config.page_cap == 1000 and config.speed == 1.0
    assert (config.org_id, config.client_id, config.client_secret, config.api_key) == ("demo",) * 4
    assert config.token_lifetime == 3600.0 and config.emails == 100_000 and config.seed is None
    assert config.strict_realm is False


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--strict-realm"], {}, True),
        (["--strict-realm", "false"], {"ALVARIA_SIM_STRICT_REALM": "true"}, False),
        ([], {"ALVARIA_SIM_STRICT_REALM": "yes"}, True),
        ([], {"ALVARIA_SIM_STRICT_REALM": "0"}, False),
    ],
)
def test_strict_realm(argv: list[str], env: dict[str, str], expected: bool) -> None:
    assert parse_args(argv, env)[1].strict_realm is expected


def test_flags_beat_environment_beats_defaults() -> None:
    env = {
        "ALVARIA_SIM_SCENARIO": "surge",
        "ALVARIA_SIM_SEED": "9",
        "ALVARIA_SIM_PAGE_CAP": "250",
        "ALVARIA_SIM_LISTEN_ADDRESS": ":9000",
        "ALVARIA_SIM_TOKEN_LIFETIME": "60",
    }
    (host, port), config = parse_args(["--seed", "3", "--speed", "10", "--org-id", "acme"], env)
    assert (host, port) == ("0.0.0.0", 9000)
    assert config.scenario == "surge" and config.seed == 3 and config.page_cap == 250
    assert config.speed == 10.0 and config.org_id == "acme" and config.token_lifetime == 60.0


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--scenario", "chaos"], {}),
        ([], {"ALVARIA_SIM_SCENARIO": "chaos"}),
        (["--speed", "0"], {}),
        (["--listen-address", "nowhere"], {}),
        ([], {"ALVARIA_SIM_PAGE_CAP": "many"}),
        ([], {"ALVARIA_SIM_STRICT_REALM": "maybe"}),
    ],
)
def test_bad_settings_exit_2(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, env)
    assert exc.value.code == 2


async def test_cli_starts_answers_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter.simulator",
        "--listen-address",
        "127.0.0.1:0",
        "--seed",
        "1",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stderr.readline(), timeout=20)).decode()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        base = match.group(1)
        basic = "Basic " + base64.b64encode(b"demo:demo").decode()
        async with aiohttp.ClientSession() as session:
            async with session.post(
                base + "/tokenservice/oauth2/access_token",
                data={"grant_type": "client_credentials", "scope": "emailqueueapi"},
                headers={"x-api-key": "demo", "Authorization": basic},
            ) as resp:
                token = (await resp.json())["access_token"]
            async with session.get(
                base + "/via/v2/organizations/demo/emailQueue/emails",
                headers={"x-api-key": "demo", "Authorization": f"Bearer {token}"},
            ) as resp:
                assert resp.status == 200
                assert (await resp.json())["totalItems"] >= 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_help_never_shows_secrets_from_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"ALVARIA_SIM_CLIENT_SECRET": "hunter2", "ALVARIA_SIM_API_KEY": "k3y-value"}
    with pytest.raises(SystemExit):
        parse_args(["--help"], env)
    out = capsys.readouterr().out
    assert "ALVARIA_SIM_API_KEY" in out and "hunter2" not in out and "k3y-value" not in out
