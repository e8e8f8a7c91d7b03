"""Hostile upstreams, second pass: odd statuses, odd token responses and text that echoes secrets.

Each case polls the production pipeline (`tests.pipeline`) or runs `--check-connection` against a
scripted loopback upstream, and checks the reason, the outcome and that nothing an upstream wrote
reached an output unbounded, with control characters, or holding a configured secret.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp import web

from exporter.app.check_connection import check_connection
from exporter.domain.errors import POLL_ERROR_REASONS
from tests.app.test_check_connection import settings as diagnosis_settings
from tests.fake_alvaria import API_KEY, CLIENT_SECRET, SECRETS, TOKEN, FakeAlvaria, serving
from tests.faults.test_http import check, status
from tests.pipeline import rig

# A secret a token endpoint can echo as an OAuth2 error code (lowercase letters and underscores).
CODE_LIKE_SECRET = "hunter_two_secret_value"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x1b]")


def fake(**fields: Any) -> FakeAlvaria:
    """The fake Alvaria, taking the token the scripted token endpoints below hand out."""
    return FakeAlvaria(accepted={TOKEN}, **fields)


def token(body: dict[str, Any] | str, code: int = 200) -> Any:
    """A token endpoint answering `body` (JSON unless a string)."""

    async def handler(request: web.Request) -> web.Response:
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=code, text=text, content_type="application/json")

    return handler


def bearer(**fields: Any) -> dict[str, Any]:
    return {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600, **fields}


# -- status classes (defect 9) -----------------------------------------------------------------


def test_http_other_is_a_documented_reason() -> None:
    assert "http_other" in POLL_ERROR_REASONS


@pytest.mark.parametrize("code", [301, 302, 304, 307, 308])
async def test_a_redirect_or_not_modified_from_the_emails_endpoint_is_http_other(code: int) -> None:
    headers = {"Location": "http://127.0.0.1:1/elsewhere"}
    r = await check(fake(on_emails=status(code, headers, body="")), ok=False,
                    reason="http_other")  # fmt: skip
    assert r.value("alvaria_emailqueue_poll_errors_total", reason="http_4xx") in (None, 0)
    assert "is api_url the API base" not in (r.state.last_error or "")


@pytest.mark.parametrize(("code", "body"), [(204, ""), (202, ""), (200, ""), (201, "accepted")])
async def test_no_content_or_a_2xx_without_json_is_decode(code: int, body: str) -> None:
    await check(fake(on_emails=status(code, body=body)), ok=False, reason="decode")


async def test_a_redirect_from_the_token_endpoint_is_http_other_not_auth() -> None:
    upstream = fake(on_token=status(302, {"Location": "http://127.0.0.1:1/"}, body=""))
    await check(upstream, ok=False, reason="http_other")
    assert upstream.calls["emails"] == 0


# -- token lifetimes and types (defect 10, notes) ------------------------------------------------


@pytest.mark.parametrize("expires_in", ["abc", -5, 0, True, "", [], {"s": 1}, "nan", "-inf"])
async def test_an_unusable_expires_in_is_the_default_lifetime_with_a_warning(
    expires_in: Any,
) -> None:
    r = await check(fake(on_token=token(bearer(expires_in=expires_in))), ok=True)
    expiry = r.value("alvaria_emailqueue_token_expiry_timestamp_seconds")
    assert expiry == pytest.approx(r.clock.now + 3600)
    warnings = [e for e in r.logs if e["event"] == "token_lifetime"]
    assert len(warnings) == 1 and "3600 s assumed" in warnings[0]["problem"]


@pytest.mark.parametrize("expires_in", [1e300, "1e300", 10**12])
async def test_an_endless_lifetime_is_capped_at_a_day(expires_in: Any) -> None:
    r = await check(fake(on_token=token(bearer(expires_in=expires_in))), ok=True)
    expiry = r.value("alvaria_emailqueue_token_expiry_timestamp_seconds")
    assert expiry == pytest.approx(r.clock.now + 86400)


async def test_a_string_lifetime_is_read() -> None:
    r = await check(fake(on_token=token(bearer(expires_in="1800"))), ok=True)
    assert r.value("alvaria_emailqueue_token_expiry_timestamp_seconds") == pytest.approx(
        r.clock.now + 1800
    )
    assert not [e for e in r.logs if e["event"] == "token_lifetime"]


@pytest.mark.parametrize("kind", ["bearer", "BEARER", "Bearer", None])
async def test_bearer_in_any_case_is_accepted(kind: str) -> None:
    await check(fake(on_token=token(bearer(token_type=kind))), ok=True)


@pytest.mark.parametrize("kind", ["MAC", "DPoP", "", 42, ["Bearer"]])
async def test_a_token_type_other_than_bearer_is_auth_and_named(kind: Any) -> None:
    upstream = fake(on_token=token(bearer(token_type=kind)))
    r = await check(upstream, ok=False, reason="auth")
    assert upstream.calls["emails"] == 0, "the token is never sent as something it is not"
    assert f"token_type {json.dumps(kind)}" in (r.state.last_error or "")


async def test_a_hostile_token_type_is_scrubbed_wherever_it_is_shown() -> None:
    kind = f"\x1b[31mMAC {CLIENT_SECRET} {API_KEY}\nok    first page" + "x" * 1_000_000
    r = await check(fake(on_token=token(bearer(token_type=kind))), ok=False, reason="auth")
    error = r.state.last_error or ""
    assert len(error) < 400 and not CONTROL.search(error) and "\\n" not in error
    page = await r.landing()
    assert "\x1b" not in page and "x" * 500 not in page
    assert not CONTROL.search(repr([e.get("error") for e in r.logs]))


# -- echoed secrets (defect 14) ----------------------------------------------------------------


async def test_an_oauth2_error_code_that_is_the_secret_is_masked() -> None:
    upstream = fake(on_token=token({"error": CODE_LIKE_SECRET}, code=400))
    async with rig(upstream, client_secret=CODE_LIKE_SECRET) as r:
        ok, _ = await r.poll()
        assert not ok and r.state.last_error_reason == "http_4xx"
        shown = [r.state.last_error or "", await r.landing(), repr(r.logs)]
    for text in shown:
        assert CODE_LIKE_SECRET not in text
    assert "********" in shown[0]


# -- --check-connection (defect 3) -------------------------------------------------------------


async def diagnose_with(handler: Any) -> tuple[int, str]:
    out: list[str] = []
    async with serving(fake(on_token=handler, page_cap=100)) as upstream:
        code = await check_connection(diagnosis_settings(upstream.base_url), out.append)
    return code, "".join(out)


async def test_check_connection_never_prints_what_an_echoing_token_endpoint_sends() -> None:
    echo = f"\x1b[2K\r  ok    first page  {CLIENT_SECRET} {API_KEY}\n  ok    forged"
    body = bearer(token_type=echo, scope=echo + " emailqueueapi " + "s" * 1_000_000)
    code, text = await diagnose_with(token(body))
    assert code == 1
    for secret in SECRETS:
        assert secret not in text
    lines = text.splitlines()
    assert len(lines) == 9, text[:3000]  # header, org, six steps, verdict: nothing forged
    assert not any(line.lstrip().startswith("ok    forged") for line in lines)
    assert max(len(line) for line in lines) < 500
    assert not CONTROL.search(text.replace("\n", ""))


async def test_check_connection_masks_a_scope_that_echoes_the_secrets() -> None:
    body = bearer(scope=f"emailqueueapi {CLIENT_SECRET} {API_KEY}")
    code, text = await diagnose_with(token(body))
    assert code == 0, text
    assert CLIENT_SECRET not in text and API_KEY not in text and "********" in text


async def test_check_connection_warns_of_an_unusable_lifetime() -> None:
    code, text = await diagnose_with(token(bearer(expires_in="abc")))
    assert code == 0, text
    line = next(line for line in text.splitlines() if line.startswith("  WARN  token"))
    assert 'expires_in "abc" is not a positive number' in line and "3600 s assumed" in line


async def test_check_connection_names_a_mac_token_type() -> None:
    code, text = await diagnose_with(token(bearer(token_type="MAC")))
    assert code == 1
    line = next(line for line in text.splitlines() if line.startswith("  FAIL  token"))
    assert 'token_type "MAC"' in line and "Bearer" in line


# -- a request budget too small for one poll (defect 7) -----------------------------------------


async def test_a_poll_cut_by_the_request_budget_is_rate_limited_and_the_wait_counted() -> None:
    upstream = fake()  # seven items, three per page: token and three pages
    async with rig(upstream, poll_interval=0.2, max_requests_per_second=1e-9) as r:
        ok, elapsed = await r.poll()
        assert not ok and elapsed < 2.0
        assert r.state.last_error_reason == "rate_limited", r.state.last_error
        assert "rate limit" in (r.state.last_error or "")
        waited = r.value("alvaria_emailqueue_rate_limit_wait_seconds_total")
        assert waited is not None and waited >= 0.5, "the wait cut short still counts"
        assert [e for e in r.logs if e["event"] == "poll_over_rate_limit"]
        assert upstream.calls["token"] == 1 and upstream.calls["emails"] == 0
