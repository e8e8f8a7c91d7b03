"""EmailQueueClient: paging, concurrency, 401/403/404 handling, query parameters, decoding."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from exporter.domain.errors import AuthError, ClientHTTPError, DecodeError, InconsistentError
from exporter.domain.models import Email
from exporter.upstream import client as client_module
from exporter.upstream import decode, first_sight
from exporter.upstream.auth import (
    ClientCredentials,
    ClientCredentialsConfig,
    StaticToken,
    TokenProvider,
)
from exporter.upstream.client import ClientOptions, EmailQueueClient, Page, decode_page
from exporter.upstream.decode import Shape, WireEmail
from exporter.upstream.transport import HttpTransport
from tests.fake_alvaria import FakeAlvaria, Reply
from tests.fakes import FakeSleep

API = "http://api.test"
TOKEN_URL = "http://id.test/token"


def item(n: int) -> dict[str, Any]:
    """An EmailItem as the API sends it, personal fields included."""
    return {
        "id": str(n),
        "umId": f"01-{n}",
        "workTypeId": "111",
        "workHandlerId": "agent-1",
        "queuedTime": "2019-04-15T18:41:40.874Z",
        "state": "Queued",
        "emailType": "InboundEmail",
        "fromAddress": "customer@example.com",
        "toAddress": "service01@example.com",
        "subject": "Follow-up",
        "workHandlerName": "doe, jane",
        "workTypeName": "Service01",
    }


def fake(n: int, cap: int, *, with_total: bool = True) -> FakeAlvaria:
    """The emails endpoint over `n` items with a server-side page cap, and its token endpoint."""
    return FakeAlvaria(
        items=[item(i) for i in range(n)],
        page_cap=cap,
        report_total=with_total,
        org="org1",
        api_key="the-api-key",
        client_id="c",
        client_secret="s",
        token_format="token-{n}",
        accepted={"static"},
    )


def serve(mocked: aioresponses, api: FakeAlvaria) -> FakeAlvaria:
    return api.mock(mocked, API, TOKEN_URL)


def refuse(status: int) -> Reply:
    return Reply.json(status, {"code": 1})


def urls(api: FakeAlvaria) -> list[URL]:
    return [seen.url for seen in api.emails_seen]


def make_client(
    session: aiohttp.ClientSession,
    sleep: FakeSleep,
    auth: TokenProvider | None = None,
    **options: Any,
) -> EmailQueueClient:
    transport = HttpTransport(session, sleep=sleep, rand=lambda: 1.0, clock=lambda: 0.0)
    return EmailQueueClient(
        api_url=API + "/",
        org_id="org1",
        api_key="the-api-key",
        auth=auth or StaticToken("static"),
        transport=transport,
        options=ClientOptions(**options),
    )


def credentials(session: aiohttp.ClientSession, sleep: FakeSleep) -> ClientCredentials:
    config = ClientCredentialsConfig(
        token_url=TOKEN_URL, client_id="c", client_secret="s", api_key="the-api-key"
    )
    return ClientCredentials(config, HttpTransport(session, sleep=sleep), clock=lambda: 0.0)


async def collect(client: EmailQueueClient) -> list[Page]:
    return [page async for page in client.pages()]


def ids(pages: list[Page]) -> list[str]:
    return [str(email.id) for page in pages for email in page.emails]


# --- paging ----------------------------------------------------------------------------------


async def test_server_cap_below_page_size_delivers_every_item_once(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = serve(mocked, fake(50, cap=7))
    pages = await collect(make_client(session, sleep, page_size=500, max_concurrency=3))
    assert Counter(ids(pages)) == Counter(str(i) for i in range(50))
    assert api.starts[0] == 0
    assert sorted(api.starts) == [0, 7, 14, 21, 28, 35, 42, 49]
    assert sorted(page.start for page in pages) == sorted(api.starts)
    assert all(url.query["maxResults"] == "500" for url in urls(api))
    assert api.max_in_flight == 3
    assert pages[0].total_items == 50
    assert [p.returned for p in sorted(pages, key=lambda p: p.start)] == [7] * 7 + [1]


async def test_concurrency_limit_of_one_is_sequential(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = serve(mocked, fake(20, cap=5))
    pages = await collect(make_client(session, sleep, max_concurrency=1))
    assert sorted(ids(pages), key=int) == [str(i) for i in range(20)]
    assert api.max_in_flight == 1


async def test_page_size_is_the_step_when_the_server_honours_it(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = serve(mocked, fake(25, cap=1000))
    pages = await collect(make_client(session, sleep, page_size=10))
    assert sorted(api.starts) == [0, 10, 20]
    assert len(ids(pages)) == 25


async def test_without_total_items_pages_run_sequentially_until_an_empty_page(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = serve(mocked, fake(50, cap=7, with_total=False))
    pages = await collect(make_client(session, sleep, max_concurrency=4))
    assert sorted(ids(pages), key=int) == [str(i) for i in range(50)]
    assert api.starts == [0, 7, 14, 21, 28, 35, 42, 49, 50]
    assert api.max_in_flight == 1
    assert pages[-1].returned == 0
    assert all(page.total_items is None for page in pages)


@pytest.mark.parametrize("with_total", [True, False])
async def test_empty_list_takes_one_request(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep, with_total: bool
) -> None:
    api = serve(mocked, fake(0, cap=7, with_total=with_total))
    pages = await collect(make_client(session, sleep))
    assert api.starts == [0]
    assert [(p.returned, p.emails) for p in pages] == [(0, [])]
    assert pages[0].total_items == (0 if with_total else None)


async def test_empty_first_page_with_items_reported_is_inconsistent(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = fake(5, cap=7)
    api.page_sizes = {0: 0}
    serve(mocked, api)
    with pytest.raises(InconsistentError):
        await collect(make_client(session, sleep))


async def test_a_list_that_shrank_while_paged_ends_early_without_error(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = fake(20, cap=5)
    api.page_sizes = {10: 2, 15: 0}  # the list shrank while it was paged
    serve(mocked, api)
    pages = await collect(make_client(session, sleep))
    assert sum(p.returned for p in pages) == 12


async def test_a_hole_in_the_middle_of_the_list_is_inconsistent(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = fake(20, cap=5)
    api.page_sizes = {5: 0}  # a hole in the middle
    serve(mocked, api)
    with pytest.raises(InconsistentError, match="startIndex 5"):
        await collect(make_client(session, sleep))


async def test_too_many_pages_is_inconsistent(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = serve(mocked, fake(50, cap=7))
    with pytest.raises(InconsistentError) as info:
        await collect(make_client(session, sleep, max_pages=7))
    assert info.value.reason == "inconsistent"
    assert api.starts == [0]  # decided from totalItems, before fetching the rest


async def test_exactly_max_pages_is_fine(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    serve(mocked, fake(50, cap=7))
    assert len(await collect(make_client(session, sleep, max_pages=8))) == 8


async def test_too_many_pages_without_total_items_is_inconsistent(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = serve(mocked, fake(50, cap=7, with_total=False))
    with pytest.raises(InconsistentError):
        await collect(make_client(session, sleep, max_pages=5))
    assert api.calls["emails"] == 5


async def test_a_failing_page_cancels_the_others(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = serve(mocked, fake(100, cap=10))
    api.emails_script[2] = refuse(404)
    with pytest.raises(ClientHTTPError):
        await collect(make_client(session, sleep, max_concurrency=2))
    assert api.calls["emails"] < 10
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_stopping_early_cancels_pending_pages(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    serve(mocked, fake(100, cap=10))
    pages = make_client(session, sleep, max_concurrency=2).pages()
    await anext(pages)
    await anext(pages)
    await pages.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_5xx_page_is_retried(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = serve(mocked, fake(10, cap=5))
    api.emails_script[1] = refuse(503)
    pages = await collect(make_client(session, sleep))
    assert sorted(ids(pages), key=int) == [str(i) for i in range(10)]
    assert sleep.delays == [0.5]


# --- 401, 403, 404 ---------------------------------------------------------------------------


async def test_401_refreshes_the_token_once_and_retries(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    sleep: FakeSleep,
) -> None:
    api = serve(mocked, fake(3, cap=10))
    api.rejected.add("token-1")
    auth = credentials(session, sleep)
    pages = await collect(make_client(session, sleep, auth=auth))
    assert ids(pages) == ["0", "1", "2"]
    assert api.calls["token"] == 2
    assert [seen.headers["Authorization"] for seen in api.emails_seen] == [
        "Bearer token-1",
        "Bearer token-2",
    ]


async def test_401_on_concurrent_pages_costs_one_token_request(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    sleep: FakeSleep,
) -> None:
    api = serve(mocked, fake(40, cap=5))
    auth = credentials(session, sleep)
    client = make_client(session, sleep, auth=auth, max_concurrency=4)
    pages = client.pages()
    first = await anext(pages)
    api.rejected.add("token-1")  # expires while the other pages are in flight
    rest = [page async for page in pages]
    assert len(ids([first, *rest])) == 40
    assert api.calls["token"] == 2


async def test_401_after_refresh_is_an_auth_error(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    sleep: FakeSleep,
) -> None:
    api = serve(mocked, fake(3, cap=10))
    api.rejected |= {"token-1", "token-2"}
    with pytest.raises(AuthError) as info:
        await collect(make_client(session, sleep, auth=credentials(session, sleep)))
    assert info.value.status == 401
    assert info.value.reason == "auth"
    assert api.calls["token"] == 2
    assert api.calls["emails"] == 2


async def test_401_with_a_static_token_is_an_auth_error(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = serve(mocked, fake(3, cap=10))
    api.rejected.add("static")
    with pytest.raises(AuthError):
        await collect(make_client(session, sleep))
    assert api.calls["emails"] == 2


async def test_403_is_an_auth_error_without_refresh(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    sleep: FakeSleep,
) -> None:
    api = serve(mocked, fake(3, cap=10))
    api.emails_script[0] = refuse(403)
    with pytest.raises(AuthError) as info:
        await collect(make_client(session, sleep, auth=credentials(session, sleep)))
    assert info.value.status == 403
    assert api.calls["token"] == 1
    assert api.calls["emails"] == 1


@pytest.mark.parametrize("status", [400, 404, 405])
async def test_other_4xx_is_a_client_http_error(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep, status: int
) -> None:
    api = serve(mocked, fake(3, cap=10))
    api.emails_script[0] = refuse(status)
    with pytest.raises(ClientHTTPError) as info:
        await collect(make_client(session, sleep))
    assert info.value.status == status
    assert info.value.reason == "http_4xx"
    assert api.calls["emails"] == 1


# --- query parameters and headers ------------------------------------------------------------


async def test_filters_and_extended_info_are_query_parameters(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = serve(mocked, fake(1, cap=10))
    client = make_client(
        session,
        sleep,
        page_size=250,
        email_type="InboundEmail",
        work_type_ids=("111", "222"),
        states=("Queued", "Queued2"),
    )
    await collect(client)
    (url,) = urls(api)
    assert url.path == "/via/v2/organizations/org1/emailQueue/emails"
    assert url.query["startIndex"] == "0"
    assert url.query["maxResults"] == "250"
    assert url.query["getExtendedInfo"] == "true"
    assert url.query["emailType"] == "InboundEmail"
    assert url.query.getall("workTypeId") == ["111", "222"]
    assert url.query.getall("state") == ["Queued", "Queued2"]
    (headers,) = [seen.headers for seen in api.emails_seen]
    assert headers["x-api-key"] == "the-api-key"
    assert headers["Authorization"] == "Bearer static"
    assert headers["Accept"] == "application/json"


async def test_no_filters_by_default_and_extended_info_can_be_off(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    api = serve(mocked, fake(1, cap=10))
    await collect(make_client(session, sleep, extended_info=False))
    (url,) = urls(api)
    assert url.query["getExtendedInfo"] == "false"
    assert set(url.query) == {"startIndex", "maxResults", "getExtendedInfo"}


# --- decode_page -----------------------------------------------------------------------------


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def test_decode_valid_page() -> None:
    page = decode_page(body(kind="via#emailList", totalItems=2, items=[item(1), item(2)]), 10)
    assert (page.start, page.returned, page.total_items) == (10, 2, 2)
    assert not page.invalid
    first = page.emails[0]
    # The fast path parses decimal ids and zoned timestamps itself.
    assert first == WireEmail(
        id=1,
        state="Queued",
        email_type="InboundEmail",
        work_type_id="111",
        work_type_name="Service01",
        work_handler_id="agent-1",
        work_handler_name="doe, jane",
        queued_time=datetime(2019, 4, 15, 18, 41, 40, 874000, tzinfo=UTC),
    )
    assert isinstance(first, Email)


def test_ids_and_timestamps_the_fast_path_refuses_are_kept_as_text() -> None:
    raw = [{"id": "007", "queuedTime": "2019-04-15T18:41:40"}, {"id": "8", "queuedTime": "x"}]
    page = decode_page(body(items=raw))
    assert [(e.id, e.queued_time) for e in page.emails] == [
        ("007", "2019-04-15T18:41:40"),
        ("8", "x"),
    ]


@pytest.mark.parametrize("raw", [item(1), {"id": "1", "state": 3, "queuedTime": 1555353700}])
def test_personal_fields_are_never_decoded(raw: dict[str, Any]) -> None:
    (email,) = decode_page(body(items=[raw])).emails
    for name in ("fromAddress", "from_address", "subject", "umId", "um_id", "toAddress"):
        assert not hasattr(email, name)


def test_items_missing_or_null_is_an_empty_page() -> None:
    for raw in (body(totalItems=0), body(items=None)):
        page = decode_page(raw)
        assert (page.returned, page.emails) == (0, [])


@pytest.mark.parametrize(
    "raw",
    [
        body(items={"id": "1"}),
        body(items="nope"),
        b"[]",
        b'"text"',
        b"42",
        b"null",
        b"<html>502 Bad Gateway</html>",
        b"",
        b'{"items": [',
        # The typed decoder meets a wrong type first, then the JSON breaks.
        b'[{"id": "1"}',
        b'{"totalItems": "x", "items": [',
        b'{"items": [{"id": "1", "state": 3}], bad',
    ],
)
def test_undecodable_bodies_are_decode_errors(raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_page(raw)
    assert info.value.reason == "decode"


def test_invalid_items_are_counted_and_the_rest_kept() -> None:
    items: list[Any] = [item(1), "x", 7, None, [], {"state": "Queued"}, {"id": ""}, item(2)]
    page = decode_page(body(totalItems=8, items=items))
    assert page.returned == 8  # the paging step counts every item the API returned
    assert ids([page]) == ["1", "2"]
    assert page.invalid == Counter(not_object=4, missing_id=2)
    assert page.total_items == 8


def test_item_without_id_in_an_otherwise_valid_page_is_counted() -> None:
    page = decode_page(body(items=[item(1), {"state": "Queued"}, {"id": None}]))
    assert ids([page]) == ["1"]
    assert page.invalid == Counter(missing_id=2)
    assert page.returned == 3


def test_wrong_field_types_are_lenient() -> None:
    raw = {
        "id": 42,
        "state": 3,
        "emailType": None,
        "workTypeId": 111,
        "workTypeName": ["x"],
        "queuedTime": 1555353700,
        "receivedTime": "2019-04-15T18:41:40.000Z",
        "workHandlerName": {"first": "jane"},
    }
    page = decode_page(body(totalItems="lots", items=[raw, item(2)]))
    assert not page.invalid
    assert page.total_items is None
    email = page.emails[0]
    assert email.id == "42"
    assert email.state == "3"
    assert email.email_type is None
    assert email.work_type_id == "111"
    assert email.work_type_name is None
    assert email.queued_time is None
    assert email.received_time == "2019-04-15T18:41:40.000Z"
    assert email.work_handler_name is None
    assert page.emails[1].id == 2  # a well-typed item keeps the fast path's parsing


def test_unknown_fields_are_ignored() -> None:
    raw = {**item(1), "somethingNew": {"nested": [1, 2]}, "priority": 5}
    page = decode_page(body(items=[raw], lastIndexReturned=0, version="20.0", extra=True))
    assert ids([page]) == ["1"]
    assert not page.invalid


def test_boolean_total_items_is_ignored() -> None:
    assert decode_page(body(totalItems=True, items=[{"id": "1", "state": 3}])).total_items is None


async def test_the_client_asks_for_a_fuller_shape_once_an_item_needs_it(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    sleep: FakeSleep,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = serve(mocked, fake(20, cap=5))
    api.items[7]["state"] = "Parked"  # an undocumented state
    api.items[12]["workTypeName"] = None  # an item without its work type name
    asked: list[Shape] = []
    real = client_module.decode_page

    def recording(*args: Any, shape: Shape = Shape.FULL, **kwargs: Any) -> Page:
        asked.append(shape)
        return real(*args, shape=shape, **kwargs)

    monkeypatch.setattr(client_module, "decode_page", recording)
    client = make_client(session, sleep, page_size=5, max_concurrency=1)
    pages = await collect(client)
    assert sorted(ids(pages), key=int) == [str(i) for i in range(20)]
    by_id = {email.id: email for page in pages for email in page.emails}
    assert by_id[7].state == "Parked" and by_id[12].work_type_id == "111"
    # Each page asks for the shape the pages before it needed; the next poll starts there.
    assert asked == [Shape.DOCUMENTED, Shape.DOCUMENTED, Shape.LEAN, Shape.FULL]
    asked.clear()
    await collect(client)
    assert asked == [Shape.FULL] * 4


async def test_prepare_builds_the_decoders_of_the_first_poll(
    session: aiohttp.ClientSession, mocked: aioresponses, sleep: FakeSleep
) -> None:
    # Pollers are built in a worker thread and prepare their client there: the first poll, on
    # the event loop, must find its page decoders built (1,000 slots each: tens of ms).
    serve(mocked, fake(20, cap=10))
    fields = frozenset({"thread_id", "sent_time", "received_time"})
    client = make_client(session, sleep, page_size=733, extra_fields=fields,
                         first_sight_fields=fields)  # fmt: skip
    built = [decode._lean_decoder, decode._decoders, first_sight._decoder]
    for cached in built:
        cached.cache_clear()
    client.prepare()
    prepared = [cached.cache_info().misses for cached in built]
    assert prepared[0] == prepared[2] == 1
    pages = await collect(client)
    details = {n for page in pages if page.details for n in page.details()}
    assert len(details) == 20  # the first-sight fields were decoded too
    assert [cached.cache_info().misses for cached in built] == prepared
