"""The simulator's gateway rate limit (`--rate-limit N/PERIOD`): headers on every answer, 429 past it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.simulator import SimulatorConfig
from exporter.simulator.__main__ import parse_args
from exporter.simulator.app import SIMULATOR, create_app
from exporter.simulator.ratelimit import MAX_KEYS, Gateway, RateLimit, parse_rate_limit
from tests.fakes import Clock

NOW = 1_750_000_000.0
TOKEN = "/tokenservice/oauth2/access_token"
EMAILS = "/via/v2/organizations/demo/emailQueue/emails"
BASIC = "Basic " + base64.b64encode(b"demo:demo").decode()
FORM = {"grant_type": "client_credentials", "scope": "emailqueueapi"}


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[TestClient[Any, Any], Clock]]:
    clock = Clock(NOW)
    app = create_app(SimulatorConfig(seed=1, rate_limit=(5, 10.0)), clock=clock)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    yield client, clock
    await client.close()


async def test_five_per_ten_seconds_answers_429_past_five_with_headers_on_every_answer(
    gateway: tuple[TestClient[Any, Any], Clock],
) -> None:
    client, clock = gateway
    resp = await client.post(
        TOKEN, data=FORM, headers={"x-api-key": "demo", "Authorization": BASIC}
    )
    assert resp.status == 200
    token = (await resp.json())["access_token"]
    headers = {"x-api-key": "demo", "Authorization": f"Bearer {token}"}
    answers = [resp]
    for _ in range(5):
        clock.now += 1.0
        answers.append(await client.get(EMAILS, params={"maxResults": "1"}, headers=headers))
    assert [a.status for a in answers] == [200, 200, 200, 200, 200, 429]
    assert [a.headers["RateLimit-Limit"] for a in answers] == ["5"] * 6
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0", "0"]
    assert [a.headers["RateLimit-Reset"] for a in answers] == ["10", "9", "8", "7", "6", "5"]
    assert "Retry-After" not in answers[0].headers
    refused = answers[-1]
    assert refused.headers["Retry-After"] == "5"
    body = await refused.json()
    assert body["code"] == 429 and body["errors"][0]["reason"] == "rateLimitExceeded"
    # Errors carry the headers too: a wrong bearer is refused, and still counted.
    clock.now += 5.0  # the window has reset
    wrong = await client.get(EMAILS, headers={"x-api-key": "demo", "Authorization": "Bearer x"})
    assert wrong.status == 401 and wrong.headers["RateLimit-Remaining"] == "4"
    ok = await client.get(EMAILS, params={"maxResults": "1"}, headers=headers)
    assert ok.status == 200 and ok.headers["RateLimit-Remaining"] == "3"
    sim = client.app[SIMULATOR]
    assert sim.gateway is not None and sim.gateway.refused["demo"] == 1


async def test_each_api_key_has_its_own_budget(gateway: tuple[TestClient[Any, Any], Clock]) -> None:
    client, _ = gateway
    for _ in range(5):
        await client.get(EMAILS, headers={"x-api-key": "demo"})
    assert (await client.get(EMAILS, headers={"x-api-key": "demo"})).status == 429
    other = await client.get(EMAILS, headers={"x-api-key": "another"})
    assert other.status == 403 and other.headers["RateLimit-Remaining"] == "4"


def test_without_a_rate_limit_there_are_no_headers() -> None:
    app = create_app(SimulatorConfig(seed=1))
    assert app[SIMULATOR].gateway is None


@pytest.mark.parametrize(
    ("style", "names", "reset"),
    [
        ("ietf", ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"), "10"),
        ("x", ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"), "10"),
        ("x-epoch", ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"), "1750000010"),
    ],
)  # fmt: skip
def test_header_spellings(style: str, names: tuple[str, str, str], reset: str) -> None:
    gateway = Gateway(RateLimit(5, 10.0, style), Clock(NOW))
    allowed, headers = gateway.admit("demo")
    assert allowed and headers == dict(zip(names, ("5", "4", reset), strict=True))


def test_the_key_table_is_bounded() -> None:
    clock = Clock(NOW)
    gateway = Gateway(RateLimit(1, 10.0), clock)
    for n in range(MAX_KEYS + 50):
        gateway.admit(f"key-{n}")
    assert len(gateway._windows) <= MAX_KEYS
    assert not gateway.admit(f"key-{MAX_KEYS + 49}")[0]  # the newest keys keep their windows


@pytest.mark.parametrize(
    ("text", "expected"),
    [("110/1m", (110, 60.0)), ("5/10s", (5, 10.0)), ("25/10", (25, 10.0)), ("100/h", (100, 3600.0)),
     ("3/0.5s", (3, 0.5))],
)  # fmt: skip
def test_parse_rate_limit(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize("text", ["", "110", "0/1m", "5/0s", "5/2d", "-1/1m", "5/10x", "5/25h"])
def test_bad_rate_limits_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate limit|N/PERIOD"):
        parse_rate_limit(text)


def test_the_flag_and_its_environment_variable() -> None:
    _, config = parse_args(["--rate-limit", "5/10s"], {})
    assert config.rate_limit == (5, 10.0) and config.rate_limit_headers == "ietf"
    _, config = parse_args([], {"ALVARIA_SIM_RATE_LIMIT": "110/1m"})
    assert config.rate_limit == (110, 60.0)
    _, config = parse_args(["--rate-limit-headers", "x-epoch"], {})
    assert config.rate_limit is None and config.rate_limit_headers == "x-epoch"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--rate-limit", "lots"], {}),
        ([], {"ALVARIA_SIM_RATE_LIMIT": "5"}),
        (["--rate-limit-headers", "y"], {}),
        ([], {"ALVARIA_SIM_RATE_LIMIT_HEADERS": "y"}),
    ],
)
def test_bad_flags_exit_2(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, env)
    assert exc.value.code == 2
