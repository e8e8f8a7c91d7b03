"""The command line: modes, exit codes and what they print."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.fake_alvaria import API_KEY, CLIENT_SECRET, FakeAlvaria, serving


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter",
        *args,
        env={**base, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_version() -> None:
    code, out, _ = await run_cli("--version")
    assert code == 0
    assert out.startswith("alvaria-emailqueue-exporter ")


async def test_check_config_masks_secrets() -> None:
    env = FakeAlvaria(base_url="http://127.0.0.1:1").env()
    code, out, err = await run_cli("--check-config", env=env)
    assert code == 0, err
    assert "org_id: acme" in out
    assert CLIENT_SECRET not in out and API_KEY not in out


async def test_bad_setting_exits_2_naming_it_and_its_source() -> None:
    env = FakeAlvaria(base_url="http://127.0.0.1:1").env(ALVARIA_POLL_INTERVAL="soon")
    code, _, err = await run_cli(env=env)
    assert code == 2
    assert "poll_interval" in err and "ALVARIA_POLL_INTERVAL" in err
    assert len(err.strip().splitlines()) == 1
    assert CLIENT_SECRET not in err


async def test_once_prints_the_exposition_and_exits_0() -> None:
    async with serving(FakeAlvaria(items=[{"id": "1", "state": "Queued"}])) as api:
        code, out, _ = await run_cli("--once", env=api.env(ALVARIA_POLL_INTERVAL="20s"))
    assert code == 0
    assert 'alvaria_emailqueue_up{org="acme"} 1.0' in out
    # The configured timing, stale_after derived as 5 x poll_interval.
    assert 'alvaria_emailqueue_poll_interval_seconds{org="acme"} 20.0' in out
    assert 'alvaria_emailqueue_stale_after_seconds{org="acme"} 100.0' in out
    assert (
        'alvaria_emailqueue_emails{email_type="unknown",org="acme",state="Queued",work_type="unknown"} 1.0'
        in out
    )


async def test_once_exits_1_when_a_poll_fails() -> None:
    api = FakeAlvaria(client_secret="other")
    async with serving(api):
        env = api.env(ALVARIA_CLIENT_SECRET="wrong-secret")
        code, out, err = await run_cli("--once", env=env)
    assert code == 1
    assert 'alvaria_emailqueue_up{org="acme"} 0.0' in out
    assert 'alvaria_emailqueue_poll_errors_total{org="acme",reason="auth"} 1.0' in out
    assert "wrong-secret" not in out + err


async def test_a_taken_listen_address_is_one_line_and_exit_1() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = FakeAlvaria(base_url="http://127.0.0.1:1").env(
            ALVARIA_LISTEN_ADDRESS=f"127.0.0.1:{port}"
        )
        code, _, err = await run_cli(env=env)
    assert code == 1
    assert "Traceback" not in err
    assert "address already in use" in err.lower()


async def test_check_config_warns_about_suspicious_but_valid_settings() -> None:
    env = FakeAlvaria(base_url="http://127.0.0.1:1").env(
        ALVARIA_WAITING_STATES="Queued,Queud", ALVARIA_POLL_INTERVAL="10s"
    )
    code, _, err = await run_cli("--check-config", env=env)
    assert code == 0
    assert "'Queud' is not a state the API documents" in err


async def test_check_config_refuses_a_request_timeout_beyond_the_poll_deadline() -> None:
    env = FakeAlvaria(base_url="http://127.0.0.1:1").env(
        ALVARIA_REQUEST_TIMEOUT="2m", ALVARIA_POLL_INTERVAL="10s"
    )
    code, _, err = await run_cli("--check-config", env=env)
    assert code == 2
    assert "invalid setting request_timeout (from env ALVARIA_REQUEST_TIMEOUT)" in err
    assert "poll deadline (3 x poll_interval = 30s)" in err


async def test_a_secret_file_shadowed_by_the_config_file_is_reported(tmp_path: Path) -> None:
    key_file = tmp_path / "api_key"
    key_file.write_text("key-from-file\n")
    config = tmp_path / "exporter.yml"
    config.write_text("api_key: key-from-yaml\n")
    env = FakeAlvaria(base_url="http://127.0.0.1:1").env(
        ALVARIA_CONFIG_FILE=str(config), ALVARIA_API_KEY_FILE=str(key_file)
    )
    del env["ALVARIA_API_KEY"]
    code, out, err = await run_cli("--check-config", env=env)
    assert code == 0
    assert (
        "warning: api_key from config file" in err and "overrides file ALVARIA_API_KEY_FILE" in err
    )
    assert "key-from" not in out + err


async def test_once_against_a_strict_realm_simulator_sends_the_org_as_realm() -> None:
    from exporter.simulator import SimulatorConfig, start_simulator

    sim = await start_simulator(SimulatorConfig(org_id="acme", strict_realm=True, seed=1))
    env = {
        "ALVARIA_ORG_ID": "acme",
        "ALVARIA_API_KEY": "demo",
        "ALVARIA_CLIENT_ID": "demo",
        "ALVARIA_CLIENT_SECRET": "demo",
        "ALVARIA_API_URL": sim.base_url,
        "ALVARIA_TOKEN_URL": sim.token_url,
    }
    try:
        code, out, _ = await run_cli("--once", env=env)
        assert code == 0 and 'alvaria_emailqueue_up{org="acme"} 1.0' in out
        # Without a realm Alvaria Cloud refuses the client: the reason says credentials.
        code, out, _ = await run_cli("--once", "--token-realm=", env=env)
        assert code == 1
        assert 'alvaria_emailqueue_poll_errors_total{org="acme",reason="auth"} 1.0' in out
    finally:
        await sim.close()
