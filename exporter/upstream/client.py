"""The EmailQueue API client: paging, concurrency, 401 handling and decoding to `Email`s.

Pages are yielded as they arrive so the caller can aggregate them and drop them; no list of
all items is ever held here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

from exporter.domain.errors import AuthError, InconsistentError
from exporter.upstream.auth import TokenProvider
from exporter.upstream.decode import Page, Shape, decode_page
from exporter.upstream.first_sight import deferred, first_sight
from exporter.upstream.transport import HttpTransport, status_error

__all__ = ["ClientOptions", "EmailQueueClient", "Page", "decode_page"]

EMAILS_PATH = "/via/v2/organizations/{org_id}/emailQueue/emails"
# Decoded by `EmailQueueClient.prepare`: its decoders are those of any page.
_EMPTY_PAGE = b'{"kind":"EmailList","totalItems":0,"items":[]}'


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What to ask the API for, and how hard to page."""

    page_size: int = 500
    max_concurrency: int = 4
    max_pages: int = 1000
    extended_info: bool = True
    email_type: str | None = None
    work_type_ids: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    # Decode workHandlerId/workHandlerName (only the per-agent gauge needs them).
    agent_fields: bool = True
    # Further optional item fields to decode (`decode.OPTIONAL_FIELDS`: what the enabled
    # handling KPIs read); the others are skipped. Those also in `first_sight_fields` are read
    # by a lean page's `details`, on demand, for new emails only (`upstream.first_sight`).
    extra_fields: frozenset[str] = frozenset()
    first_sight_fields: frozenset[str] = frozenset()


class EmailQueueClient:
    """Reads the whole email list of one organisation, page by page."""

    def __init__(
        self,
        *,
        api_url: str,
        org_id: str,
        api_key: str,
        auth: TokenProvider,
        transport: HttpTransport,
        options: ClientOptions,
    ) -> None:
        self._url = api_url.rstrip("/") + EMAILS_PATH.format(org_id=org_id)
        self._api_key = api_key
        self._auth = auth
        self._transport = transport
        self._options = options
        # How much of each item to decode: the leanest until a page needs more (see Shape).
        self._shape = Shape.DOCUMENTED

    def prepare(self) -> None:
        """Build the page decoders the first poll starts with (each built once and shared), so
        that poll does not: with 1,000 items a page they take tens of milliseconds, which on
        the event loop held up every request behind the first poll. Pure CPU work, for where
        that costs nothing (the pollers are built in a worker thread): an empty page is decoded
        the way the first page will be."""
        opts = self._options
        eager, deferred_fields = self._fields()
        shape, agents = self._shape, opts.agent_fields
        decode_page(_EMPTY_PAGE, 0, opts.page_size, shape=shape, agents=agents, extra=eager)
        if deferred_fields:
            first_sight(_EMPTY_PAGE, opts.page_size)

    def _fields(self) -> tuple[frozenset[str], frozenset[str]]:
        """The optional fields decoded with each page, and those read by its `details`."""
        opts = self._options
        deferred_fields = opts.extra_fields & opts.first_sight_fields
        return opts.extra_fields - deferred_fields, deferred_fields

    async def pages(self) -> AsyncGenerator[Page, None]:
        """Every page of the list; after the first, the rest concurrently, in completion order."""
        opts = self._options
        first = await self._fetch(0)
        if first.returned == 0 and first.total_items:
            raise InconsistentError(f"first page is empty but totalItems is {first.total_items}")
        yield first
        step = first.returned
        if step == 0:
            return
        if first.total_items is None:
            # aclosing: closing pages() must close the inner generator now, not at GC.
            async with aclosing(self._sequential(step)) as rest:
                async for page in rest:
                    yield page
            return
        starts = range(step, first.total_items, step)
        if len(starts) + 1 > opts.max_pages:
            raise InconsistentError(
                f"{first.total_items} items in pages of {step} exceed max_pages={opts.max_pages}"
            )
        async with aclosing(self._concurrent(starts)) as rest:
            async for page in rest:
                yield page

    async def _sequential(self, start: int) -> AsyncGenerator[Page, None]:
        """Paging without `totalItems`: continue until an empty page."""
        for _ in range(self._options.max_pages - 1):
            page = await self._fetch(start)
            yield page
            if page.returned == 0:
                return
            start += page.returned
        raise InconsistentError(f"list did not end within max_pages={self._options.max_pages}")

    async def _concurrent(self, starts: range) -> AsyncGenerator[Page, None]:
        limit = asyncio.Semaphore(self._options.max_concurrency)

        async def fetch(start: int) -> Page:
            async with limit:
                return await self._fetch(start)

        # Completed tasks are forgotten once their page is yielded: a list of every task would
        # keep every page, and so every email of the poll, alive until the last one arrived.
        done: asyncio.Queue[asyncio.Task[Page]] = asyncio.Queue()
        pending: set[asyncio.Task[Page]] = set()
        for start in starts:
            task = asyncio.create_task(fetch(start))
            task.add_done_callback(done.put_nowait)
            pending.add(task)
        step = starts.step
        first_short: int | None = None  # lowest start whose page came back short
        last_filled = 0  # highest start whose page had items
        try:
            for _ in starts:
                finished = await done.get()
                pending.discard(finished)
                page = finished.result()
                if page.returned < step and (first_short is None or page.start < first_short):
                    first_short = page.start
                if page.returned:
                    last_filled = max(last_filled, page.start)
                yield page
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # A list that shrank while paged ends early: short or empty pages only at the end.
        # A short page with items after it is a hole, and counting the rest would miss emails.
        if first_short is not None and last_filled > first_short:
            raise InconsistentError(
                f"page at startIndex {first_short} came back short but later pages had items"
            )

    async def page(self, start: int = 0) -> Page:
        """One page on its own (what `--check-connection` looks at)."""
        return await self._fetch(start)

    def _params(self, start: int) -> list[tuple[str, str]]:
        opts = self._options
        params = [
            ("startIndex", str(start)),
            ("maxResults", str(opts.page_size)),
            ("getExtendedInfo", "true" if opts.extended_info else "false"),
        ]
        if opts.email_type:
            params.append(("emailType", opts.email_type))
        params += [("workTypeId", wt) for wt in opts.work_type_ids]
        params += [("state", state) for state in opts.states]
        return params

    async def _fetch(self, start: int) -> Page:
        """One page; a 401 forces one token refresh and one retry."""
        for refreshed in (False, True):
            token = await self._auth.token()
            response = await self._transport.request(
                "emails",
                "GET",
                self._url,
                params=self._params(start),
                headers={
                    "x-api-key": self._api_key,
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/json",
                },
            )
            if response.status == 401 and not refreshed:
                self._auth.invalidate(token)
                continue
            break
        status = response.status
        if status in (401, 403):
            raise AuthError(f"emails endpoint refused the credentials ({status})", status=status)
        error = status_error("emails", status)
        if error is not None:
            raise error
        opts = self._options
        eager, deferred_fields = self._fields()
        page = decode_page(
            response.body,
            start,
            opts.page_size,
            shape=self._shape,
            agents=opts.agent_fields,
            extra=eager,
        )
        if deferred_fields and page.shape is not Shape.FULL:
            page.details = deferred(response.body, opts.page_size)
        # An upstream that sent an item of a fuller shape will send more: ask for that from
        # now on rather than decoding pages twice.
        self._shape = max(self._shape, page.shape)
        return page
