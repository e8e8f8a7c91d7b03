"""Decoding one `EmailList` page into `Email`s, with memory bounded by the page asked for.

A page never holds more than the `maxResults` the client asked for: the items array is decoded
into a fixed-size, array-like struct of that many slots, so the decoder stops at the first item
past it (`InconsistentError`) instead of materialising millions of `{}` first. Only the fields
the aggregation needs are decoded; everything else is skipped without allocating. A body that
is not JSON, nests too deeply, holds invalid UTF-8 in a decoded field or carries an absurd
`totalItems` is a `DecodeError`, never an unexpected exception.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from functools import lru_cache
from operator import attrgetter
from typing import Annotated, Any, Literal, cast

import msgspec
from msgspec import UNSET, Raw, UnsetType

from exporter.domain.errors import DecodeError, InconsistentError
from exporter.domain.models import Email
from exporter.domain.names import EMAIL_TYPES, STATES
from exporter.upstream.transport import Body

LIST_KIND = "via#emailList"
# totalItems beyond this is not a count any server could page through (10^30 was seen).
MAX_TOTAL_ITEMS = 2**53
# The largest page the settings allow; the default bound of `decode_page`.
MAX_PAGE_ITEMS = 10_000
# `items` may be omitted from an empty list, but an object without items or totalItems (an
# error body sent with status 200, say) must not read as an empty queue.
_NOT_A_LIST = "response is not an email list (no items or totalItems)"
_LABEL_FIELDS = ("state", "emailType", "workTypeId", "workTypeName", "workHandlerId", "threadId")
_TEXT_FIELDS = (
    "workHandlerName",
    "queuedTime",
    "receivedTime",
    "startTime",
    "activeTime",
    "sentTime",
)
_ALL_FIELDS = ("id", *_LABEL_FIELDS, *_TEXT_FIELDS)
# What msgspec raises for input it cannot turn into values at all.
# (ValueError: Python refuses to turn integers of more than 4300 digits into text and back.)
_MALFORMED = (msgspec.DecodeError, UnicodeDecodeError, RecursionError, OverflowError, ValueError)


class Shape(IntEnum):
    """How much of an item the page decoder reads, from the least to the most.

    Alvaria's items fit the leanest; a client starts there, and once a page had an item that
    did not fit (an undocumented state, no work type name or queue time, an odd id), it asks
    for a fuller shape from then on. So besides the first pages that need each fuller shape,
    nothing is decoded twice, and a poll never costs more than decoding everything in full.
    """

    # Lean, and state and emailType among the documented values: msgspec hands out the same
    # string objects each time, whose hashes are known (about a tenth of a poll's CPU).
    DOCUMENTED = 0
    # A decimal id, a work type name and a zoned queuedTime required; the work type id, the
    # fallback timestamps and (unless asked) the agent fields not decoded.
    LEAN = 1
    # Every field the aggregation may read, nothing required.
    FULL = 2


@dataclass(slots=True)
class Page:
    """One decoded page: usable emails, skipped items by reason, and the API's totals."""

    start: int
    returned: int
    emails: list[Email]
    total_items: int | None = None
    invalid: Counter[str] = field(default_factory=Counter)
    # The shape to ask for from now on: the one asked for, or a fuller one if an item of this
    # page did not fit it (see `Shape`).
    shape: Shape = Shape.FULL
    size: int = 0  # bytes of the body it was decoded from
    # Fields a lean page left out, decoded on demand for its new emails (upstream.first_sight).
    details: Callable[[], Mapping[int, Email]] | None = None


_LOOSE_ITEM = msgspec.defstruct(
    "LooseEmail", [(name, Raw | UnsetType, UNSET) for name in _ALL_FIELDS], gc=False
)
# Timestamps with a zone, as the API sends them ("2019-04-15T18:41:40.874Z").
_Zoned = Annotated[datetime, msgspec.Meta(tz=True)]
# A work type name that is a label by itself (an empty one falls back to the id).
_Named = Annotated[str, msgspec.Meta(min_length=1)]


class WireEmail(Email, frozen=True, rename="camel", gc=False):
    """`Email` as the fast path decodes it (lax): ids that are decimal numbers arrive as ints,
    zoned timestamps as datetimes, both parsed by msgspec instead of Python code. An item it
    refuses ("007", a naive or odd timestamp) is decoded by the lenient path as text."""

    id: int | None = None  # narrower than Email's
    queued_time: _Zoned | None = None  # type: ignore[assignment]
    received_time: _Zoned | None = None  # type: ignore[assignment]
    start_time: _Zoned | None = None  # type: ignore[assignment]
    active_time: _Zoned | None = None  # type: ignore[assignment]
    sent_time: _Zoned | None = None  # type: ignore[assignment]


# What a lean item leaves out: keys no item carries, so msgspec skips the real ones.
_NOT_DECODED = "(not decoded: {})"
# The shape an item needs when a leaner one refused it for this field; any other refusal (an
# id like "007", a wrong-typed field) needs the full one.
_NEEDS = {"state": Shape.LEAN, "emailType": Shape.LEAN}
# The field a ValidationError names: "... field `queuedTime` - at ..." or "... at `$.items[3].state`".
_REFUSED = re.compile(r"field `(\w+)`|\.(\w+)`$")


# Fields a lean item leaves out unless asked for (`extra`); those the handling KPIs read at an
# email's first sight only are kept as text, parsed by the aggregation for new emails alone.
OPTIONAL_FIELDS: dict[str, Any] = {
    "work_type_id": str | None,
    "work_handler_id": str | None,
    "work_handler_name": str | None,
    "thread_id": str | None,
    "received_time": str | None,
    "sent_time": str | None,
    "start_time": str | None,
}
AGENT_FIELDS = frozenset({"work_handler_id", "work_handler_name"})


def _lean_item(extra: frozenset[str], documented: bool) -> type[WireEmail]:
    """`WireEmail` for complete items (a decimal id, a work type name and a zoned queuedTime,
    as Alvaria sends them): what the aggregation never reads of such an item is not decoded
    (the work type id, the fallback timestamps, the agent and handling fields unless named in
    `extra`), which saves a fifth of the decoding. `documented`: state and emailType are
    documented values."""
    labels: list[tuple[str, Any, Any]] = []
    if documented:
        labels = [("state", Literal[STATES] | None, None)]
        labels += [("email_type", Literal[EMAIL_TYPES] | None, None)]
    fields: list[tuple[str, Any, Any]] = [
        *labels,
        ("id", int, msgspec.NODEFAULT),
        ("work_type_name", _Named, msgspec.NODEFAULT),
        ("queued_time", _Zoned, msgspec.NODEFAULT),
        *((name, kind, None) for name, kind in OPTIONAL_FIELDS.items() if name in extra),
        *((name, None, msgspec.field(default=None, name=_NOT_DECODED.format(name)))
          for name in OPTIONAL_FIELDS if name not in extra),
    ]  # fmt: skip
    item = msgspec.defstruct(
        "LeanWireEmail", fields, bases=(WireEmail,), kw_only=True, frozen=True, gc=False
    )
    return cast("type[WireEmail]", item)


_WIRE = msgspec.json.Decoder(WireEmail, strict=False)
_ID = attrgetter("id")
_EMAIL = msgspec.json.Decoder(Email)
_LOOSE_EMAIL = msgspec.json.Decoder(_LOOSE_ITEM)
_SCALAR = msgspec.json.Decoder(str | int | float | bool | None)


def _slots(item: Any, count: int) -> Any:
    """An array-like struct of `count` optional `item`s: decoding stops at item `count` + 1."""
    fields = [(f"i{n}", item | UnsetType, UNSET) for n in range(count)]
    return msgspec.defstruct("Items", fields, array_like=True, forbid_unknown_fields=True, gc=False)


def _page_type(item: type[WireEmail], max_items: int) -> Any:
    return msgspec.defstruct(
        "EmailList",
        [
            ("kind", str | None, None),
            ("total_items", int | None, None),
            ("items", _slots(item, max_items) | None, None),
        ],
        rename="camel",
    )


@lru_cache(maxsize=16)
def _lean_decoder(
    max_items: int, extra: frozenset[str], documented: bool
) -> msgspec.json.Decoder[Any]:
    item = _lean_item(extra, documented)
    return msgspec.json.Decoder(_page_type(item, max_items), strict=False)


@lru_cache(maxsize=8)
def _decoders(max_items: int) -> tuple[msgspec.json.Decoder[Any], msgspec.json.Decoder[Any]]:
    """The typed page decoder, and the raw one for pages it refused, for `max_items` per page."""
    typed = _page_type(WireEmail, max_items)
    # Every field raw, items one by one: a wrong-typed item costs only itself.
    loose = msgspec.defstruct(
        "LooseEmailList",
        [
            ("kind", Raw | UnsetType, UNSET),
            ("totalItems", Raw | UnsetType, UNSET),
            ("items", _slots(Raw, max_items) | None | UnsetType, UNSET),
        ],
    )
    return msgspec.json.Decoder(typed, strict=False), msgspec.json.Decoder(loose)


def _filled(slots: Any) -> list[Any]:
    """The items of an array-like slots struct (they fill a prefix of its slots)."""
    values = msgspec.structs.astuple(slots)
    low, high = 0, len(values)
    while low < high:
        mid = (low + high) // 2
        if values[mid] is UNSET:
            high = mid
        else:
            low = mid + 1
    return list(values[:low])


def _too_many(exc: msgspec.ValidationError, max_items: int) -> InconsistentError | None:
    if "at most length" in str(exc):
        return InconsistentError(f"page carries more items than the {max_items} asked for")
    return None


def decode_page(
    body: Body,
    start: int = 0,
    max_items: int = MAX_PAGE_ITEMS,
    *,
    shape: Shape = Shape.FULL,
    agents: bool = True,
    extra: frozenset[str] = frozenset(),
) -> Page:
    """Decode an `EmailList` body; items of the wrong shape are counted, not fatal.

    `shape` says how much of each item to read (`Shape`); the lean shapes decode the
    `OPTIONAL_FIELDS` named in `extra` (and the agent fields when `agents`) and skip the
    others. A page a lean shape refuses is decoded again in a fuller one, and `Page.shape`
    says which to ask for next. Whatever the shape, the page holds the same usable emails.
    """
    fields = extra | AGENT_FIELDS if agents else extra
    page = _decode(body, start, max_items, shape, frozenset(fields & OPTIONAL_FIELDS.keys()))
    page.size = len(body)
    return page


def _decode(body: Body, start: int, max_items: int, shape: Shape, extra: frozenset[str]) -> Page:
    if shape is Shape.FULL:
        return _full(body, start, max_items)
    try:
        decoder = _lean_decoder(max_items, extra, shape is Shape.DOCUMENTED)
        decoded = decoder.decode(body)
    except msgspec.ValidationError as exc:
        if (error := _too_many(exc, max_items)) is not None:
            raise error from None
        refused = _REFUSED.search(str(exc))
        name = next(filter(None, refused.groups()), "") if refused else ""
        fuller = max(_NEEDS.get(name, Shape.FULL), Shape(shape + 1))
        return _decode(body, start, max_items, fuller, extra)
    except _MALFORMED as exc:
        raise _malformed(exc) from None
    if decoded.items is None and decoded.total_items is None:
        page = _full(body, start, max_items)  # not a list, or an empty one: decoded in full
    else:
        page = _typed_page(decoded, start, lean=True)
    page.shape = shape
    return page


def _full(body: Body, start: int, max_items: int) -> Page:
    typed, _ = _decoders(max_items)
    try:
        decoded = typed.decode(body)
    except msgspec.ValidationError as exc:
        if (error := _too_many(exc, max_items)) is not None:
            raise error from None
        return _decode_leniently(body, start, max_items)
    except _MALFORMED as exc:
        raise _malformed(exc) from None
    if decoded.items is None and decoded.total_items is None and decoded.kind != LIST_KIND:
        return _decode_leniently(body, start, max_items)  # tells a missing key from a null one
    return _typed_page(decoded, start, lean=False)


def _typed_page(decoded: Any, start: int, *, lean: bool) -> Page:
    """The page of a body the typed (or lean) decoder accepted."""
    total = decoded.total_items
    _check_total(total)
    emails = _filled(decoded.items) if decoded.items is not None else []
    page = Page(start, len(emails), emails, total)
    # Well-typed items can still lack an id (the typed decoder's ids are ints or None; the lean
    # one's always ints); drop them here as the slow path does. `None in map(...)` runs in C.
    if not lean and None in map(_ID, emails):
        page.emails = [email for email in emails if email.id is not None]
        page.invalid["missing_id"] = len(emails) - len(page.emails)
    return page


def _malformed(exc: BaseException) -> DecodeError:
    """The one-line reason for a body that is not usable JSON."""
    if isinstance(exc, RecursionError):
        return DecodeError("response is nested too deeply")
    # msgspec 0.23 and later raise a DecodeError naming UTF-8 where earlier ones raised this.
    if isinstance(exc, UnicodeDecodeError) or "UTF-8" in str(exc):
        return DecodeError("response holds invalid UTF-8")
    return DecodeError("response is not valid JSON")


def _check_total(total: int | None) -> None:
    if total is not None and not 0 <= total <= MAX_TOTAL_ITEMS:
        raise DecodeError(
            f"response totalItems is not a usable count (outside 0..{MAX_TOTAL_ITEMS})"
        )


def _decode_leniently(body: Body, start: int, max_items: int) -> Page:
    """Slow path for a body that is JSON but not quite an `EmailList`; still never unbounded."""
    try:
        envelope = _decoders(max_items)[1].decode(body)
    except msgspec.ValidationError as exc:
        if (error := _too_many(exc, max_items)) is not None:
            raise error from None
        if str(exc).endswith("`$.items`"):
            raise DecodeError("response field items is not a list") from None
        raise DecodeError("response is not a JSON object") from None
    except _MALFORMED as exc:
        raise _malformed(exc) from None
    kind = _scalar(envelope.kind)
    if envelope.items is UNSET and envelope.totalItems is UNSET and kind != LIST_KIND:
        raise DecodeError(_NOT_A_LIST)
    total = _scalar(envelope.totalItems)
    if isinstance(total, bool) or not isinstance(total, int):
        total = None
    _check_total(total)
    raw_items: list[Raw] = []
    if envelope.items is not None and envelope.items is not UNSET:
        raw_items = _filled(envelope.items)
    page = Page(start, len(raw_items), [], total)
    try:
        for raw in raw_items:
            email, reason = _item(raw)
            if email is None:
                page.invalid[reason] += 1
            else:
                page.emails.append(email)
    except _MALFORMED as exc:
        raise _malformed(exc) from None
    return page


def _item(raw: Raw) -> tuple[Email | None, str]:
    """One item: typed when it can be, else field by field; wrong-typed fields count as missing."""
    for decoder in (_WIRE, _EMAIL):
        try:
            email: Email = decoder.decode(raw)
        except msgspec.ValidationError:
            continue
        if email.id is None or email.id == "":
            return None, "missing_id"
        return email, ""
    try:
        loose = _LOOSE_EMAIL.decode(raw)
    except msgspec.ValidationError:
        return None, "not_object"
    values = {name: _scalar(getattr(loose, name)) for name in _ALL_FIELDS}
    email_id = _label_value(values["id"])
    if email_id is None:
        return None, "missing_id"
    labels = {name: _label_value(values[name]) for name in _LABEL_FIELDS}
    texts = {name: v if isinstance(v := values[name], str) else None for name in _TEXT_FIELDS}
    return msgspec.convert({"id": email_id, **labels, **texts}, Email), ""


def _scalar(raw: Raw | UnsetType) -> Any:
    """A raw JSON value if it is a scalar; None for objects, arrays and absent fields."""
    if raw is UNSET:
        return None
    try:
        return _SCALAR.decode(raw)
    except msgspec.ValidationError:
        return None


def _label_value(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**30:
        return str(value)
    return None
