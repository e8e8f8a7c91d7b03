"""The simulator's --orgs: many independent organisations, one key each or shared, built lazily."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.simulator import SimulatorConfig
from exporter.simulator.__main__ import parse_args
from exporter.simulator.app import SIMULATOR, create_app
from tests.simulator.test_app import TOKEN, basic

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]


def emails(org: str) -> str:
    return f"/via/v2/organizations/{org}/emailQueue/emails"


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(**config: Any) -> Client:
        client: Client = TestClient(TestServer(create_app(SimulatorConfig(seed=5, **config))))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def login(client: Client, key: str) -> str:
    resp = await client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers={"x-api-key": key, "Authorization": basic("demo", "demo")},
    )
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["access_token"])


async def page(client: Client, org: str, key: str, token: str) -> tuple[int, Any]:
    headers = {"x-api-key": key, "Authorization": f"Bearer {token}"}
    resp = await client.get(emails(org), params={"maxResults": 1000}, headers=headers)
    return resp.status, await resp.json()


async def test_each_organisation_has_its_own_queue(make_client: MakeClient) -> None:
    client = await make_client(orgs=3)
    token = await login(client, "demo")
    bodies = []
    for org in ("org-0001", "org-0002", "org-0003"):
        status, body = await page(client, org, "demo", token)
        assert status == 200 and body["totalItems"] > 0
        bodies.append(sorted(item["id"] for item in body["items"]))
    assert bodies[0] != bodies[1], "independent queues, not one list served three times"
    assert (await page(client, "org-0004", "demo", token))[0] == 404
    assert (await page(client, "demo", "demo", token))[0] == 404


async def test_keys_per_organisation(make_client: MakeClient) -> None:
    client = await make_client(orgs=4, api_key_per_org=True, orgs_per_key=2)
    token = await login(client, "key-org-0001")
    assert (await page(client, "org-0002", "key-org-0001", token))[0] == 200  # shared key
    assert (await page(client, "org-0003", "key-org-0001", token))[0] == 404  # another key's org
    other = await login(client, "key-org-0003")
    # A token works only with the key it was issued for.
    assert (await page(client, "org-0003", "key-org-0003", token))[0] == 401
    assert (await page(client, "org-0004", "key-org-0003", other))[0] == 200
    resp = await client.post(TOKEN, data={}, headers={"x-api-key": "key-org-0002"})
    assert resp.status == 403, "key-org-0002 is not a key when two organisations share one"


async def test_queues_are_built_on_first_request_and_requests_are_counted(
    make_client: MakeClient,
) -> None:
    client = await make_client(orgs=500)
    sim = client.app[SIMULATOR]
    assert len(sim._queues) == 1
    token = await login(client, "demo")
    await page(client, "org-0500", "demo", token)
    assert len(sim._queues) == 2
    assert sum(sim.requests.per_second.values()) == 2
    assert sim.requests.by_org == {"org-0500": 1}


async def test_large_scenario_shares_one_static_queue(make_client: MakeClient) -> None:
    client = await make_client(orgs=50, scenario="large", emails=300)
    token = await login(client, "demo")
    totals = {
        (await page(client, f"org-00{i:02d}", "demo", token))[1]["totalItems"] for i in (1, 50)
    }
    assert totals == {300}
    sim = client.app[SIMULATOR]
    assert len({id(q) for q in sim._queues.values()}) == 1


def test_cli_flags_and_env() -> None:
    _, config = parse_args(["--orgs", "30", "--api-key-per-org", "--orgs-per-key", "3"], {})
    assert (config.orgs, config.api_key_per_org, config.orgs_per_key) == (30, True, 3)
    assert config.org_ids[0] == "org-0001" and config.org_ids[-1] == "org-0030"
    assert config.api_key_for("org-0006") == "key-org-0004"
    _, config = parse_args([], {"ALVARIA_SIM_ORGS": "2", "ALVARIA_SIM_API_KEY_PER_ORG": "true"})
    assert config.api_key_per_org and config.api_key_for("org-0002") == "key-org-0002"
    with pytest.raises(SystemExit):
        parse_args(["--orgs", "-1"], {})
