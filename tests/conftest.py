"""Shared test fixtures."""

from __future__ import annotations

import inspect
import types
from typing import Any

import aioresponses.core
from aiohttp import ClientResponse

# aioresponses 0.7.9 builds `ClientResponse` without the `stream_writer` argument that
# aiohttp >= 3.14 made mandatory ("TypeError: ... missing ... 'stream_writer'",
# pnuckowski/aioresponses#289). Supply a finished writer until a fixed aioresponses
# release exists, then drop this shim.
if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:

    class _CompatClientResponse(ClientResponse):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
            super().__init__(*args, **kwargs)

    aioresponses.core.ClientResponse = _CompatClientResponse  # type: ignore[attr-defined]
