"""The aioresponses compatibility shim lets client tests run on current aiohttp."""

import aiohttp
from aioresponses import aioresponses


async def test_aioresponses_mocks_a_get() -> None:
    with aioresponses() as mocked:
        mocked.get("http://api.test/x", payload={"ok": True}, status=200)
        async with aiohttp.ClientSession() as session, session.get("http://api.test/x") as resp:
            assert resp.status == 200
            assert await resp.json() == {"ok": True}
