"""Fault matrix, data layer: odd items, a list that moves while paged, and the truth over time."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.fake_alvaria import FakeAlvaria, item
from tests.pipeline import rig

EMAILS = "alvaria_emailqueue_emails"


async def test_items_that_are_not_objects_or_lack_an_id_are_counted_and_skipped() -> None:
    items: list[Any] = [item(1), "junk", 7, None, {"state": "Queued"}, {"id": ""}, item(2)]
    upstream = FakeAlvaria(items=items, page_cap=10)
    async with rig(upstream) as r:
        ok, _ = await r.poll()
        assert ok
        assert r.emails_total() == 2
        invalid = "alvaria_emailqueue_invalid_items_total"
        assert r.value(invalid, reason="not_object") == 3
        assert r.value(invalid, reason="missing_id") == 2
        await r.assert_no_leak()


async def test_duplicates_from_a_moving_list_are_counted_once() -> None:
    upstream = FakeAlvaria(items=[item(n) for n in range(6)], page_cap=3)

    async def shifting(request: web.Request) -> web.StreamResponse:
        # Email 0 left between page requests: the second page starts one item later than asked,
        # so email 2 is served twice and email 3 is lost for this poll.
        if request.query["startIndex"] == "3":
            return web.json_response({"totalItems": 6, "items": upstream.items[2:5]})
        return await upstream.serve_page(request)

    upstream.on_emails = shifting
    async with rig(upstream) as r:
        assert (await r.poll())[0]
        assert r.value("alvaria_emailqueue_duplicate_items_total") == 1
        assert r.emails_total() == 5
        await r.assert_no_leak()


async def test_total_items_larger_than_what_the_pages_deliver_is_reported_as_is() -> None:
    # The list shrank while paged: totalItems says 9, the pages hold 5. The exporter serves the
    # emails it saw and the API's own number side by side, and stays up.
    upstream = FakeAlvaria(items=[item(n) for n in range(5)], page_cap=3)

    async def overstated(request: web.Request) -> web.StreamResponse:
        start = int(request.query["startIndex"])
        return web.json_response({"totalItems": 9, "items": upstream.items[start : start + 3]})

    upstream.on_emails = overstated
    async with rig(upstream) as r:
        assert (await r.poll())[0]
        assert upstream.calls["emails"] == 3  # pages at 0, 3 and 6; the last came back empty
        assert r.value("alvaria_emailqueue_api_reported_items") == 9
        assert r.emails_total() == 5
        assert r.value("alvaria_emailqueue_up") == 1


async def test_an_empty_page_before_the_end_is_an_inconsistent_poll() -> None:
    # Counting around the hole would report 6 of 9 emails with up=1 and turn the 3 missing
    # ones into departures; the poll fails instead and the last good snapshot stays.
    upstream = FakeAlvaria(items=[item(n) for n in range(9)], page_cap=3)
    async with rig(upstream) as r:
        assert (await r.poll())[0]

        async def hole(request: web.Request) -> web.StreamResponse:
            if request.query["startIndex"] == "3":
                return web.json_response({"totalItems": 9, "items": []})
            return await upstream.serve_page(request)

        upstream.on_emails = hole
        ok, _ = await r.poll()
        assert not ok and r.state.last_error_reason == "inconsistent"
        assert r.emails_total() == 9
        assert r.value("alvaria_emailqueue_up") == 0


async def test_an_empty_first_page_with_items_reported_is_an_inconsistent_poll() -> None:
    upstream = FakeAlvaria(items=[item(n) for n in range(4)], page_cap=3)

    async def empty(request: web.Request) -> web.StreamResponse:
        return web.json_response({"totalItems": 4, "items": []})

    upstream.on_emails = empty
    async with rig(upstream) as r:
        ok, _ = await r.poll()
        assert not ok and r.state.last_error_reason == "inconsistent"


async def test_without_total_items_an_empty_page_ends_the_listing() -> None:
    upstream = FakeAlvaria(items=[item(n) for n in range(7)], page_cap=3, report_total=False)
    async with rig(upstream) as r:
        assert (await r.poll())[0]
        assert r.emails_total() == 7 and upstream.calls["emails"] == 4
        assert r.value("alvaria_emailqueue_api_reported_items") is None


async def test_more_pages_than_max_pages_is_inconsistent() -> None:
    upstream = FakeAlvaria(items=[item(n) for n in range(30)], page_cap=3)
    async with rig(upstream, max_pages=5) as r:
        ok, _ = await r.poll()
        assert not ok and r.state.last_error_reason == "inconsistent"
        assert upstream.calls["emails"] == 1
    endless = FakeAlvaria(items=[item(n) for n in range(30)], page_cap=3, report_total=False)
    async with rig(endless, max_pages=5) as r:
        ok, _ = await r.poll()
        assert not ok and r.state.last_error_reason == "inconsistent"
        assert endless.calls["emails"] == 5
        await r.assert_no_leak()


async def test_unknown_enum_values_are_passed_through() -> None:
    upstream = FakeAlvaria(items=[item(1, state="Teleported", emailType="CarrierPigeon")])
    async with rig(upstream) as r:
        assert (await r.poll())[0]
        labels = {"state": "Teleported", "email_type": "CarrierPigeon", "work_type": "Billing"}
        assert r.value(EMAILS, **labels) == 1


async def test_timestamps_in_the_future_give_age_zero_never_negative() -> None:
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
    upstream = FakeAlvaria(items=[item(1, queuedTime=future)])
    async with rig(upstream) as r:
        assert (await r.poll())[0]
        labels = {"state": "Queued", "email_type": "InboundEmail", "work_type": "Billing"}
        assert r.value("alvaria_emailqueue_oldest_email_age_seconds", **labels) == 0
        pair = {"email_type": "InboundEmail", "work_type": "Billing"}
        assert r.value("alvaria_emailqueue_waiting_email_age_seconds_gsum", **pair) == 0
        assert (
            r.value("alvaria_emailqueue_waiting_email_age_seconds_bucket", le="60.0", **pair) == 1
        )


async def unavailable(request: web.Request) -> web.Response:
    return web.json_response({"code": 503, "message": "maintenance"}, status=503)


async def test_failure_keeps_the_snapshot_until_stale_then_drops_it_and_recovers() -> None:
    upstream = FakeAlvaria(items=[item(n) for n in range(4)])
    async with rig(upstream, poll_interval=10, max_retries=0) as r:
        assert (await r.poll())[0]
        success_at = r.value("alvaria_emailqueue_last_poll_success_timestamp_seconds")
        assert success_at == r.clock.now and r.emails_total() == 4

        upstream.on_emails = unavailable
        r.clock.now += 30
        assert not (await r.poll())[0]
        assert r.value("alvaria_emailqueue_up") == 0
        assert r.emails_total() == 4  # the last snapshot is still served, marked down
        assert r.value("alvaria_emailqueue_last_poll_success_timestamp_seconds") == success_at

        r.clock.now += 30  # 60 s since success: beyond stale_after (5 x 10 s)
        assert not (await r.poll())[0]
        assert r.emails_total() == 0
        assert not any(name == EMAILS for name, _ in r.metrics())
        assert r.value("alvaria_emailqueue_up") == 0
        assert r.value("alvaria_emailqueue_polls_total") == 3
        assert r.value("alvaria_emailqueue_last_poll_success_timestamp_seconds") == success_at

        upstream.on_emails = None
        r.clock.now += 10
        assert (await r.poll())[0]
        assert r.value("alvaria_emailqueue_up") == 1 and r.emails_total() == 4
        assert r.value("alvaria_emailqueue_last_poll_success_timestamp_seconds") == r.clock.now
        await r.assert_no_leak()
