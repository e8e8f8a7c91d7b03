"""Page decoding is bounded by the page asked for, whatever the body holds."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from exporter.decode import decode_page
from exporter.errors import DecodeError, InconsistentError

MiB = 1024 * 1024


def peak_while(body: bytes, max_items: int) -> tuple[BaseException | None, int]:
    """The error decoding raised (if any) and the peak memory it allocated."""
    tracemalloc.start()
    error: BaseException | None = None
    try:
        decode_page(body, 0, max_items)
    except (DecodeError, InconsistentError) as exc:
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return error, peak


@pytest.mark.parametrize(
    "items",
    [
        b",".join([b"{}"] * 2_000_000),  # 4 MB of empty objects
        b",".join(b'{"id":"%d"}' % n for n in range(500_000)),  # distinct tiny ids
        b"1," + b",".join([b"{}"] * 1_000_000),  # the lenient path (a non-object item first)
        b",".join([b"null"] * 1_000_000),
    ],
)
def test_more_items_than_asked_fail_without_materialising_them(items: bytes) -> None:
    body = b'{"totalItems": 3, "items": [' + items + b"]}"
    error, peak = peak_while(body, 500)
    assert isinstance(error, InconsistentError)
    assert "more items than the 500 asked for" in str(error)
    # A list of that many items would take 50-200 MB; 500 items take well under one.
    assert peak < MiB, f"{peak / MiB:.1f} MiB"


def test_exactly_the_items_asked_for_decode() -> None:
    body = json.dumps({"totalItems": 3, "items": [{"id": str(n)} for n in range(3)]}).encode()
    page = decode_page(body, 0, 3)
    assert [e.id for e in page.emails] == [0, 1, 2] and page.returned == 3
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
    from exporter.aggregate import AggregationOptions, aggregate
    from exporter.models import Email

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
