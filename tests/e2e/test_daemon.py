"""The real daemon, started as a process, polling a scripted fake API and scraped over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_alvaria import CLIENT_SECRET, FakeAlvaria, Reply, serving
from tests.fakes import free_port, wait_for

NOW = time.time()
T = TypeVar("T")
Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def iso(seconds_ago: float, fmt: str = "z") -> str:
    dt = datetime.fromtimestamp(NOW - seconds_ago, UTC)
    if fmt == "z":
        return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if fmt == "offset":
        return dt.astimezone().isoformat()
    return dt.replace(microsecond=0).isoformat()


TRICKY_ITEMS = [
    {
        "id": "1",
        "state": "Queued",
        "emailType": "InboundEmail",
        "workTypeId": "11",
        "workTypeName": 'Billing "VIP" \u2013 Zürich',
        "queuedTime": iso(600),
        "subject": "secret subject",
        "fromAddress": "customer@example.com",
    },
    {
        "id": "2",
        "state": "Queued",
        "emailType": "InboundEmail",
        "workTypeId": "11",
        "workTypeName": 'Billing "VIP" \u2013 Zürich',
        "queuedTime": iso(1200, "offset"),
    },
    {
        "id": "3",
        "state": "Active",
        "emailType": "InboundEmail",
        "workTypeId": "12",
        "receivedTime": iso(300, "plain"),
    },
    {
        "id": "4",
        "state": "Parked",
        "emailType": "CampaignOutboundEmail",
        "workTypeId": "12",
        "startTime": iso(50),
    },
    {"id": "5", "emailType": "ManualOutboundEmail"},
    {
        "id": "6",
        "state": "Queued2",
        "emailType": "InboundEmail",
        "workTypeName": "Sales",
        "queuedTime": "not a time",
        "receivedTime": iso(100),
    },
    {
        "id": "7",
        "state": "Queued",
        "emailType": "InboundEmail",
        "workTypeName": "Sales",
        "queuedTime": iso(30),
    },
]


@dataclass
class Daemon:
    """A running exporter process: where to scrape it and where its log goes."""

    base: str
    log: Path

    def logs(self) -> str:
        return self.log.read_text()


@asynccontextmanager
async def exporter(env: dict[str, str]) -> AsyncIterator[Daemon]:
    """Start the exporter process; yield it once /readyz answers 200."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
    full_env |= {"ALVARIA_LISTEN_ADDRESS": f"127.0.0.1:{port}", "ALVARIA_LOG_FORMAT": "json", **env}
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(f"http://127.0.0.1:{port}", Path(tmp) / "exporter.app.log")
        # A file, not a pipe: a pipe nobody reads fills up and blocks the process.
        with daemon.log.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "exporter", env=full_env, stdout=log, stderr=log
            )
        try:
            await wait_for(
                lambda: fetch_status(daemon.base + "/readyz"), lambda s: s == 200, within=20
            )
            yield daemon
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)


async def fetch_status(url: str) -> int:
    try:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return r.status
    except aiohttp.ClientError:
        return -1


async def scrape(base: str) -> Metrics:
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as r:
        text = await r.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics[(name, tuple(sorted(labels.items())))]


async def test_daemon_reports_every_count_and_oldest_timestamp_exactly() -> None:
    async with (
        serving(FakeAlvaria(items=TRICKY_ITEMS)) as api,
        exporter(api.env(ALVARIA_POLL_INTERVAL="1s")) as daemon,
    ):
        m = await scrape(daemon.base)
        org = "acme"
        billing = 'Billing "VIP" \u2013 Zürich'
        emails = "alvaria_emailqueue_emails"
        assert (
            value(m, emails, org=org, state="Queued", email_type="InboundEmail", work_type=billing)
            == 2
        )
        assert (
            value(m, emails, org=org, state="Active", email_type="InboundEmail", work_type="12")
            == 1
        )
        assert (
            value(
                m,
                emails,
                org=org,
                state="Parked",
                email_type="CampaignOutboundEmail",
                work_type="12",
            )
            == 1
        )
        assert (
            value(
                m,
                emails,
                org=org,
                state="unknown",
                email_type="ManualOutboundEmail",
                work_type="unknown",
            )
            == 1
        )
        assert (
            value(m, emails, org=org, state="Queued2", email_type="InboundEmail", work_type="Sales")
            == 1
        )
        assert (
            value(m, emails, org=org, state="Wrap", email_type="InboundEmail", work_type="Sales")
            == 0
        )
        total = sum(v for (n, _), v in m.items() if n == emails)
        assert total == len(TRICKY_ITEMS)

        oldest = "alvaria_emailqueue_oldest_email_timestamp_seconds"
        expected = {
            ("Queued", "InboundEmail", billing): NOW - 1200,
            ("Active", "InboundEmail", "12"): int(NOW - 300),
            ("Parked", "CampaignOutboundEmail", "12"): NOW - 50,
            ("Queued2", "InboundEmail", "Sales"): NOW - 100,
            ("Queued", "InboundEmail", "Sales"): NOW - 30,
        }
        for (state, etype, wt), ts in expected.items():
            got = value(m, oldest, org=org, state=state, email_type=etype, work_type=wt)
            assert abs(got - ts) < 0.002, (state, wt, got, ts)
        assert not any(
            n == oldest and dict(lbl)["work_type"] == "unknown" for (n, lbl), _ in m.items()
        )

        age = "alvaria_emailqueue_oldest_email_age_seconds"
        labels = {"org": org, "state": "Queued", "email_type": "InboundEmail", "work_type": billing}
        first_age = value(m, age, **labels)
        await asyncio.sleep(1.1)
        second_age = value(await scrape(daemon.base), age, **labels)
        assert second_age > first_age >= 1200

        hist = "alvaria_emailqueue_waiting_email_age_seconds"
        assert (
            value(m, hist + "_gcount", org=org, email_type="InboundEmail", work_type=billing) == 2
        )
        assert (
            value(
                m,
                hist + "_bucket",
                org=org,
                email_type="InboundEmail",
                work_type=billing,
                le="900.0",
            )
            == 1
        )
        assert value(m, "alvaria_emailqueue_up", org=org) == 1
        assert value(m, "alvaria_emailqueue_api_reported_items", org=org) == len(TRICKY_ITEMS)
        assert api.calls["token"] == 1
        assert api.calls["emails"] >= 3 * 2  # 7 items in pages of 3, at least two polls


async def test_retry_after_is_waited_out_and_one_token_serves_many_polls() -> None:
    api = FakeAlvaria(
        items=TRICKY_ITEMS[:2],
        emails_script={
            0: Reply.json(429, {"code": 429, "message": "scripted"}, {"Retry-After": "1"})
        },
    )
    async with serving(api), exporter(api.env(ALVARIA_POLL_INTERVAL="1s")) as daemon:
        m = await wait_for(
            lambda: scrape(daemon.base),
            lambda m: value(m, "alvaria_emailqueue_polls_total", org="acme") >= 3,
            within=15,
        )
        assert value(m, "alvaria_emailqueue_up", org="acme") == 1
        assert (
            value(m, "alvaria_emailqueue_poll_errors_total", org="acme", reason="rate_limited") == 0
        )
        assert (
            value(
                m,
                "alvaria_emailqueue_api_requests_total",
                org="acme",
                endpoint="emails",
                code="429",
            )
            == 1
        )
        assert (
            value(
                m, "alvaria_emailqueue_api_requests_total", org="acme", endpoint="token", code="200"
            )
            == 1
        )
        assert api.calls["token"] == 1
        logs = daemon.logs()
        assert CLIENT_SECRET not in logs and "customer@example.com" not in logs
        assert '"event": "poll"' in logs  # the log really was captured


async def test_failing_api_keeps_last_snapshot_with_up_zero() -> None:
    api = FakeAlvaria(items=TRICKY_ITEMS)
    async with (
        serving(api),
        exporter(api.env(ALVARIA_POLL_INTERVAL="1s", ALVARIA_MAX_RETRIES="0")) as daemon,
    ):
        api.emails_reply = Reply.json(503, {"code": 503, "message": "scripted"})
        m = await wait_for(
            lambda: scrape(daemon.base),
            lambda m: value(m, "alvaria_emailqueue_up", org="acme") == 0,
            within=10,
        )
        assert value(m, "alvaria_emailqueue_poll_errors_total", org="acme", reason="http_5xx") >= 1
        assert (
            "alvaria_emailqueue_emails",
            tuple(
                sorted(
                    {
                        "org": "acme",
                        "state": "Queued",
                        "email_type": "InboundEmail",
                        "work_type": "Sales",
                    }.items()
                )
            ),
        ) in m
        async with aiohttp.ClientSession() as s, s.get(daemon.base + "/") as r:
            page = await r.text()
        assert "acme" in page and "http_5xx" in page and CLIENT_SECRET not in page
