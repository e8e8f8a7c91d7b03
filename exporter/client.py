"""The EmailQueue API client: paging, concurrency, 401 handling and decoding to `Email`s.

Pages are yielded as they arrive so the caller can aggregate them and drop them; no list of
all items is ever held here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import msgspec

from exporter.auth import TokenProvider
from exporter.errors import AuthError, ClientHTTPError, DecodeError, InconsistentError
from exporter.http import HttpTransport
from exporter.models import Email

EMAILS_PATH = "/via/v2/organizations/{org_id}/emailQueue/emails"


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


@dataclass(slots=True)
class Page:
    """One decoded page: usable emails, skipped items by reason, and the API's totals."""

    start: int
    returned: int
    emails: list[Email]
    total_items: int | None = None
    invalid: Counter[str] = field(default_factory=Counter)


class _EmailList(msgspec.Struct, rename="camel"):
    kind: str | None = None
    total_items: int | None = None
    items: list[Email] | None = None


_LIST_DECODER = msgspec.json.Decoder(_EmailList)
_ANY_DECODER = msgspec.json.Decoder()
_LABEL_FIELDS = ("state", "emailType", "workTypeId", "workTypeName", "workHandlerId")
_TEXT_FIELDS = ("workHandlerName", "queuedTime", "receivedTime", "startTime")
# `items` may be omitted from an empty list, but an object without items or totalItems (an
# error body sent with status 200, say) must not read as an empty queue.
_NOT_A_LIST = "response is not an email list (no items or totalItems)"
LIST_KIND = "via#emailList"


def decode_page(body: bytes, start: int = 0) -> Page:
    """Decode an `EmailList` body; items of the wrong shape are counted, not fatal."""
    try:
        decoded = _LIST_DECODER.decode(body)
    except msgspec.ValidationError:
        return _decode_leniently(body, start)
    except msgspec.DecodeError as exc:
        raise DecodeError("response is not valid JSON") from exc
    if decoded.items is None and decoded.total_items is None:
        if decoded.kind != LIST_KIND:
            return _decode_leniently(body, start)  # tells a missing key from a null one
    emails = decoded.items or []
    page = Page(start, len(emails), emails, decoded.total_items)
    # Well-typed items can still lack an id; drop them here as the slow path does.
    if any(email.id is None or email.id == "" for email in emails):
        page.emails = [email for email in emails if email.id is not None and email.id != ""]
        page.invalid["missing_id"] = len(emails) - len(page.emails)
    return page


def _decode_leniently(body: bytes, start: int) -> Page:
    """Slow path for a body that is JSON but not quite an `EmailList`."""
    try:
        data = _ANY_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        # The typed decoder can stop at a wrong type before it reaches broken JSON.
        raise DecodeError("response is not valid JSON") from exc
    if not isinstance(data, dict):
        raise DecodeError("response is not a JSON object")
    if not {"items", "totalItems"} & data.keys() and data.get("kind") != LIST_KIND:
        raise DecodeError(_NOT_A_LIST)
    items = data.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise DecodeError("response field items is not a list")
    total = data.get("totalItems")
    if isinstance(total, bool) or not isinstance(total, int):
        total = None
    page = Page(start, len(items), [], total)
    for item in items:
        if not isinstance(item, dict):
            page.invalid["not_object"] += 1
            continue
        email = _coerce(item)
        if email is None:
            page.invalid["missing_id"] += 1
        else:
            page.emails.append(email)
    return page


def _coerce(item: Mapping[str, Any]) -> Email | None:
    """An `Email` from a loosely typed item; fields of the wrong type count as missing."""
    email_id = _scalar(item.get("id"))
    if email_id is None:
        return None
    fields = {name: _scalar(item.get(name)) for name in _LABEL_FIELDS}
    texts = {name: v if isinstance(v := item.get(name), str) else None for name in _TEXT_FIELDS}
    return msgspec.convert({"id": email_id, **fields, **texts}, Email)


def _scalar(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


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
        if status != 200:
            raise ClientHTTPError(f"emails endpoint answered {status}", status=status)
        return decode_page(response.body, start)
