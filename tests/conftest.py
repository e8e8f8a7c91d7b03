"""Shared test fixtures."""

from __future__ import annotations

import inspect
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import aioresponses.core
import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses as mock_aiohttp

from tests.fakes import FakeSleep

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


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real client session (pair it with `mocked` to answer its requests)."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def mocked() -> Iterator[mock_aiohttp]:
    """Every aiohttp request in the test is answered by aioresponses."""
    with mock_aiohttp() as m:
        yield m


@pytest.fixture
def sleep() -> FakeSleep:
    """A sleep that returns at once and remembers how long it was asked to wait."""
    return FakeSleep()
