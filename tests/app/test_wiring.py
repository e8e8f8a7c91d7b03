"""The exporter's objects built from the settings (exporter.app.wiring)."""

from __future__ import annotations

import aiohttp
from pydantic import SecretStr

from exporter.app.wiring import build_poller
from exporter.polling.store import OrgState
from exporter.settings import Settings, TargetSettings
from exporter.upstream import decode


async def test_a_poller_is_built_with_the_decoders_of_its_first_poll() -> None:
    # build_poller runs in the start's (or the reload's) worker thread; what the first poll
    # would otherwise build on the event loop is built there.
    target = TargetSettings(org_id="acme", api_key=SecretStr("k"), access_token=SecretStr("t"))
    cfg = Settings(targets=(target,), page_size=911)
    decode._lean_decoder.cache_clear()
    async with aiohttp.ClientSession() as session:
        build_poller(target, cfg, session, OrgState("acme"), True)
    assert decode._lean_decoder.cache_info().currsize == 1
