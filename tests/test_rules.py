"""Prometheus rules, their unit tests, the runbooks and the example Alertmanager configuration."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.rules.yml"))
RULE_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
RUNBOOKS = PROMETHEUS_DIR / "runbooks.md"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

RUNBOOK_BASE_URL = (
    "https://github.com/alvaria-emailqueue-exporter/alvaria-emailqueue-exporter"
    "/blob/main/deploy/prometheus/runbooks.md"
)
SEVERITIES = {"critical", "warning"}
# Labels that tell one firing instance of an alert from another, most specific first.
IDENTITY_LABELS = ("work_type", "label", "org", "instance")


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
    assert names == {
        "AlvariaEmailQueueExporterDown",
        "AlvariaEmailQueuePollsFailing",
        "AlvariaEmailQueueDataStale",
        "AlvariaEmailQueueBacklogHigh",
        "AlvariaEmailQueueOldestEmailTooOld",
        "AlvariaEmailQueueBacklogGrowing",
        "AlvariaEmailQueueNotDraining",
        "AlvariaEmailQueueApiRateLimited",
        "AlvariaEmailQueueTokenRefreshFailing",
        "AlvariaEmailQueueLabelOverflow",
    }


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda r: r["alert"])
def test_alert_has_severity_annotations_and_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule.get("for"), "every alert waits before it fires"
    annotations = rule["annotations"]
    assert annotations["summary"]
    assert "{{ $labels." in annotations["description"], "description must be templated"
    anchor = rule["alert"].lower()
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE_URL}#{anchor}"
    assert anchor in runbook_anchors(), f"runbooks.md has no section for {rule['alert']}"


def test_every_runbook_section_has_the_four_parts() -> None:
    sections = re.split(r"^## ", RUNBOOKS.read_text(), flags=re.MULTILINE)[1:]
    assert len(sections) == len(alerting_rules())
    for section in sections:
        for part in ("**Meaning.**", "**Impact.**", "**Diagnose.**", "**Mitigate.**"):
            assert part in section, (section.splitlines()[0], part)


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


def _identity(labels: dict[str, str], keys: set[str]) -> tuple[str, ...]:
    """The values of `keys` in `labels`, in a fixed order."""
    return tuple(labels[key] for key in sorted(keys))


def test_alertmanager_config_is_valid() -> None:
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=AlvariaEmailQueueOldestEmailTooOld", "severity=critical"], "pager"),
        (["alertname=AlvariaEmailQueueBacklogHigh", "severity=warning"], "chat"),
        (["alertname=Other"], "null"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
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
    assert result.stdout.split() == [receiver]


def test_alertmanager_inhibits_queue_alerts_while_the_exporter_fails() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    queue_alerts = {
        rule["alert"]
        for rule in alerting_rules()
        if "work_type" in rule["annotations"]["description"]
    }
    for source, equal in (
        ("AlvariaEmailQueueExporterDown", ["instance"]),
        ("AlvariaEmailQueuePollsFailing", ["org", "instance"]),
    ):
        inhibited = set()
        for inhibit in config["inhibit_rules"]:
            if _matches(inhibit["source_matchers"], source) and inhibit["equal"] == equal:
                inhibited |= {a for a in queue_alerts if _matches(inhibit["target_matchers"], a)}
        assert inhibited == queue_alerts, source


def _matches(matchers: list[str], alertname: str) -> bool:
    """Whether an alert with this name satisfies every `alertname` matcher of the list."""
    for matcher in matchers:
        name, op, value = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', matcher).groups()  # type: ignore[union-attr]
        assert name == "alertname"
        hit = re.fullmatch(value, alertname) is not None if "~" in op else value == alertname
        if hit == op.startswith("!"):
            return False
    return True
