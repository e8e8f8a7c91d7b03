"""Every response the simulator gives matches its OpenAPI description (exporter/simulator/openapi.yaml)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

import exporter.simulator
from exporter.simulator import SimulatorConfig
from exporter.simulator.app import create_app
from exporter.simulator.scenarios import Faults

SPEC: dict[str, Any] = yaml.safe_load(
    (Path(exporter.simulator.__file__).parent / "openapi.yaml").read_text(encoding="utf-8")
)
TOKEN = "/tokenservice/oauth2/access_token"
EMAILS = "/via/v2/organizations/demo/emailQueue/emails"
BASIC = "Basic " + base64.b64encode(b"demo:demo").decode()


def check(body: Any, path: str, method: str, status: int) -> None:
    """Validate `body` against the schema the description gives for that response."""
    response = SPEC["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = {**response["content"]["application/json"]["schema"], "components": SPEC["components"]}
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(body)


def test_description_is_a_valid_schema_set() -> None:
    assert SPEC["openapi"].startswith("3.1")
    for schema in SPEC["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    path = EMAILS.replace("demo", "{orgId}")
    item = {"id": "1", "umId": "x", "workTypeId": "1", "state": "Queued", "emailType": "Fax"}
    with pytest.raises(jsonschema.ValidationError):
        check({"kind": "via#emailList", "items": [item]}, path, "get", 200)
    with pytest.raises(jsonschema.ValidationError):
        check({"code": 404, "message": "x", "errors": []}, path, "get", 404)


@pytest.fixture(params=["steady", "agent_outage", "large"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[TestClient[Any, Any]]:
    config = SimulatorConfig(scenario=request.param, seed=2, emails=1500)
    faults = Faults(p_429=0.5)  # half of the list requests are rate limited
    async with TestClient(TestServer(create_app(config, faults=faults))) as client:
        yield client


async def test_responses_match_the_description(client: TestClient[Any, Any]) -> None:
    key = {"x-api-key": "demo"}
    resp = await client.post(
        TOKEN, data={"grant_type": "client_credentials"}, headers={**key, "Authorization": BASIC}
    )
    body = await resp.json()
    check(body, TOKEN, "post", resp.status)
    headers = {**key, "Authorization": f"Bearer {body['access_token']}"}
    for bad in [{"grant_type": "password"}, {"grant_type": "client_credentials", "scope": "x"}]:
        resp = await client.post(TOKEN, data=bad, headers={**key, "Authorization": BASIC})
        check(await resp.json(), TOKEN, "post", resp.status)
    resp = await client.post(TOKEN, data={"grant_type": "client_credentials"}, headers=key)
    check(await resp.json(), TOKEN, "post", resp.status)

    seen = set()
    for params in [
        {"getExtendedInfo": "true"},
        {"getExtendedInfo": "false", "maxResults": "3"},
        {"state": "Queued", "startIndex": "2"},
        {"startIndex": "abc"},
    ] * 4:
        resp = await client.get(EMAILS, params=params, headers=headers)
        check(await resp.json(), EMAILS.replace("demo", "{orgId}"), "get", resp.status)
        seen.add(resp.status)
    assert {200, 400, 429} <= seen
    for method, url, hdrs in [
        ("get", EMAILS, key),
        ("get", EMAILS, {"x-api-key": "no"}),
        ("get", EMAILS.replace("demo", "other"), headers),
        ("delete", EMAILS, headers),
    ]:
        resp = await client.request(method, url, headers=hdrs)
        check(await resp.json(), EMAILS.replace("demo", "{orgId}"), "get", resp.status)
