"""Query parameters of the emails endpoint: validation, filters and the EmailList body."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import msgspec
from multidict import MultiMapping

from exporter.domain.names import EMAIL_TYPES, STATES

from .entities import Email, to_item

API_VERSION: Final = "20.0"
_ENCODER: Final = msgspec.json.Encoder()


class BadParameter(ValueError):
    """A query parameter the API would reject with 400."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True, slots=True)
class Filters:
    """The item filters of a request; hashable, so results can be cached by it."""

    email_type: str | None = None
    um_id: str | None = None
    work_type_ids: frozenset[str] = frozenset()
    work_handler_id: str | None = None
    states: frozenset[str] = frozenset()

    def matcher(self) -> re.Pattern[str] | None:
        """The umId pattern: `*` matches any run of characters, everything else itself."""
        if self.um_id is None:
            return None
        return re.compile(".*".join(re.escape(part) for part in self.um_id.split("*")))

    def select(self, emails: Iterable[Email]) -> list[Email]:
        """The emails that pass every filter, in their given order."""
        pattern = self.matcher()
        return [
            e
            for e in emails
            if (self.email_type is None or e.email_type == self.email_type)
            and (not self.states or e.state in self.states)
            and (not self.work_type_ids or e.work_type_id in self.work_type_ids)
            and (
                self.work_handler_id is None
                or (e.agent is not None and e.agent.id == self.work_handler_id)
            )
            and (pattern is None or pattern.fullmatch(e.um_id) is not None)
        ]


@dataclass(frozen=True, slots=True)
class Query:
    """A validated emails request."""

    start: int = 0
    max_results: int | None = None
    extended: bool = False
    filters: Filters = Filters()


def _int(params: MultiMapping[str], name: str, minimum: int) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(
            name, f"Invalid value '{raw}' for parameter {name}: not an integer"
        ) from None
    if value < minimum:
        raise BadParameter(
            name, f"Invalid value '{raw}' for parameter {name}: must be >= {minimum}"
        )
    return value


def _many(params: MultiMapping[str], name: str) -> list[str]:
    # Arrays arrive repeated (`state=A&state=B`) or comma-separated (`state=A,B`).
    return [v.strip() for raw in params.getall(name, []) for v in raw.split(",") if v.strip()]


def _enum(name: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    for value in values:
        if value not in allowed:
            raise BadParameter(name, f"Invalid value '{value}' for parameter {name}")


def parse_query(params: MultiMapping[str]) -> Query:
    """Validate query parameters the way the API does; raises BadParameter."""
    start = _int(params, "startIndex", 0) or 0
    max_results = _int(params, "maxResults", 1)
    raw_ext = params.get("getExtendedInfo", "false").lower()
    if raw_ext not in ("true", "false"):
        raise BadParameter("getExtendedInfo", f"Invalid value '{raw_ext}' for getExtendedInfo")
    email_type = params.get("emailType") or None
    if email_type is not None:
        _enum("emailType", [email_type], EMAIL_TYPES)
    states = _many(params, "state")
    _enum("state", states, STATES)
    return Query(
        start=start,
        max_results=max_results,
        extended=raw_ext == "true",
        filters=Filters(
            email_type=email_type,
            um_id=params.get("umId") or None,
            work_type_ids=frozenset(_many(params, "workTypeId")),
            work_handler_id=params.get("workHandlerId") or None,
            states=frozenset(states),
        ),
    )


def page_bounds(query: Query, total: int, page_cap: int) -> tuple[int, int]:
    """The slice [start, end) a request gets, honouring the server-side cap."""
    size = min(query.max_results or page_cap, page_cap)
    start = min(query.start, total)
    return start, min(start + size, total)


def email_list(items: Sequence[bytes], total: int, start: int) -> bytes:
    """An EmailList body around already-encoded items."""
    head = (
        b'{"kind":"via#emailList","totalItems":%d,"lastIndexReturned":%d,"version":"%s","items":['
        % (total, start + len(items) - 1, API_VERSION.encode())
    )
    return head + b",".join(items) + b"]}"


def render(
    emails: Sequence[Email],
    query: Query,
    page_cap: int,
    work_type_names: Mapping[str, str],
    *,
    offset: int = 0,
) -> bytes:
    """The EmailList for a request over `emails`; `offset` shifts the page (a moving list)."""
    selected = query.filters.select(emails)
    start, end = page_bounds(query, len(selected), page_cap)
    shifted = max(0, start - offset)
    end = max(shifted, end - offset)
    names = dict(work_type_names)
    items = [_ENCODER.encode(to_item(e, names, query.extended)) for e in selected[shifted:end]]
    return email_list(items, len(selected), query.start)
