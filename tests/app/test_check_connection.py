"""`--check-connection`: each first-run failure shows up at its step, with the right exit code."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from exporter.app.check_connection import check_connection
from exporter.app.findings import token_problems
from exporter.metrics import buildinfo
from exporter.settings import Settings, TargetSettings
from exporter.simulator import SimulatorConfig, start_simulator
from exporter.upstream.auth import TokenResponse
from tests.app.test_main import run_cli
from tests.certs import Certs, make_certs
from tests.fake_alvaria import (
    API_KEY,
    CLIENT_ID,
    CLIENT_SECRET,
    ORG,
    SECRETS,
    TOKEN,
    TOKEN_PATH,
    FakeAlvaria,
    serving,
)
from tests.fakes import free_port
from tests.faults.test_tls_proxy import connect_proxy

STEPS = (
    "resolve token host",
    "resolve API host",
    "connect token host",
    "connect API host",
    "token",
    "first page",
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("diagnose-certs"))


def settings(base_url: str, **target: Any) -> Settings:
    values: dict[str, Any] = {
        "org_id": ORG,
        "api_key": SecretStr(API_KEY),
        "client_id": CLIENT_ID,
        "client_secret": SecretStr(CLIENT_SECRET),
        "api_url": base_url,
        "token_url": base_url + TOKEN_PATH,
        **target,
    }
    return Settings(targets=(TargetSettings(**values),), request_timeout=2.0)


async def diagnose(cfg: Settings) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Exit code, {step: (status, detail)} and the whole output."""
    out: list[str] = []
    code = await check_connection(cfg, out.append)
    text = "".join(out)
    for secret in SECRETS:
        assert secret not in text, (secret, text)
    steps = {}
    for line in text.splitlines()[2:-1]:
        status, rest = line.split(maxsplit=1)
        name = next(n for n in STEPS if rest.startswith(n))
        steps[name] = (status, rest[len(name) :].strip())
    assert tuple(steps) == STEPS, text
    return code, steps, text


def statuses(steps: dict[str, tuple[str, str]]) -> list[str]:
    return [status for status, _ in steps.values()]


async def test_the_simulator_passes_every_step() -> None:
    config = SimulatorConfig(org_id=ORG, api_key=API_KEY, client_id=CLIENT_ID, seed=1,
                             client_secret=CLIENT_SECRET, strict_realm=True)  # fmt: skip
    sim = await start_simulator(config)
    try:
        cfg = settings(sim.base_url).model_copy(update={"page_size": 100})
        code, steps, text = await diagnose(cfg)
    finally:
        await sim.close()
    assert code == 0, text
    assert statuses(steps) == ["ok"] * 6
    assert steps["token"][1] == "200, Bearer, expires_in 3600 s, scope emailqueueapi, realm acme"
    page = steps["first page"][1]
    assert "100 items for maxResults=100" in page and "no page cap below page_size" in page
    assert "workTypeName on 100/100 items" in page
    version, revision, python = buildinfo.labels()
    header, org_line = text.splitlines()[:2]
    assert header == f"alvaria-emailqueue-exporter {version} (revision {revision}, Python {python})"
    assert org_line == f"org {ORG}: token host 127.0.0.1, API host 127.0.0.1"
    assert text.endswith("check-connection passed: 1 organisation(s), 6 ok\n")


async def test_a_refused_port_fails_at_connect() -> None:
    code, steps, _ = await diagnose(settings(f"http://127.0.0.1:{free_port()}"))
    assert code == 1
    assert statuses(steps) == ["ok", "ok", "FAIL", "FAIL", "skip", "skip"]
    assert "Connection refused" in steps["connect token host"][1]
    # Advice, as the token and page steps give: what to check for a refused connection.
    assert "check the URL's port and the firewall" in steps["connect token host"][1]
    assert "HTTPS_PROXY" in steps["connect token host"][1]


async def test_an_unresolvable_host_fails_at_resolve() -> None:
    code, steps, _ = await diagnose(settings("https://no-such-host.invalid"))
    assert code == 1
    assert statuses(steps) == ["FAIL", "FAIL", "skip", "skip", "skip", "skip"]
    assert "check region" in steps["resolve token host"][1]


async def test_an_untrusted_certificate_fails_at_the_tls_handshake(certs: Certs) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(certs.server_cert, certs.server_key)
    async with serving(FakeAlvaria(), server) as upstream:
        code, steps, _ = await diagnose(settings(upstream.base_url))
        assert code == 1
        assert statuses(steps) == ["ok", "ok", "FAIL", "FAIL", "skip", "skip"]
        assert "TLS: " in steps["connect API host"][1] and "ca_file" in steps["connect API host"][1]
        # With the private CA trusted, everything passes and the handshake is described.
        trusted = settings(upstream.base_url).model_copy(update={"ca_file": certs.ca})
        code, steps, text = await diagnose(trusted)
    assert code == 0, text
    assert steps["connect API host"][1].startswith(
        f"127.0.0.1:{upstream.base_url.split(':')[-1]}, TLSv1."
    )
    assert "certificate valid until" in steps["connect API host"][1]


async def test_through_an_https_proxy(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(certs.server_cert, certs.server_key)
    async with connect_proxy() as proxy, serving(FakeAlvaria(page_cap=100), server) as upstream:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        cfg = settings(upstream.base_url).model_copy(update={"ca_file": certs.ca})
        code, steps, text = await diagnose(cfg)
        assert proxy.tunnels
    assert code == 0, text
    proxy_port = proxy.url.rsplit(":", 1)[1]
    assert steps["resolve API host"][1] == (
        "127.0.0.1 -> 127.0.0.1 (proxy for 127.0.0.1, which the proxy resolves)"
    )
    assert f"via proxy 127.0.0.1:{proxy_port} (HEAD / answered 404)" in steps["connect API host"][1]


async def test_https_to_a_plain_http_port_fails_at_the_tls_handshake() -> None:
    async with serving(FakeAlvaria()) as upstream:
        code, steps, _ = await diagnose(settings(upstream.base_url.replace("http:", "https:")))
    assert code == 1
    assert steps["connect token host"][0] == "FAIL"
    assert "TLS handshake failed" in steps["connect token host"][1]
    assert (
        "plain HTTP, not TLS: check the URL's scheme (https://) and port"
        in (steps["connect token host"][1])
    )


async def test_a_wrong_secret_fails_at_the_token_step() -> None:
    async with serving(FakeAlvaria()) as upstream:
        cfg = settings(upstream.base_url, client_secret=SecretStr("not-the-secret"))
        code, steps, _ = await diagnose(cfg)
    assert code == 1
    assert statuses(steps) == ["ok", "ok", "ok", "ok", "FAIL", "skip"]
    detail = steps["token"][1]
    assert detail.startswith("auth: token endpoint refused the credentials (401 invalid_client)")
    assert "token_realm (sent: realm acme)" in detail
    assert "not-the-secret" not in detail


async def test_a_scope_that_was_not_granted_fails_at_the_token_step() -> None:
    async def token(request: web.Request) -> web.Response:
        body = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 60, "scope": "other"}
        return web.json_response(body)

    async with serving(FakeAlvaria(on_token=token)) as upstream:
        code, steps, _ = await diagnose(settings(upstream.base_url))
    assert code == 1
    assert steps["token"][0] == "FAIL" and steps["first page"][0] == "skip"
    assert steps["token"][1].startswith("scope emailqueueapi not granted")


async def test_a_refused_scope_points_at_the_scope_not_the_credentials() -> None:
    async def token(request: web.Request) -> web.Response:
        return web.json_response({"error": "invalid_scope"}, status=400)

    async with serving(FakeAlvaria(on_token=token)) as upstream:
        code, steps, _ = await diagnose(settings(upstream.base_url))
    assert code == 1
    detail = steps["token"][1]
    assert detail.startswith("auth: token endpoint refused the credentials (400 invalid_scope)")
    assert "scope emailqueueapi" in detail and "client_secret" not in detail, detail


async def test_an_unknown_org_fails_at_the_first_page_with_404() -> None:
    async with serving(FakeAlvaria()) as upstream:
        code, steps, _ = await diagnose(settings(upstream.base_url, org_id="no-such-org"))
    assert code == 1
    assert statuses(steps) == ["ok"] * 5 + ["FAIL"]
    assert steps["first page"][1].startswith("http_4xx: emails endpoint answered 404")
    assert "check org_id" in steps["first page"][1]


async def test_a_page_cap_below_page_size_is_detected_but_passes() -> None:
    async with serving(FakeAlvaria(page_cap=3)) as upstream:  # 7 items, 3 per page at most
        code, steps, _ = await diagnose(settings(upstream.base_url))
    assert code == 0
    assert steps["first page"] == (
        "WARN",
        "200, totalItems 7, 3 items for maxResults=500, page cap 3 < page_size 500: "
        "3 requests per poll, workTypeName on 3/3 items",
    )


async def test_missing_work_type_names_are_a_warning() -> None:
    upstream = FakeAlvaria(page_cap=100)
    for item in upstream.items:
        del item["workTypeName"]
    async with serving(upstream):
        code, steps, _ = await diagnose(settings(upstream.base_url))
    assert code == 0 and steps["first page"][0] == "WARN"
    assert "workTypeName missing: work_type falls back to workTypeId" in steps["first page"][1]
    assert "whole list in one page" in steps["first page"][1]


async def test_a_static_token_skips_the_token_steps() -> None:
    async with serving(FakeAlvaria(page_cap=100, accepted={TOKEN})) as upstream:
        cfg = settings(upstream.base_url, access_token=SecretStr(TOKEN), client_id=None,
                       client_secret=None)  # fmt: skip
        code, steps, text = await diagnose(cfg)
    assert code == 0, text
    assert statuses(steps) == ["skip", "ok", "skip", "ok", "skip", "ok"]
    assert "token host none (access_token)" in text


async def test_every_organisation_is_checked_in_order_by_the_cli(tmp_path: Path) -> None:
    async with serving(FakeAlvaria(page_cap=100)) as upstream:
        config = f"""
api_key: {API_KEY}
client_id: {CLIENT_ID}
client_secret: {CLIENT_SECRET}
token_url: {upstream.base_url}{TOKEN_PATH}
api_url: {upstream.base_url}
targets:
  - org_id: {ORG}
  - org_id: other
"""
        path = tmp_path / "c.yaml"
        path.write_text(config, encoding="utf-8")
        code, out, err = await run_cli("--check-connection", "--config-file", str(path))
    assert code == 1, err
    orgs = [line for line in out.splitlines() if line.startswith("org ")]
    assert [line.split(":")[0] for line in orgs] == [f"org {ORG}", "org other"]
    assert out.count("FAIL  first page") == 1
    assert out.strip().endswith("check-connection FAILED: 2 organisation(s), 11 ok, 1 FAIL")
    for secret in SECRETS:
        assert secret not in out + err


async def test_a_configuration_error_exits_2() -> None:
    code, out, err = await run_cli("--check-connection", env={"ALVARIA_API_KEY": "k"})
    assert code == 2 and out == "" and "org_id" in err


def test_token_problems() -> None:
    assert token_problems(TokenResponse("t")) == []  # no scope stated: as requested
    assert token_problems(TokenResponse("t", token_type="bearer", scope="a emailqueueapi")) == []
    assert token_problems(TokenResponse("t", scope=["emailqueueapi"])) == []
    assert token_problems(TokenResponse("t", token_type="MAC", scope="other")) == [
        "token_type 'MAC' is not Bearer",
        "scope emailqueueapi not granted: ask Alvaria to grant it",
    ]
