"""The landing page: its content per organisation, parsed as HTML, and what it never shows."""

from __future__ import annotations

from html.parser import HTMLParser

from aiohttp.test_utils import TestClient, TestServer

from exporter import __version__
from exporter.aggregation.builder import AggregationOptions, aggregate
from exporter.domain.models import Email
from exporter.metrics import buildinfo
from exporter.metrics.families import Registry
from exporter.polling.store import Store
from exporter.web.landing import PageCache, PageInfo, ago, refresh_seconds, render
from exporter.web.server import PAGE_INFO, build_app

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Page(HTMLParser):
    """Collects the table as {org: {column: text}}, the links, paragraphs and head tags."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.links: list[str] = []
        self.paragraphs: list[str] = []
        self.meta: list[dict[str, str | None]] = []
        self.external: list[str] = []
        self._cell: tuple[str, list[str]] | None = None
        self._row: dict[str, str] = {}
        self._p: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td":
            self._cell = (a.get("data-label") or "", [])
        elif tag == "tr":
            self._row = {}
        elif tag == "a":
            self.links.append(a.get("href") or "")
        elif tag == "p":
            self._p = []
        elif tag == "meta":
            self.meta.append(a)
        if tag in ("img", "script", "link", "iframe") or (tag == "style" and a.get("src")):
            self.external.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self._row[self._cell[0]] = "".join(self._cell[1]).strip()
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows[self._row["Organisation"]] = self._row
        elif tag == "p" and self._p is not None:
            self.paragraphs.append("".join(self._p))
            self._p = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[1].append(data)
        if self._p is not None:
            self._p.append(data)


def store_with_two_orgs() -> Store:
    store = Store(["acme", "globex", "initech"])
    emails = [
        Email(id="1", state="Queued", queued_time="2027-01-15T07:00:00Z", work_type_name="Billing"),
        Email(id="2", state="Queued", queued_time="2027-01-15T07:50:00Z"),
        Email(id="3", state="Active", queued_time="2027-01-15T06:00:00Z"),
        Email(id="4", state="Transferred"),  # waiting, but no time: counted, no age
    ]
    snap = aggregate(emails, now=T0, options=AggregationOptions())
    store.orgs["acme"].record_success(snap, 0.25, None, T0 + 3600)
    globex = store.orgs["globex"]
    globex.record_success(
        aggregate([], now=T0 - 900, options=AggregationOptions()), 1.5, None, None
    )
    for i in range(3):
        globex.record_failure("timeout", "emails request timed out", 10.0, None, at=T0 - 60 * i)
    globex.last_error_at = T0 - 120
    return store


def test_every_column_per_organisation() -> None:
    info = PageInfo(
        poll_interval=30.0,
        stale_after=150.0,
        api_hosts={"acme": "acme.via.aspect-cloud.net", "globex": "globex.wos.alvaria.cloud"},
        shard="2 of 4",
    )
    page = Page(render(info, store_with_two_orgs().orgs.values(), T0 + 10))
    acme, globex, initech = page.rows["acme"], page.rows["globex"], page.rows["initech"]
    assert acme == {
        "Organisation": "acme",
        "API host": "acme.via.aspect-cloud.net",
        "Status": "up",
        "Last success": "2027-01-15T08:00:00Z (10 s ago)",
        "Last error": "none",
        "Failures in a row": "0",
        "Emails waiting": "3",
        "Oldest wait": "1 h 0 min",
        "Last poll took": "0.25 s",
        "Poll interval": "30 s",
        "Shard": "2 of 4",
    }
    assert globex["Status"] == "down"
    assert (
        globex["Last error"]
        == "timeout: emails request timed out at 2027-01-15T07:58:00Z (2 min 10 s ago)"
    )
    assert globex["Failures in a row"] == "3"
    # Its last success is older than stale_after: its counts are no longer served.
    assert globex["Emails waiting"].startswith("stale")
    assert globex["Last success"] == "2027-01-15T07:45:00Z (15 min 10 s ago)"
    assert initech["Status"] == "pending" and initech["Last success"] == "never"
    assert initech["Emails waiting"] == "no data" and initech["API host"] == "—"


def test_a_recovery_keeps_the_last_error_and_resets_the_run() -> None:
    store = store_with_two_orgs()
    globex = store.orgs["globex"]
    globex.record_success(aggregate([], now=T0, options=AggregationOptions()), 0.5, None, None)
    row = Page(render(PageInfo(), store.orgs.values(), T0 + 5)).rows["globex"]
    assert row["Status"] == "up" and row["Failures in a row"] == "0"
    assert row["Last error"].startswith("timeout: emails request timed out at")


def test_header_links_version_and_mode() -> None:
    page = Page(render(PageInfo(revision="4aec406"), [], T0))
    assert page.paragraphs[0] == f"Version {__version__}, revision 4aec406"
    assert "Polling the configured API (not the built-in demo simulator)." in page.paragraphs
    assert "No organisations configured." in page.paragraphs
    assert page.links[:3] == ["metrics", "healthz", "readyz"]
    demo = Page(render(PageInfo(demo_url="http://127.0.0.1:4567"), [], T0))
    assert any(p.startswith("Demo mode: polling the built-in simulator") for p in demo.paragraphs)


def test_readable_on_a_phone_and_self_contained() -> None:
    text = render(PageInfo(), store_with_two_orgs().orgs.values(), T0)
    page = Page(text)
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in page.meta
    assert "@media (max-width:800px)" in text and "attr(data-label)" in text
    assert page.external == []
    assert "http://" not in text.replace('href="https://github.com', "")


def test_no_secret_or_personal_data_and_markup_is_escaped() -> None:
    store = Store(["<script>x</script>"])
    secret = "s3cr3t-token"
    emails = [Email(id="1", state="Queued", work_handler_name="doe, jane", work_type_name="<i>")]
    store.orgs["<script>x</script>"].record_success(
        aggregate(emails, now=T0, options=AggregationOptions()), 0.1, None, None
    )
    store.orgs["<script>x</script>"].record_failure("auth", "refused <b>", 1.0, None, at=T0)
    text = render(PageInfo(api_hosts={"<script>x</script>": "h"}), store.orgs.values(), T0)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "refused &lt;b&gt;" in text
    assert "doe, jane" not in text and "<i>" not in text and secret not in text


def test_ago() -> None:
    assert [ago(s) for s in (-3, 0, 59.6, 60, 125, 3600, 7260, 86400 * 3 + 3600 * 4)] == [
        "0 s", "0 s", "1 min", "1 min", "2 min 5 s", "1 h 0 min", "2 h 1 min", "3 d 4 h"
    ]  # fmt: skip


async def test_served_at_root_with_the_settings_main_gives_it() -> None:
    store = store_with_two_orgs()
    app = build_app(store, Registry())
    app[PAGE_INFO] = PageInfo(poll_interval=60.0, api_hosts={"acme": "acme.example"})
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/")
        assert response.content_type == "text/html"
        page = Page(await response.text())
    assert page.rows["acme"]["Poll interval"] == "1 min"
    assert page.paragraphs[0] == f"Version {__version__}, revision {buildinfo.revision()}"


def test_the_page_is_rendered_at_most_once_a_second_per_store_version() -> None:
    store, info, cache = store_with_two_orgs(), PageInfo(), PageCache()
    first = cache.get(info, store, T0 + 0.1)
    assert cache.get(info, store, T0 + 0.9) is first
    assert '<span class="nw">1 s ago</span>' in cache.get(info, store, T0 + 1.0)  # ages move
    again = cache.get(info, store, T0 + 1.5)
    store.orgs["acme"].record_failure("timeout", "timed out", 1.0, None, at=T0 + 1.5)
    after_poll = cache.get(info, store, T0 + 1.6)
    assert after_poll is not again  # a poll finished
    reloaded = PageInfo(poll_interval=10.0)
    assert cache.get(reloaded, store, T0 + 1.7) is not after_poll  # a reload's new settings


def refresh_of(text: str) -> str | None:
    """The content of the page's meta refresh, or None."""
    metas = [m for m in Page(text).meta if m.get("http-equiv") == "refresh"]
    assert len(metas) <= 1
    return metas[0]["content"] if metas else None


def test_refresh_follows_the_poll_interval_and_the_query() -> None:
    assert refresh_seconds(None, 30.0) == 30
    assert refresh_seconds(None, 1.0) == 5 and refresh_seconds(None, 3600.0) == 300
    assert refresh_seconds(None, None) == 30
    assert refresh_seconds("0", 30.0) == 0
    assert refresh_seconds("12", 30.0) == 12 and refresh_seconds("1", 30.0) == 5
    assert refresh_seconds("99999999999999", 30.0) == 300
    assert refresh_seconds("soon", 30.0) == 30 and refresh_seconds("-1", 30.0) == 30


def test_the_page_refreshes_itself_unless_asked_not_to() -> None:
    on = render(PageInfo(), store_with_two_orgs().orgs.values(), T0, refresh=30)
    assert refresh_of(on) == "30" and "?refresh=0" in Page(on).links
    off = render(PageInfo(), store_with_two_orgs().orgs.values(), T0, refresh=0)
    assert refresh_of(off) is None and "?" in Page(off).links


async def test_served_pages_refresh_every_poll_interval_or_not_at_all() -> None:
    app = build_app(store_with_two_orgs(), Registry())
    app[PAGE_INFO] = PageInfo(poll_interval=15.0)
    async with TestClient(TestServer(app)) as client:
        assert refresh_of(await (await client.get("/")).text()) == "15"
        assert refresh_of(await (await client.get("/?refresh=0")).text()) is None
        assert refresh_of(await (await client.get("/?refresh=60")).text()) == "60"
        assert refresh_of(await (await client.get("/")).text()) == "15"  # not cached across


def test_values_stay_on_one_line() -> None:
    info = PageInfo(poll_interval=722.0)
    text = render(info, store_with_two_orgs().orgs.values(), T0 + 722)
    assert ".nw,time{white-space:nowrap}" in text
    # Every duration (ages, "ago", poll time, interval) sits in one unbreakable span.
    for value in ("12 min 2 s", "12 min 2 s ago", "0.25 s", "1 h 12 min"):
        assert f'<span class="nw">{value}</span>' in text, value
