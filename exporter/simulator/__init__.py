"""A faithful fake of the Alvaria EmailQueue API, for the demo, the tests and the benchmarks.

It stands alone: it imports only `exporter.domain`, and only the app's demo wiring imports it.

Modules:
- ``__main__``: ``alvaria-emailqueue-simulator``, serving until SIGTERM or SIGINT
- ``app``: the aiohttp application: token and emails endpoints, auth checks, injected faults
- ``config``: the simulator's settings
- ``entities``: work types, agents and emails, and their API representation
- ``model``: a pure, event-driven queue model of a contact centre
- ``query``: the emails endpoint's query parameters, filters and the EmailList body
- ``ratelimit``: the gateway's rate limit per API key (``--rate-limit``), with its headers
- ``scenarios``: the named scenarios and the API faults each injects
- ``static``: the ``large`` scenario: a big queue generated once and served pre-encoded
- ``truth``: ground truth of the simulated queue (``GET /_sim/truth``)
- ``history``: the life of every simulated email, the handling KPIs' ground truth
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from .app import EMAILS_PATH, TOKEN_PATH, build_app
from .config import SimulatorConfig

__all__ = ["RunningSimulator", "SimulatorConfig", "build_app", "start_simulator"]


@dataclass
class RunningSimulator:
    """A simulator serving on a loopback port; `close()` stops it."""

    base_url: str
    token_url: str
    emails_url: str
    runner: web.AppRunner

    async def close(self) -> None:
        """Stop serving and release the port."""
        await self.runner.cleanup()


async def start_simulator(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Serve a simulator on `host:port` (0 = a free port) within the running event loop."""
    # Building a large queue takes seconds of CPU: keep the caller's event loop responsive.
    app = await asyncio.to_thread(build_app, config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    netloc = f"[{bound_host}]" if ":" in bound_host else bound_host
    base_url = f"http://{netloc}:{bound_port}"
    return RunningSimulator(
        base_url=base_url,
        token_url=base_url + TOKEN_PATH,
        emails_url=base_url + EMAILS_PATH.format(orgId=config.org_ids[0]),
        runner=runner,
    )
