"""The fields of an email read only when it is new: threadId, sentTime and receivedTime.

The handling KPIs read them once per email, at its first sight (repeat contacts, delivery lag,
the start of the customer's wait), so the lean page decoder leaves them out and a page that
holds new emails is decoded a second time for them alone: every other field is skipped, which
costs a fraction of the first decoding, and most pages of a steady queue hold no new email.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache, partial
from typing import Any, cast

import msgspec

from exporter.domain.models import Email
from exporter.upstream.decode import (
    _MALFORMED,
    _NOT_DECODED,
    WireEmail,
    _filled,
    _page_type,
    decode_page,
)
from exporter.upstream.transport import Body

# The `Email` fields decoded here (and queuedTime, the fallback of receivedTime).
FIRST_SIGHT_FIELDS = frozenset({"thread_id", "sent_time", "received_time"})
_READ: dict[str, Any] = {
    "thread_id": str | int | None,
    "sent_time": str | None,
    "received_time": str | None,
    "queued_time": str | None,
}
Details = Callable[[], Mapping[int, Email]]


def _item() -> type[WireEmail]:
    skipped = [name for name in WireEmail.__struct_fields__ if name not in _READ and name != "id"]
    fields: list[tuple[str, Any, Any]] = [
        ("id", int, msgspec.NODEFAULT),
        *((name, kind, None) for name, kind in _READ.items()),
        *((name, None, msgspec.field(default=None, name=_NOT_DECODED.format(name)))
          for name in skipped),
    ]  # fmt: skip
    item = msgspec.defstruct(
        "FirstSightEmail", fields, bases=(WireEmail,), kw_only=True, frozen=True, gc=False
    )
    return cast("type[WireEmail]", item)


@lru_cache(maxsize=8)
def _decoder(max_items: int) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(_page_type(_item(), max_items), strict=False)


def first_sight(body: Body, max_items: int) -> dict[int, Email]:
    """The first-sight fields of every email of a page the lean decoder accepted, by id."""
    try:
        decoded = _decoder(max_items).decode(body)
        items = _filled(decoded.items) if decoded.items is not None else []
        return {email.id: email for email in items}
    except (msgspec.ValidationError, *_MALFORMED):
        # An item of an odd shape (a number as sentTime...): decoded in full instead.
        page = decode_page(body, 0, max_items)
        return {email.id: email for email in page.emails if type(email.id) is int}


def deferred(body: Body, max_items: int) -> Details:
    """`first_sight` of this page, decoded when (and if) it is called."""
    return partial(first_sight, body, max_items)
