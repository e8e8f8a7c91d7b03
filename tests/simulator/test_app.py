"""Conformance of the simulated API with the EmailQueue API reference."""

from __future__ import annotations

import base64
import email.utils
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.domain.names import EMAIL_TYPES, STATES
from exporter.simulator import SimulatorConfig, start_simulator
from exporter.simulator.app import create_app
from exporter.simulator.scenarios import API_FAULTS, Faults

NOW = 1_750_000_000.0
TOKEN = "/tokenservice/oauth2/access_token"
EMAILS = "/via/v2/organizations/demo/emailQueue/emails"
KEY = {"x-api-key": "demo"}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
FIELDS = {
    "id", "threadId", "umId", "contactId", "interactionId", "workTypeId", "workHandlerId",
    "sentTime", "receivedTime", "startTime", "queuedTime", "activeTime", "lastModifiedTime",
    "eventSequenceNumber", "state", "emailType", "emailObjectId", "replyEmailObjectId",
    "fromAddress", "toAddress", "subject", "workHandlerName", "workTypeName",
}  # fmt: skip


class Clock:
    """A clock that moves only when told."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sim:
    """A test client with a token, a clock and the sleeps the app asked for."""

    def __init__(self, client: TestClient[Any, Any], clock: Clock, sleeps: list[float]) -> None:
        self.client, self.clock, self.sleeps = client, clock, sleeps
        self.token = ""

    async def login(self, realm: str = "") -> str:
        resp = await self.client.post(
            TOKEN + (f"?realm={realm}" if realm else ""),
            data={"grant_type": "client_credentials", "scope": "emailqueueapi"},
            headers={**KEY, "Authorization": basic("demo", "demo")},
        )
        assert resp.status == 200
        self.token = (await resp.json())["access_token"]
        return self.token

    async def get(self, params: Any = None, **headers: str) -> aiohttp.ClientResponse:
        merged = {**KEY, "Authorization": f"Bearer {self.token}", **headers}
        return await self.client.get(EMAILS, params=params, headers=merged)

    async def page(self, params: Any = None) -> dict[str, Any]:
        resp = await self.get(params)
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


MakeSim = Callable[..., Awaitable[Sim]]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    clients: list[TestClient[Any, Any]] = []

    async def make(faults: Faults | None = None, login_realm: str = "", **config: Any) -> Sim:
        clock, sleeps = Clock(), []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        config.setdefault("seed", 1)
        app = create_app(SimulatorConfig(**config), clock=clock, sleep=sleep, faults=faults)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        sim = Sim(client, clock, sleeps)
        await sim.login(login_realm)
        return sim

    yield make
    for client in clients:
        await client.close()


async def fetch_all(sim: Sim, params: dict[str, Any], size: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        body = await sim.page({**params, "startIndex": len(items), "maxResults": size})
        items.extend(body["items"])
        if not body["items"] or len(items) >= body["totalItems"]:
            return items


def assert_error(body: Any, code: int) -> None:
    assert body["code"] == code and isinstance(body["message"], str)
    assert body["errors"] and set(body["errors"][0]) == {"scope", "reason", "message"}


# -- token endpoint ---------------------------------------------------------------------------


async def test_token_by_basic_and_by_form(make_sim: MakeSim) -> None:
    sim = await make_sim()
    resp = await sim.client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_id": "demo", "client_secret": "demo"},
        headers=KEY,
    )
    body = await resp.json()
    assert resp.status == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "emailqueueapi" and body["access_token"] != sim.token


@pytest.mark.parametrize(
    ("headers", "data", "status", "error"),
    [
        ({"Authorization": basic("demo", "wrong")}, {}, 401, "invalid_client"),
        ({"Authorization": "Basic !!!"}, {}, 401, "invalid_client"),
        ({}, {"client_id": "demo", "client_secret": "nope"}, 401, "invalid_client"),
        ({"Authorization": basic("demo", "demo")}, {"grant_type": "password"}, 400, None),
        ({"Authorization": basic("demo", "demo")}, {"grant_type": None}, 400, None),
        ({"Authorization": basic("demo", "demo")}, {"scope": "other"}, 400, "invalid_scope"),
    ],
)
async def test_token_rejections(
    make_sim: MakeSim, headers: dict[str, str], data: dict[str, Any], status: int, error: str | None
) -> None:
    sim = await make_sim()
    form = {"grant_type": "client_credentials", **data}
    form = {k: v for k, v in form.items() if v is not None}
    resp = await sim.client.post(TOKEN, data=form, headers={**KEY, **headers})
    assert resp.status == status
    body = await resp.json()
    assert "error" in body and (error is None or body["error"] == error)


@pytest.mark.parametrize(
    ("strict", "query", "form", "status"),
    [
        (False, "", {}, 200),  # lenient by default, like the seed's simulator
        (False, "?realm=demo", {"realm": "demo"}, 200),
        (False, "?realm=other", {}, 401),  # a realm given must be the organisation's
        (True, "", {}, 401),
        (True, "?realm=demo", {}, 200),
        (True, "", {"realm": "demo"}, 200),
        (True, "?realm=demo", {"realm": "demo"}, 200),
        (True, "?realm=demo", {"realm": "other"}, 401),
        (True, "?realm=", {}, 401),
    ],
)
async def test_realm(
    make_sim: MakeSim, strict: bool, query: str, form: dict[str, str], status: int
) -> None:
    sim = await make_strict(make_sim) if strict else await make_sim()
    data = {"grant_type": "client_credentials", **form}
    headers = {**KEY, "Authorization": basic("demo", "demo")}
    resp = await sim.client.post(TOKEN + query, data=data, headers=headers)
    assert resp.status == status
    body = await resp.json()
    if status == 401:
        # What the token service answers for refused client credentials (RFC 6749 section 5.2).
        assert body == {
            "error": "invalid_client",
            "error_description": "Client authentication failed",
        }
        assert resp.headers["Cache-Control"] == "no-store"
    else:
        assert body["access_token"]


async def make_strict(make_sim: MakeSim) -> Sim:
    """A strict-realm simulator (its fixture login sends the realm, as the exporter does)."""
    sim = await make_sim(login_realm="demo", strict_realm=True)
    return sim


async def test_token_needs_api_key_and_post(make_sim: MakeSim) -> None:
    sim = await make_sim()
    data = {"grant_type": "client_credentials"}
    auth = {"Authorization": basic("demo", "demo")}
    resp = await sim.client.post(TOKEN, data=data, headers={"x-api-key": "bad", **auth})
    assert resp.status == 403
    assert_error(await resp.json(), 403)
    resp = await sim.client.post(TOKEN, data=data, headers=auth)
    assert resp.status == 403
    resp = await sim.client.get(TOKEN, headers=KEY)
    assert resp.status == 405


async def test_tokens_really_expire(make_sim: MakeSim) -> None:
    sim = await make_sim(token_lifetime=60)
    assert (await sim.get()).status == 200
    sim.clock.now += 61
    resp = await sim.get()
    assert resp.status == 401 and "Bearer" in resp.headers["WWW-Authenticate"]
    await sim.login()
    assert (await sim.get()).status == 200


# -- emails endpoint: errors ------------------------------------------------------------------


async def test_auth_errors(make_sim: MakeSim) -> None:
    sim = await make_sim()
    for headers, status in [
        ({"Authorization": ""}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"Authorization": basic("demo", "demo")}, 401),
        ({"x-api-key": "wrong"}, 403),
    ]:
        resp = await sim.get(**headers)
        assert resp.status == status, headers
        assert_error(await resp.json(), status)
    resp = await sim.client.get(
        "/via/v2/organizations/other/emailQueue/emails",
        headers={**KEY, "Authorization": f"Bearer {sim.token}"},
    )
    assert resp.status == 404
    assert_error(await resp.json(), 404)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(make_sim: MakeSim, method: str) -> None:
    sim = await make_sim()
    resp = await sim.client.request(method, EMAILS, headers={**KEY, "Authorization": "x"})
    assert resp.status == 405 and resp.headers["Allow"] == "GET"
    assert_error(await resp.json(), 405)


@pytest.mark.parametrize(
    "params",
    [
        {"startIndex": "abc"},
        {"startIndex": "-1"},
        {"maxResults": "0"},
        {"maxResults": "1.5"},
        {"state": "Sleeping"},
        {"state": ["Queued", "Nope"]},
        {"emailType": "Fax"},
        {"getExtendedInfo": "maybe"},
    ],
)
async def test_bad_parameters_are_400(make_sim: MakeSim, params: dict[str, Any]) -> None:
    sim = await make_sim()
    resp = await sim.get(params)
    assert resp.status == 400
    body = await resp.json()
    assert_error(body, 400)
    assert body["errors"][0]["scope"] in params


async def test_unknown_path_has_error_body(make_sim: MakeSim) -> None:
    sim = await make_sim()
    resp = await sim.client.get("/via/v2/nothing")
    assert resp.status == 404
    assert_error(await resp.json(), 404)


# -- emails endpoint: list --------------------------------------------------------------------


async def test_list_shape_and_field_formats(make_sim: MakeSim) -> None:
    sim = await make_sim()
    body = await sim.page({"getExtendedInfo": "true", "maxResults": "1000"})
    assert body["kind"] == "via#emailList" and body["version"] == "20.0"
    assert body["totalItems"] == len(body["items"]) >= 200
    assert body["lastIndexReturned"] == len(body["items"]) - 1
    assert {i["emailType"] for i in body["items"]} == set(EMAIL_TYPES)
    assert len({i["state"] for i in body["items"]}) >= 4
    assert len({i["workTypeId"] for i in body["items"]}) >= 4
    assert any('"' in i["workTypeName"] and "ü" in i["workTypeName"] for i in body["items"])
    for item in body["items"]:
        assert set(item) <= FIELDS
        assert item["state"] in STATES and item["emailType"] in EMAIL_TYPES
        for key in ("id", "threadId", "contactId", "interactionId", "workTypeId"):
            assert item[key].isdigit()
        assert (
            isinstance(item["eventSequenceNumber"], str) and item["eventSequenceNumber"].isdigit()
        )
        stamps = [item.get(k) for k in ("receivedTime", "startTime", "queuedTime", "activeTime")]
        stamps = [s for s in [item["sentTime"], *stamps, item["lastModifiedTime"]] if s]
        assert all(TS.match(s) for s in stamps) and stamps == sorted(stamps), item
        assert ("workHandlerName" in item) == ("workHandlerId" in item)


async def test_extended_info_only_when_true(make_sim: MakeSim) -> None:
    sim = await make_sim()
    for params in [{}, {"getExtendedInfo": "false"}]:
        items = (await sim.page(params))["items"]
        assert items and not any("workTypeName" in i or "workHandlerName" in i for i in items)
    items = (await sim.page({"getExtendedInfo": "TRUE"}))["items"]
    assert all("workTypeName" in i for i in items)


async def test_paging_is_stable_and_complete(make_sim: MakeSim) -> None:
    sim = await make_sim()
    whole = (await sim.page({"maxResults": 1000}))["items"]
    paged = await fetch_all(sim, {}, 37)
    assert [i["id"] for i in paged] == [i["id"] for i in whole]
    assert [int(i["id"]) for i in whole] == sorted(int(i["id"]) for i in whole)
    beyond = await sim.page({"startIndex": 100_000})
    assert beyond["items"] == [] and beyond["totalItems"] == len(whole)


async def test_server_side_page_cap(make_sim: MakeSim) -> None:
    sim = await make_sim(page_cap=50)
    for params in [{}, {"maxResults": 500}]:
        body = await sim.page(params)
        assert len(body["items"]) == 50 < body["totalItems"]
    assert len((await sim.page({"maxResults": 7}))["items"]) == 7
    body = await sim.page({"startIndex": 10, "maxResults": 5})
    assert body["lastIndexReturned"] == 14


async def test_filters(make_sim: MakeSim) -> None:
    sim = await make_sim()
    every = (await sim.page({"getExtendedInfo": "true"}))["items"]

    async def ids(params: Any) -> list[str]:
        body = await sim.page(params)
        assert body["totalItems"] == len(body["items"])
        return [i["id"] for i in body["items"]]

    def expect(pred: Callable[[dict[str, Any]], bool]) -> list[str]:
        return [i["id"] for i in every if pred(i)]

    assert await ids({"emailType": "ManualOutboundEmail"}) == expect(
        lambda i: i["emailType"] == "ManualOutboundEmail"
    )
    two_states = [("state", "Queued"), ("state", "Active")]
    assert await ids(two_states) == expect(lambda i: i["state"] in ("Queued", "Active"))
    assert await ids({"state": "Queued,Active"}) == expect(
        lambda i: i["state"] in ("Queued", "Active")
    )
    two_types = [("workTypeId", "111"), ("workTypeId", "112")]
    assert await ids(two_types) == expect(lambda i: i["workTypeId"] in ("111", "112"))
    agent = next(i["workHandlerId"] for i in every if "workHandlerId" in i)
    assert await ids({"workHandlerId": agent}) == expect(lambda i: i.get("workHandlerId") == agent)
    um = every[5]["umId"]
    assert await ids({"umId": um}) == [every[5]["id"]]
    assert await ids({"umId": um[:20] + "*"}) == expect(lambda i: i["umId"].startswith(um[:20]))
    assert await ids({"umId": "*" + um[-5:]}) == expect(lambda i: i["umId"].endswith(um[-5:]))
    assert await ids({"umId": "01-*-" + um[-5:]}) == [every[5]["id"]]
    assert await ids({"umId": "nothing*"}) == []
    combined = {"emailType": "InboundEmail", "workTypeId": "113", "state": "Queued2"}
    assert await ids(combined) == expect(
        lambda i: (
            (i["emailType"], i["workTypeId"], i["state"]) == ("InboundEmail", "113", "Queued2")
        )
    )


async def test_queue_moves_with_the_clock(make_sim: MakeSim) -> None:
    sim = await make_sim()
    before = {i["id"]: i["state"] for i in (await sim.page())["items"]}
    sim.clock.now += 900
    after = {i["id"]: i["state"] for i in (await sim.page())["items"]}
    assert set(after) - set(before) and set(before) - set(after)
    assert any(before[k] != after[k] for k in before.keys() & after.keys())


# -- scenarios --------------------------------------------------------------------------------


async def test_api_faults(make_sim: MakeSim) -> None:
    sim = await make_sim(scenario="api_faults")
    statuses: dict[int, int] = {}
    retry_forms = set()
    for _ in range(150):
        resp = await sim.get({"maxResults": 10})
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        if resp.status == 429:
            value = resp.headers["Retry-After"]
            if value.isdigit():
                retry_forms.add("seconds")
            else:
                assert email.utils.parsedate_to_datetime(value).timestamp() >= NOW
                retry_forms.add("date")
        if resp.status >= 400:
            assert_error(await resp.json(), resp.status)
    assert statuses[200] > 80 and statuses.get(429, 0) > 3
    assert retry_forms == {"seconds", "date"}
    assert sum(n for code, n in statuses.items() if code >= 500) > 3
    assert sim.sleeps and all(0.5 <= s <= 3.0 for s in sim.sleeps)
    # Tokens die long before the advertised expires_in.
    sim.clock.now += API_FAULTS.token_expiry + 1  # type: ignore[operator]
    statuses_after = [(await sim.get()).status for _ in range(5)]
    assert 200 not in statuses_after and 401 in statuses_after


async def test_api_faults_list_shifts_while_paged(make_sim: MakeSim) -> None:
    sim = await make_sim(faults=Faults(p_shift=0.5))
    paged = await fetch_all(sim, {}, 20)
    ids = [i["id"] for i in paged]
    assert len(ids) > len(set(ids)), "some pages overlap the previous one"


async def test_agent_outage_backlog_is_hours_old(make_sim: MakeSim) -> None:
    sim = await make_sim(scenario="agent_outage")
    items = (await sim.page())["items"]
    oldest = min(i["queuedTime"] for i in items)
    assert datetime.fromisoformat(oldest.replace("Z", "+00:00")).timestamp() <= NOW - 5 * 3600
    assert not any(i["state"] in ("Active", "Wrap") for i in items)


async def test_large_serves_exactly_n_unique_ids(make_sim: MakeSim) -> None:
    sim = await make_sim(scenario="large", emails=2500, page_cap=1000)
    items = await fetch_all(sim, {"getExtendedInfo": "true"}, 1000)
    assert len(items) == 2500 == len({i["id"] for i in items})
    assert all("workTypeName" in i for i in items)
    sim.clock.now += 1800
    again = await fetch_all(sim, {}, 1000)
    assert [i["id"] for i in again] == [i["id"] for i in items]
    queued = (await sim.page({"state": "Queued", "maxResults": 1}))["totalItems"]
    assert 0 < queued < 2500


async def test_start_simulator_serves_on_a_free_port() -> None:
    running = await start_simulator(SimulatorConfig(seed=4, client_secret="s3cret"))
    try:
        assert running.token_url == running.base_url + TOKEN
        async with aiohttp.ClientSession() as session:
            auth = {"Authorization": basic("demo", "s3cret")}
            form = {"grant_type": "client_credentials"}
            async with session.post(running.token_url, data=form, headers={**KEY, **auth}) as r:
                token = (await r.json())["access_token"]
            headers = {**KEY, "Authorization": f"Bearer {token}"}
            async with session.get(running.base_url + EMAILS, headers=headers) as r:
                assert r.status == 200
                assert (await r.json())["totalItems"] > 0
    finally:
        await running.close()
