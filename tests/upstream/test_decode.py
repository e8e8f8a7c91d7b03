"""Page decoding is bounded by the page asked for, whatever the body holds."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from exporter.domain.errors import DecodeError, InconsistentError
from exporter.domain.models import Email
from exporter.upstream.decode import Shape, decode_page

MiB = 1024 * 1024


def peak_while(
    body: bytes, max_items: int, shape: Shape = Shape.FULL
) -> tuple[BaseException | None, int]:
    """The error decoding raised (if any) and the peak memory it allocated."""
    tracemalloc.start()
    error: BaseException | None = None
    try:
        decode_page(body, 0, max_items, shape=shape)
    except (DecodeError, InconsistentError) as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


@pytest.mark.parametrize("shape", list(Shape))
@pytest.mark.parametrize(
    "items",
    [
        b",".join([b"{}"] * 2_000_000),  # 4 MB of empty objects
        b",".join(b'{"id":"%d"}' % n for n in range(500_000)),  # distinct tiny ids
        b"1," + b",".join([b"{}"] * 1_000_000),  # the lenient path (a non-object item first)
        b",".join([b"null"] * 1_000_000),
    ],
)
def test_more_items_than_asked_fail_without_materialising_them(items: bytes, shape: Shape) -> None:
    body = b'{"totalItems": 3, "items": [' + items + b"]}"
    error, peak = peak_while(body, 500, shape)
    assert isinstance(error, InconsistentError)
    assert "more items than the 500 asked for" in str(error)
    # A list of that many items would take 50-200 MB; 500 items take well under one.
    assert peak < MiB, f"{peak / MiB:.1f} MiB"


def test_exactly_the_items_asked_for_decode() -> None:
    body = json.dumps({"totalItems": 3, "items": [{"id": str(n)} for n in range(3)]}).encode()
    page = decode_page(body, 0, 3)
    assert [e.id for e in page.emails] == [0, 1, 2] and page.returned == 3
    assert page.size == len(body)
    with pytest.raises(InconsistentError):
        decode_page(body, 0, 2)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"items": [{"id": "1", "state": "\xff"}]}', "UTF-8"),
        (b'{"items": [{"id": "1", "state": 3, "emailType": "\xff"}]}', "UTF-8"),
        (b'{"items": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}", "nested too deeply"),
        (b'{"totalItems": 1000000000000000000000000000000, "items": []}', "totalItems"),
        (b'{"totalItems": -1, "items": []}', "totalItems"),
        (b'{"totalItems": "x", "items": [{"id": 1}]} trailing', "JSON"),
    ],
)
def test_malformed_bodies_are_decode_errors(body: bytes, words: str) -> None:
    with pytest.raises(DecodeError, match=words):
        decode_page(body)


def test_huge_integers_in_a_label_field_count_as_missing() -> None:
    body = b'{"items": [{"id": "1", "workTypeId": ' + b"9" * 5000 + b', "state": "Queued"}]}'
    (email,) = decode_page(body).emails
    assert email.work_type_id is None and email.state == "Queued"


def test_the_fast_path_aggregates_exactly_like_text() -> None:
    from exporter.aggregation.builder import AggregationOptions, aggregate
    from exporter.domain.models import Email

    items = [
        {"id": str(n), "state": "Queued", "queuedTime": f"2027-01-15T07:0{n}:00.250+01:00"}
        for n in range(5)
    ] + [{"id": "9", "state": "Active", "receivedTime": "2027-01-15T06:00:00Z"}]
    page = decode_page(json.dumps({"items": items}).encode())
    as_text = [
        Email(
            id=i["id"],
            state=i["state"],
            queued_time=i.get("queuedTime"),
            received_time=i.get("receivedTime"),
        )
        for i in items
    ]
    opts = AggregationOptions()
    fast = aggregate(page.emails, now=1_800_000_000.0, options=opts)
    slow = aggregate(as_text, now=1_800_000_000.0, options=opts)
    assert fast.oldest == slow.oldest and fast.counts == slow.counts
    assert {k: list(v.timestamps) for k, v in fast.waiting.items()} == {
        k: list(v.timestamps) for k, v in slow.waiting.items()
    }
    assert dict(fast.memberships) == dict(slow.memberships)


def complete(n: int, **extra: object) -> dict[str, object]:
    """An item as Alvaria sends it, with every field the aggregation may read."""
    return {
        "id": str(1000 + n),
        "state": "Queued" if n % 2 else "Active",
        "emailType": "InboundEmail",
        "workTypeId": str(100 + n % 3),
        "workTypeName": f"Work type {n % 3}",
        "workHandlerId": "a1",
        "workHandlerName": "doe, jane",
        "receivedTime": "2027-01-15T06:00:00Z",
        "startTime": "2027-01-15T06:00:01Z",
        "queuedTime": f"2027-01-15T07:{n:02d}:00.250Z",
        "activeTime": "2027-01-15T08:00:00Z",
        **extra,
    }


def aggregated(page_emails: list[Email]) -> tuple[object, ...]:
    from exporter.aggregation.builder import AggregationOptions, aggregate

    snap = aggregate(page_emails, now=1_800_000_000.0, options=AggregationOptions())
    waiting = {k: list(v.timestamps) for k, v in snap.waiting.items()}
    return snap.counts, snap.oldest, waiting, snap.memberships, snap.undated


@pytest.mark.parametrize("shape", [Shape.DOCUMENTED, Shape.LEAN])
def test_the_lean_shapes_aggregate_exactly_like_the_full_one(shape: Shape) -> None:
    body = json.dumps({"totalItems": 20, "items": [complete(n) for n in range(20)]}).encode()
    lean = decode_page(body, 0, 20, shape=shape, agents=False)
    full = decode_page(body, 0, 20)
    assert lean.shape == shape and lean.returned == full.returned == 20
    assert aggregated(lean.emails) == aggregated(full.emails)
    # What the aggregation never reads of a complete item is not decoded.
    email = lean.emails[0]
    assert (email.work_type_id, email.received_time, email.start_time) == (None, None, None)
    assert (email.work_handler_id, email.work_handler_name) == (None, None)
    assert email.active_time is not None
    with_agents = decode_page(body, 0, 20, shape=shape, agents=True).emails[0]
    assert (with_agents.work_handler_id, with_agents.work_handler_name) == ("a1", "doe, jane")


@pytest.mark.parametrize(
    ("odd", "needs"),
    [
        ({"state": "Parked"}, Shape.LEAN),  # an undocumented state is passed through
        ({"emailType": "Fax"}, Shape.LEAN),
        ({"workTypeName": None}, Shape.FULL),  # the label falls back to the work type id
        ({"workTypeName": ""}, Shape.FULL),
        ({"queuedTime": None}, Shape.FULL),  # the age falls back to receivedTime
        ({"queuedTime": "2027-01-15T07:00:00"}, Shape.FULL),  # no zone: read as UTC
        ({"state": "Parked", "queuedTime": None}, Shape.FULL),
    ],
)
@pytest.mark.parametrize("shape", [Shape.DOCUMENTED, Shape.LEAN])
def test_a_page_with_an_item_of_a_fuller_shape_is_decoded_in_it(
    odd: dict[str, object], needs: Shape, shape: Shape
) -> None:
    items = [complete(n) for n in range(5)] + [complete(5, **odd)]
    body = json.dumps({"items": items}).encode()
    page = decode_page(body, 0, 10, shape=shape)
    full = decode_page(body, 0, 10)
    assert page.shape == max(needs, shape) and full.shape == Shape.FULL
    assert aggregated(page.emails) == aggregated(full.emails)
    assert [(e.id, e.state) for e in page.emails] == [(e.id, e.state) for e in full.emails]


@pytest.mark.parametrize("odd", [{"id": "007"}, {"id": None}, {"state": 3}, {"activeTime": [1]}])
@pytest.mark.parametrize("shape", [Shape.DOCUMENTED, Shape.LEAN])
def test_any_other_refusal_of_a_lean_shape_asks_for_the_full_one(
    odd: dict[str, object], shape: Shape
) -> None:
    # However odd the items, a page is never decoded more than three times, and once a client
    # has seen one it decodes in full: a poll never costs more than decoding everything in full.
    body = json.dumps({"items": [complete(0), complete(1, **odd), complete(2)]}).encode()
    page = decode_page(body, 0, 10, shape=shape)
    full = decode_page(body, 0, 10)
    assert page.shape == Shape.FULL
    assert [e.id for e in page.emails] == [e.id for e in full.emails]
    assert page.invalid == full.invalid


@pytest.mark.parametrize("body", [b"{}", b'{"kind": "via#emailList"}', b'{"items": null}'])
def test_the_lean_decoder_tells_an_empty_list_from_an_error_body(body: bytes) -> None:
    def outcome(shape: Shape) -> object:
        try:
            page = decode_page(body, 0, 10, shape=shape)
        except DecodeError as exc:
            return str(exc)
        return page.emails, page.total_items

    assert outcome(Shape.DOCUMENTED) == outcome(Shape.LEAN) == outcome(Shape.FULL)
