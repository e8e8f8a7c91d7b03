"""Prometheus rules, their unit tests, the runbooks and the example Alertmanager configuration."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.rules.yml"))
RULE_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
# The runbooks: a section per alert on the documentation site's Alerts page.
RUNBOOKS = ROOT / "docs" / "alerts.md"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

RUNBOOK_BASE_URL = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["site_url"] + "alerts/"
SEVERITIES = {"critical", "warning"}
# Labels that tell one firing instance of an alert from another, most specific first.
IDENTITY_LABELS = ("work_type", "email_type", "label", "org", "instance")
WARNING_QUEUE_ALERTS = {
    "AlvariaEmailQueueBacklogHigh",
    "AlvariaEmailQueueBacklogGrowing",
    "AlvariaEmailQueueNotDraining",
}
SERVICE_LEVEL_ALERTS = {
    "AlvariaEmailQueueServiceLevelAtRisk",
    "AlvariaEmailQueueServiceLevelBreached",
    "AlvariaEmailQueueServiceLevelBelowObjective",
}
QUEUE_ALERTS = WARNING_QUEUE_ALERTS | SERVICE_LEVEL_ALERTS
# Alerts per organisation and email type about the handling KPIs (SPEC §10).
HANDLING_ALERTS = {"AlvariaEmailQueueDeliveryLagHigh"}
# Alerts about a whole scrape job (or its absence) rather than one organisation.
JOB_ALERTS = {
    "AlvariaEmailQueueExporterDown",
    "AlvariaEmailQueueConfigReloadFailed",
    "AlvariaEmailQueueShardingMismatch",
    "AlvariaEmailQueueShardMissing",
}


def tool(name: str) -> str:
    """Path of a Prometheus tool; the Debian packages provide them (`make system-deps`)."""
    path = shutil.which(name)
    assert path, f"{name} is missing: run `make system-deps`"
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a tool and capture its output."""
    return subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)  # noqa: S603


def alerting_rules() -> list[dict[str, Any]]:
    """Every alerting rule of every rule file."""
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def rule_unit_tests() -> list[dict[str, Any]]:
    """Every test case of every promtool test file."""
    return [test for path in RULE_TEST_FILES for test in yaml.safe_load(path.read_text())["tests"]]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_anchors() -> set[str]:
    """Anchors of the runbook's headings."""
    headings = re.findall(r"^#{1,6} (.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    return {github_anchor(heading) for heading in headings}


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    result = run(tool("promtool"), "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", RULE_TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    result = run(tool("promtool"), "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_is_valid() -> None:
    result = run(tool("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_the_issue_asks_for_exist() -> None:
    names = {rule["alert"] for rule in alerting_rules()}
    assert (
        names
        == {
            "AlvariaEmailQueueExporterDown",
            "AlvariaEmailQueuePollsFailing",
            "AlvariaEmailQueueDataStale",
            "AlvariaEmailQueueAuthFailing",
            "AlvariaEmailQueueApiRateLimited",
            "AlvariaEmailQueueTokenRefreshFailing",
            "AlvariaEmailQueueLabelOverflow",
            "AlvariaEmailQueueCertificateExpiring",
            "AlvariaEmailQueueShardingMismatch",
            "AlvariaEmailQueueShardMissing",
            "AlvariaEmailQueueConfigReloadFailed",
            "AlvariaEmailQueueOrganisationLost",
        }
        | QUEUE_ALERTS
        | HANDLING_ALERTS
    )


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda r: r["alert"])
def test_alert_has_severity_annotations_and_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule.get("for"), "every alert waits before it fires"
    annotations = rule["annotations"]
    assert "$labels." in annotations["summary"], "the summary names what is affected"
    assert "{{ $labels." in annotations["description"], "description must be templated"
    anchor = rule["alert"].lower()
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE_URL}#{anchor}"
    assert anchor in runbook_anchors(), f"docs/alerts.md has no section for {rule['alert']}"
    # A link to the right dashboard with the alert's own labels as its variables.
    url = annotations["dashboard_url"]
    if rule["alert"] in QUEUE_ALERTS:
        board, variables = "alvaria-emailqueue-overview", ["job", "org", "work_type", "email_type"]
    elif rule["alert"] in JOB_ALERTS:
        board, variables = "alvaria-emailqueue-exporter-health", ["job"]
    elif rule["alert"] in HANDLING_ALERTS:
        board, variables = "alvaria-emailqueue-overview", ["job", "org", "email_type"]
    else:
        board, variables = "alvaria-emailqueue-exporter-health", ["job", "org"]
    assert url.startswith(f"http://localhost:3000/d/{board}?orgId=1"), url
    assert re.findall(r"&var-(\w+)=\{\{ \. \| urlquery \}\}", url) == variables
    # The numbers: the value, and what it is compared with, looked up when the alert fires.
    if rule["alert"] != "AlvariaEmailQueueExporterDown":
        description = annotations["description"]
        assert "$value" in description or "query (printf" in description


def test_every_runbook_section_has_the_four_parts() -> None:
    sections = re.split(r"^## ", RUNBOOKS.read_text(), flags=re.MULTILINE)[1:]
    alert_sections = [s for s in sections if s.startswith("AlvariaEmailQueue")]
    assert {s.splitlines()[0] for s in alert_sections} == {r["alert"] for r in alerting_rules()}
    for section in alert_sections:
        for part in ("**Meaning.**", "**Impact.**", "**Diagnose.**", "**Mitigate.**"):
            assert part in section, (section.splitlines()[0], part)


def test_runbooks_cover_every_poll_error_reason_and_the_timing() -> None:
    text = RUNBOOKS.read_text()
    polls_failing = text.split("## AlvariaEmailQueuePollsFailing", 1)[1].split("\n## ", 1)[0]
    for reason in (
        "auth",
        "rate_limited",
        "http_4xx",
        "http_5xx",
        "http_other",
        "timeout",
        "connection",
        "decode",
        "inconsistent",
        "internal",
    ):
        assert f"`{reason}`" in polls_failing, reason
    assert "404" in polls_failing and "org_id" in polls_failing
    overflow = text.split("## AlvariaEmailQueueLabelOverflow", 1)[1].split("\n## ", 1)[0]
    assert "max_agents" in overflow and "20" in overflow
    assert "stale_after" in text and "poll_interval" in text and "keep_firing_for" in text
    assert "runbook_url" in text and "sed " in text


def test_github_anchor_follows_githubs_rules() -> None:
    assert github_anchor("AlvariaEmailQueueOldestEmailTooOld") == (
        "alvariaemailqueueoldestemailtooold"
    )
    assert github_anchor("Per-work-type thresholds (v2.0)") == "per-work-type-thresholds-v20"


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda r: r["alert"])
def test_alert_is_unit_tested_firing_and_quiet(rule: dict[str, Any]) -> None:
    """Each alert has a case where it fires and one where some input must not make it fire."""
    fires = quiet = False
    for test in rule_unit_tests():
        for case in test.get("alert_rule_test", []):
            if case["alertname"] != rule["alert"]:
                continue
            expected = case.get("exp_alerts") or []
            if not expected:
                quiet = True
                continue
            fires = True
            # A near miss: an input series that no expected alert stands for.
            keys = {k for alert in expected for k in alert["exp_labels"]} & set(IDENTITY_LABELS)
            wanted = {_identity(alert["exp_labels"], keys) for alert in expected}
            for series in test["input_series"]:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', series["series"]))
                if keys <= labels.keys() and _identity(labels, keys) not in wanted:
                    quiet = True
    assert fires, f"no promtool case where {rule['alert']} fires"
    assert quiet, f"no promtool case where {rule['alert']} must stay quiet"


def seconds(duration: str) -> float:
    """A Prometheus duration such as `10m` or `1h30m` in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def _rules(name: str) -> list[dict[str, Any]]:
    """Every rule of alert `name` (the burn-rate alert has one per window)."""
    return [r for r in alerting_rules() if r["alert"] == name]


def _rule(name: str) -> dict[str, Any]:
    (rule,) = _rules(name)
    return rule


def test_queue_alerts_outlive_stale_after_until_the_exporter_alerts_take_over() -> None:
    """A firing queue alert must not resolve when the series vanish before DataStale fires.

    The queue series vanish at stale_after; DataStale fires `for` later (its threshold is the
    exporter's own stale_after_seconds) and inhibits them. Their keep_firing_for must cover
    that, plus a minute for evaluation and Alertmanager's group_wait.
    """
    data_stale = _rule("AlvariaEmailQueueDataStale")
    assert "alvaria_emailqueue_stale_after_seconds" in data_stale["expr"]
    assert (
        "alvaria_emailqueue_poll_interval_seconds" in _rule("AlvariaEmailQueuePollsFailing")["expr"]
    )
    lost = _rule("AlvariaEmailQueueOrganisationLost")
    for name in QUEUE_ALERTS - {"AlvariaEmailQueueServiceLevelBelowObjective"}:
        keep = seconds(_rule(name)["keep_firing_for"])
        assert keep >= seconds(data_stale["for"]) + 60, name
        # A dead replica: the series vanish at once; OrganisationLost must fire (and inhibit)
        # at an evaluation before the alert would resolve.
        assert keep >= seconds(lost["for"]) + 30, name


def test_at_risk_pages_soon_and_stops_soon() -> None:
    """`for` and keep_firing_for of ServiceLevelAtRisk leave most of the warning window."""
    rule = _rule("AlvariaEmailQueueServiceLevelAtRisk")
    assert seconds(rule["for"]) <= 30
    assert seconds(rule["keep_firing_for"]) <= 120
    assert "humanizeTimestamp" in rule["annotations"]["description"]
    assert "due in" not in rule["annotations"]["description"]


def test_not_draining_reads_pickups_not_departures() -> None:
    expr = _rule("AlvariaEmailQueueNotDraining")["expr"]
    assert "pickups:increase30m" in expr and "departures" not in expr


@pytest.mark.parametrize("name", sorted(QUEUE_ALERTS))
def test_queue_alerts_judge_inbound_email_and_keep_no_instance(name: str) -> None:
    for rule in _rules(name):
        assert 'email_type=~"InboundEmail"' in rule["expr"]
        assert "instance" not in rule["expr"].replace("without (instance, pod)", "")
    for test in rule_unit_tests():
        for case in test.get("alert_rule_test", []):
            if case["alertname"] == name:
                for alert in case.get("exp_alerts") or []:
                    assert "instance" not in alert["exp_labels"]
                    assert alert["exp_labels"]["email_type"] == "InboundEmail"


def test_queue_recording_rules_drop_the_replica() -> None:
    """Queue aggregates of raw metrics take the max across replicas and keep no instance."""
    path = PROMETHEUS_DIR / "rules" / "recording.rules.yml"
    checked = 0
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            name, expr = rule["record"], rule["expr"]
            raw = re.findall(r"(?<![\w:])alvaria_emailqueue_\w+", expr)
            if name.startswith("org_work_type") and raw:
                assert "max without (instance, pod" in expr, name
                checked += 1
            if name.startswith("org_work_type"):
                assert "instance" not in expr.replace("without (instance, pod", ""), name
    assert checked >= 5


def _identity(labels: dict[str, str], keys: set[str]) -> tuple[str, ...]:
    """The values of `keys` in `labels`, in a fixed order."""
    return tuple(labels[key] for key in sorted(keys))


def test_alertmanager_config_is_valid() -> None:
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        # A rule without a calendar (VIP: a continuous clock) pages at any hour.
        (
            [
                "alertname=AlvariaEmailQueueServiceLevelAtRisk",
                "severity=critical",
                "work_type=VIP-gold",
                "email_type=InboundEmail",
            ],
            ["pager"],
        ),
        # A rule with a calendar: a page while it is open, a ticket while it is closed (the
        # time intervals decide which of the two routes is active).
        (
            [
                "alertname=AlvariaEmailQueueServiceLevelBreached",
                "severity=critical",
                "work_type=Sales",
                "email_type=InboundEmail",
            ],
            ["pager", "ticket"],
        ),
        (
            [
                "alertname=AlvariaEmailQueueServiceLevelBelowObjective",
                "severity=warning",
                "work_type=Sales",
            ],
            ["ticket"],
        ),
        (["alertname=AlvariaEmailQueueOrganisationLost", "severity=critical"], ["pager"]),
        (["alertname=AlvariaEmailQueueAuthFailing", "severity=critical"], ["pager"]),
        (["alertname=AlvariaEmailQueueBacklogGrowing", "severity=warning"], ["chat"]),
        (["alertname=AlvariaEmailQueueBacklogHigh", "severity=warning"], ["chat"]),
        (["alertname=AlvariaEmailQueueNotDraining", "severity=warning"], ["chat"]),
        (["alertname=AlvariaEmailQueueDataStale", "severity=critical"], ["pager"]),
        (["alertname=Other", "severity=critical"], ["null"]),
        (["alertname=Other"], ["null"]),
    ],
)
def test_alertmanager_routes_by_severity_and_calendar(
    labels: list[str], receivers: list[str]
) -> None:
    result = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        "--config.file",
        str(ALERTMANAGER_CONFIG),
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().split(",") == receivers


def _alertmanager_config() -> dict[str, Any]:
    return dict(yaml.safe_load(ALERTMANAGER_CONFIG.read_text()))


def _inhibited_by(source: str, equal: list[str]) -> set[str]:
    """Alerts the example configuration inhibits while `source` fires, matching on `equal`."""
    names = {rule["alert"] for rule in alerting_rules()}
    inhibited = set()
    for inhibit in _alertmanager_config()["inhibit_rules"]:
        if _matches(inhibit["source_matchers"], source) and inhibit["equal"] == equal:
            inhibited |= {a for a in names if _matches(inhibit["target_matchers"], a)}
    return inhibited


def test_alertmanager_inhibits_by_organisation_never_by_job_alone() -> None:
    per_org = {
        "AlvariaEmailQueueAuthFailing",
        "AlvariaEmailQueuePollsFailing",
        "AlvariaEmailQueueDataStale",
        "AlvariaEmailQueueApiRateLimited",
        "AlvariaEmailQueueTokenRefreshFailing",
        "AlvariaEmailQueueLabelOverflow",
    }
    assert _inhibited_by("AlvariaEmailQueueOrganisationLost", ["job", "org"]) == (
        QUEUE_ALERTS | per_org
    )
    # A replica that cannot be scraped mutes only its own alerts (they carry `instance`).
    assert _inhibited_by("AlvariaEmailQueueExporterDown", ["job", "instance"]) == per_org
    for source in ("AlvariaEmailQueueAuthFailing", "AlvariaEmailQueueDataStale"):
        assert _inhibited_by(source, ["job", "org"]) == QUEUE_ALERTS, source
    assert _inhibited_by("AlvariaEmailQueuePollsFailing", ["job", "org"]) == WARNING_QUEUE_ALERTS
    for inhibit in _alertmanager_config()["inhibit_rules"]:
        assert {"org", "instance"} & set(inhibit["equal"]), inhibit


def test_refused_credentials_inhibit_their_symptoms() -> None:
    inhibited = _inhibited_by("AlvariaEmailQueueAuthFailing", ["job", "instance", "org"])
    assert inhibited == {
        "AlvariaEmailQueuePollsFailing",
        "AlvariaEmailQueueDataStale",
        "AlvariaEmailQueueTokenRefreshFailing",
    }


def test_a_warning_never_mutes_a_page() -> None:
    severities: dict[str, set[str]] = {}
    for rule in alerting_rules():
        severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    for inhibit in _alertmanager_config()["inhibit_rules"]:
        sources = [n for n in severities if _matches(inhibit["source_matchers"], n)]
        targets = [n for n in severities if _matches(inhibit["target_matchers"], n)]
        for source in sources:
            for target in targets:
                if "critical" in severities[target]:
                    assert severities[source] == {"critical"}, (source, target)


def _fired_labels(name: str) -> list[set[str]]:
    """The label names of every alert `name` the promtool tests expect to fire."""
    return [
        set(alert["exp_labels"])
        for test in rule_unit_tests()
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == name
        for alert in case.get("exp_alerts") or []
    ]


def test_inhibitions_match_on_labels_both_alerts_carry() -> None:
    """An `equal` label missing on the source or the target would make the inhibition a no-op."""
    names = [rule["alert"] for rule in alerting_rules()]
    for inhibit in _alertmanager_config()["inhibit_rules"]:
        sources = [n for n in names if _matches(inhibit["source_matchers"], n)]
        targets = [n for n in names if _matches(inhibit["target_matchers"], n)]
        assert sources and targets, inhibit
        for name in sources + targets:
            carried = [labels for labels in _fired_labels(name) if set(inhibit["equal"]) <= labels]
            assert carried, (name, inhibit["equal"])


def test_alertmanager_groups_only_this_exporters_alerts() -> None:
    route = _alertmanager_config()["route"]
    assert "group_by" not in route, "the root route would group every other alert too"
    (sub,) = route["routes"]
    assert sub["matchers"] == ['alertname=~"AlvariaEmailQueue.*"']
    assert sub["group_by"] == ["alertname", "org"]


def _service_level_route() -> dict[str, Any]:
    (sub,) = _alertmanager_config()["route"]["routes"]
    (route,) = [r for r in sub["routes"] if "ServiceLevel" in r["matchers"][0]]
    return dict(route)


def test_service_level_alerts_have_their_own_quick_groups() -> None:
    """A new at-risk alert is not held back by a group already notified for another."""
    route = _service_level_route()
    assert route["group_by"] == ["alertname", "org"]
    assert seconds(route["group_wait"]) <= 10
    assert seconds(route["group_interval"]) <= 30
    (sub,) = _alertmanager_config()["route"]["routes"]
    assert sub["routes"].index(route) == 0, "before the routes by severity"


def test_only_service_level_alerts_follow_the_calendar() -> None:
    """Exporter and queue alerts reach a receiver at any hour; service-level pages are gated
    by the calendar, and whenever their page route is muted a ticket route is active."""
    config = _alertmanager_config()
    (sub,) = config["route"]["routes"]
    for route in sub["routes"]:
        if route is not sub["routes"][0]:
            assert "active_time_intervals" not in route and "mute_time_intervals" not in route
    names = {interval["name"] for interval in config["time_intervals"]}
    routes = _service_level_route()["routes"]
    gated = [i for i, r in enumerate(routes) if "active_time_intervals" in r]
    assert gated, "the example's calendar rules"
    for i, route in enumerate(routes):
        intervals = route.get("active_time_intervals", []) + route.get("mute_time_intervals", [])
        assert set(intervals) <= names
        if route["receiver"] == "pager" and "active_time_intervals" in route:
            (calendar,) = {n.rsplit("-", 1)[0] for n in intervals}
            assert route["active_time_intervals"] == [f"{calendar}-open"]
            assert route["continue"] is True
            ticket = routes[i + 1]
            assert ticket["matchers"] == route["matchers"] and ticket["receiver"] == "ticket"
            holidays = route.get("mute_time_intervals", [])
            assert ticket["active_time_intervals"] == [f"{calendar}-closed", *holidays]
    assert routes[-1] == {"matchers": ['severity="critical"'], "receiver": "pager"}


def _matches(matchers: list[str], alertname: str) -> bool:
    """Whether an alert with this name satisfies every `alertname` matcher of the list."""
    for matcher in matchers:
        name, op, value = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', matcher).groups()  # type: ignore[union-attr]
        assert name == "alertname"
        hit = re.fullmatch(value, alertname) is not None if "~" in op else value == alertname
        if hit == op.startswith("!"):
            return False
    return True
