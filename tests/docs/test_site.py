"""The documentation site: generated references up to date and complete, a strict build, and a
README that is a front door."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from docsgen import __main__ as docsgen
from docsgen import alerts, blocks
from docsgen import settings as settings_docs
from exporter.settings.table import SPEC_OF
from tests.app.test_main import run_cli
from tests.fake_alvaria import FakeAlvaria, serving

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MKDOCS = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
PAGES = {
    "getting-started.md",
    "configuration.md",
    "metrics.md",
    "alerts.md",
    "dashboards.md",
    "deployment.md",
    "troubleshooting.md",
    "operations.md",
    "development.md",
}


def generated(page: str, name: str) -> str:
    """The text of one generated part of a page."""
    text = (DOCS / page).read_text()
    begin = text.index(f"<!-- generated:{name}:begin")
    return text[begin : text.index(f"<!-- generated:{name}:end -->")]


def test_the_generated_parts_are_up_to_date() -> None:
    assert blocks.stale(docsgen.PARTS) == [], "run `make docs` and commit the result"


def test_a_stale_part_is_found_and_rewritten(tmp_path: Path) -> None:
    shutil.copytree(DOCS, tmp_path / "docs")
    page = tmp_path / "docs" / "metrics.md"
    row = "| `alvaria_emailqueue_up` | gauge |"
    page.write_text(page.read_text().replace(row, "| `alvaria_emailqueue_upp` | gauge |"))
    assert blocks.stale(docsgen.PARTS, tmp_path / "docs") == ["metrics.md"]
    assert blocks.write(docsgen.PARTS, tmp_path / "docs") == ["metrics.md"]
    assert blocks.stale(docsgen.PARTS, tmp_path / "docs") == []
    # Hand-written text around the parts is kept.
    assert page.read_text() == (DOCS / "metrics.md").read_text()


def test_a_page_without_its_markers_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "metrics.md").write_text("# Metrics\n\nno markers\n")
    with pytest.raises(ValueError, match="0 generated:metrics parts"):
        blocks.stale([docsgen.PARTS[0]], tmp_path)


def exposed_families(exposition: str) -> set[str]:
    """Family names of a text exposition, the gauge histograms' _gcount and _gsum folded in."""
    names = set(re.findall(r"^# TYPE (\S+) \S+$", exposition, re.M))
    return {re.sub(r"_g(count|sum)$", "", name) for name in names}


async def test_every_family_once_exposes_is_documented() -> None:
    items = [
        {"id": "1", "state": "Queued", "emailType": "InboundEmail", "workTypeName": "Sales",
         "queuedTime": "2027-01-15T07:00:00Z"},
        {"id": "2", "state": "Active", "emailType": "InboundEmail", "workTypeName": "Sales",
         "queuedTime": "2027-01-15T07:00:00Z", "activeTime": "2027-01-15T07:10:00Z",
         "workHandlerId": "7", "workHandlerName": "Agent Seven"},
    ]  # fmt: skip
    async with serving(FakeAlvaria(items=items)) as api:
        code, out, err = await run_cli("--once", env=api.env(ALVARIA_AGENT_METRICS="true"))
    assert code == 0, err
    families = exposed_families(out)
    assert "alvaria_emailqueue_agent_emails" in families and "python_info" in families
    reference = generated("metrics.md", "metrics")
    missing = {name for name in families if f"`{name}`" not in reference}
    assert missing == set(), "add them to the families, then run `make docs`"


async def test_every_setting_check_config_prints_is_documented(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("targets:\n  - {org_id: a, api_key: k, access_token: t}\n")
    code, out, err = await run_cli("--check-config", "--config-file", str(config))
    assert code == 0, err
    printed = yaml.safe_load(out)
    keys = set(printed) | set(printed["targets"][0]) | {"config_file"}
    reference = generated("configuration.md", "settings")
    for key in sorted(keys):
        # With its ALVARIA_ variable, or its YAML key when it has none.
        wanted = f"`ALVARIA_{key.upper()}`" if key in SPEC_OF else f"| `{key}` |"
        assert wanted in reference, f"{key}: {wanted} is not in the settings reference"
    assert len(keys) > 45


def test_every_alert_of_the_generated_rules_is_documented() -> None:
    reference = generated("alerts.md", "alerts")
    page = (DOCS / "alerts.md").read_text()
    names = {rule["alert"] for rule in alerts.alerting_rules()}
    assert len(names) >= 16
    for name in names:
        assert f"[{name}](#{name.lower()})" in reference
        assert f"\n## {name}\n" in page, f"docs/alerts.md has no runbook for {name}"


def test_alert_summaries_read_without_templates() -> None:
    summary = (
        "{{ $value | humanize }} emails waiting in {{ $labels.work_type }} ({{ $labels.org }}), "
        'above {{ with query (printf "org_work_type_email_type:alvaria_emailqueue_waiting_emails'
        ':threshold{job=%q}" $labels.job) }}{{ (first .).Value | humanize }}{{ else }}unknown'
        "{{ end }}"
    )
    assert (
        alerts.readable(summary)
        == "<value> emails waiting in <work_type> (<org>), above <threshold>"
    )


def test_regions_and_poll_errors_come_from_the_code() -> None:
    assert "`myaspect.eu.id.aspect-cloud.net`" in settings_docs.render_regions()
    assert "`wos.alvaria.cloud`" in generated("configuration.md", "regions")
    reasons = generated("troubleshooting.md", "poll-errors")
    for reason in ("auth", "rate_limited", "http_4xx", "http_5xx", "timeout", "connection",
                   "decode", "inconsistent", "internal"):  # fmt: skip
        assert f"| `{reason}` |" in reasons


def test_the_site_has_every_page_search_a_dark_mode_and_copyable_code() -> None:
    nav = {next(iter(item.values())) for item in MKDOCS["nav"]}
    assert nav >= PAGES | {"index.md"}
    assert {page.name for page in DOCS.glob("*.md")} == nav
    assert "search" in MKDOCS["plugins"]
    theme = MKDOCS["theme"]
    assert theme["name"] == "material" and "content.code.copy" in theme["features"]
    assert {p["scheme"] for p in theme["palette"]} == {"default", "slate"}
    assert all("toggle" in p for p in theme["palette"])


def test_runbook_urls_point_at_the_alerts_page_of_the_site() -> None:
    for rule in alerts.alerting_rules():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(MKDOCS["site_url"] + "alerts/#"), url


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    result = subprocess.run(  # noqa: S603
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": str(Path(sys.executable).parent), "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "search" / "search_index.json").exists()
    assert (tmp_path / "site" / "alerts" / "index.html").exists()


def test_the_readme_is_a_front_door() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert (
        "docs/images/landing-page.png" in text and (DOCS / "images" / "landing-page.png").exists()
    )
    assert "make demo" in text and "make test" in text and "--check-connection" in text
    for page in PAGES:
        assert f"(docs/{page}" in text, f"the README does not link {page}"


def _anchors(page: Path) -> set[str]:
    """Heading anchors as the site's toc makes them (lower case, punctuation dropped)."""
    headings = re.findall(r"^#{1,6} (.+)$", page.read_text(), re.M)
    slugs = {re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", h).strip().lower()) for h in headings}
    return slugs | set(re.findall(r'<a id="([^"]+)"', page.read_text()))


def test_the_readme_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#([^)]+))?\)", text)
    assert len(links) > 15
    for target, anchor in links:
        path = ROOT / target
        assert path.exists(), target
        if anchor:
            assert anchor in _anchors(path), f"{target}#{anchor}"
