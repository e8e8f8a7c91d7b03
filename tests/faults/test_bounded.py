"""A hostile upstream: oversized pages, too many items, malformed data. Memory stays bounded and
every failure is one poll error with the right reason, never a traceback."""

from __future__ import annotations

import asyncio
import gc
import json
import mmap
import tracemalloc
import weakref
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import pytest
from aiohttp import web

from tests.fake_alvaria import TOKEN, FakeAlvaria, item
from tests.pipeline import Rig, rig

MiB = 1024 * 1024


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Only reference counting frees memory: what a cycle holds stays until the end."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def only_failure(r: Rig, reason: str) -> MutableMapping[str, Any]:
    """The one log event of a failed poll, checked to carry `reason` and no traceback."""
    events = [e for e in r.logs if e["event"] in ("poll", "poll_crashed")]
    assert len(events) == 1, events
    (event,) = events
    assert event["outcome"] == "failure" and event["reason"] == reason, event
    assert "exc_info" not in event
    r.logs.clear()
    return event


def endless_later_pages() -> FakeAlvaria:
    """Page 0 is fine and announces more pages; every later page is a 12.8 MiB body."""
    upstream = FakeAlvaria(items=[item(n) for n in range(3)], page_cap=3)

    async def endless(request: web.Request) -> web.StreamResponse:
        if request.query["startIndex"] == "0":
            return web.json_response({"totalItems": 15, "items": upstream.items})
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b'{"items": [' + b" " * (64 * 1024)
        try:
            for _ in range(200):
                await response.write(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    upstream.on_emails = endless
    return upstream


async def test_oversized_later_pages_do_not_pile_up_in_memory() -> None:
    # Each poll fails as `decode`, and what a failed poll read must be freed by reference
    # counting alone (a 1 MiB limit: the bodies are read on the heap).
    async with rig(endless_later_pages(), max_response_bytes=MiB) as r:
        with no_cyclic_gc():
            tracemalloc.start()
            try:
                after: list[int] = []
                for _ in range(12):
                    assert not (await r.poll())[0]
                    after.append(tracemalloc.get_traced_memory()[0])
            finally:
                tracemalloc.stop()
        assert r.state.poll_errors["decode"] == 12
        # What a poll leaves behind varies with the page that was in flight when it failed, so
        # compare the worst of two windows. Before the fix every failed poll kept its bodies
        # (about 1 MiB each), and the second window was ~6 MiB above the first.
        grown = max(after[8:]) - max(after[2:5])
        assert grown < MiB // 2, f"{grown / MiB:.1f} MiB more after six more failed polls"


async def test_large_bodies_are_mapped_and_unmapped_when_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Past READ_AT_ONCE a body is read into a private mapping, which must be gone (unmapped)
    # as soon as the poll that read it has failed.
    mappings: list[weakref.ref[mmap.mmap]] = []
    real = mmap.mmap

    def tracked(*args: Any) -> mmap.mmap:
        mapping = real(*args)
        mappings.append(weakref.ref(mapping))
        return mapping

    monkeypatch.setattr(mmap, "mmap", tracked)
    async with rig(endless_later_pages(), max_response_bytes=4 * MiB) as r:
        with no_cyclic_gc():
            for _ in range(3):
                assert not (await r.poll())[0]
                assert [m for m in mappings if m() is not None] == []
        assert r.state.poll_errors["decode"] == 3
    assert len(mappings) >= 3  # the large bodies did take the mapped path


async def test_a_page_with_more_items_than_asked_is_inconsistent() -> None:
    upstream = FakeAlvaria(items=[item(n) for n in range(3)], page_cap=3)

    async def flood(request: web.Request) -> web.StreamResponse:
        asked = int(request.query["maxResults"])
        text = '{"totalItems": 5, "items": [' + ",".join(["{}"] * (asked * 50 + 1)) + "]}"
        return web.Response(text=text, content_type="application/json")

    upstream.on_emails = flood
    async with rig(upstream) as r:
        assert not (await r.poll())[0]
        event = only_failure(r, "inconsistent")
        assert "more items than the 100 asked for" in event["error"]


def _page(text: bytes) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=text, content_type="application/json")

    return handler


async def poll_body(body: bytes, reason: str) -> MutableMapping[str, Any]:
    upstream = FakeAlvaria()
    upstream.on_emails = _page(body)
    async with rig(upstream) as r:
        ok, _ = await r.poll()
        assert not ok
        assert r.value("alvaria_emailqueue_up") == 0
        assert r.value("alvaria_emailqueue_poll_errors_total", reason=reason) == 1
        assert r.value("alvaria_emailqueue_poll_errors_total", reason="internal") == 0
        return only_failure(r, reason)


async def test_invalid_utf8_in_a_label_field_is_a_decode_error() -> None:
    event = await poll_body(
        b'{"totalItems": 1, "items": [{"id": "1", "state": "Q\xff\xfe"}]}', "decode"
    )
    assert "UTF-8" in event["error"]


async def test_invalid_utf8_in_an_item_of_the_wrong_shape_is_a_decode_error() -> None:
    body = b'{"items": [{"id": "1", "state": 3, "workTypeName": "\xc3("}]}'
    await poll_body(body, "decode")


async def test_deep_nesting_is_a_decode_error() -> None:
    body = (
        b'{"totalItems": 1, "items": [{"id": "1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    )
    event = await poll_body(body, "decode")
    assert "nested too deeply" in event["error"]


async def test_absurd_total_items_is_a_decode_error() -> None:
    body = json.dumps({"totalItems": 10**30, "items": [item(1)]}).encode()
    event = await poll_body(body, "decode")
    assert "totalItems" in event["error"]


async def test_a_token_with_a_line_break_is_an_auth_error() -> None:
    upstream = FakeAlvaria()

    async def smuggling(request: web.Request) -> web.StreamResponse:
        body = {"access_token": TOKEN + "\r\nX-Injected: 1", "expires_in": 3600}
        return web.json_response(body)

    upstream.on_token = smuggling
    async with rig(upstream) as r:
        assert not (await r.poll())[0]
        event = only_failure(r, "auth")
        assert "not allowed in a header" in event["error"]
        assert upstream.calls["emails"] == 0
