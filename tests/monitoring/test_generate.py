"""The one monitoring configuration: generated files are current and follow every change."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from monitoring import generate
from monitoring.config import CONFIG, BurnWindow, Override, Threshold
from monitoring.durations import duration, scaled, seconds
from monitoring.timelapse import time_lapse
from tests.monitoring.test_rules import run, tool

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WAITING = "Queued|Queued2|Transferred|Reassigned"


def test_every_generated_file_is_current() -> None:
    assert generate.stale() == [], "run `make monitoring`"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    for path, text in generate.outputs().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    assert generate.stale(tmp_path) == []
    edited = tmp_path / generate.RULES_DIR / "alerts.rules.yml"
    edited.write_text(edited.read_text().replace("for: 5m", "for: 6m"))
    assert generate.stale(tmp_path) == [generate.RULES_DIR / "alerts.rules.yml"]


def test_make_monitoring_check_exits_zero_on_the_committed_tree() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "monitoring.generate", "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_mixin_layout_holds_the_same_rules_and_dashboards() -> None:
    files = generate.outputs()
    mixin = generate.MIXIN_DIR
    assert files[mixin / "prometheus_alerts.yaml"] == files[generate.RULES_DIR / "alerts.rules.yml"]
    assert (
        files[mixin / "prometheus_rules.yaml"] == files[generate.RULES_DIR / "recording.rules.yml"]
    )
    boards = {p.name for p in files if p.parent == mixin / "dashboards_out"}
    assert boards == {"emailqueue-overview.json", "exporter-health.json"}


def test_changing_the_waiting_states_in_one_place_changes_every_rule_and_panel() -> None:
    before = generate.outputs()
    changed = dataclasses.replace(CONFIG, waiting_states=("Queued", "OnHold"))
    after = generate.outputs(changed)
    users = {path for path, text in before.items() if DEFAULT_WAITING in text}
    # The recording rules, the alerts' annotations, both dashboard copies and the manifest.
    assert {p.name for p in users} >= {
        "recording.rules.yml",
        "alerts.rules.yml",
        "prometheus_rules.yaml",
        "prometheusrule.yaml",
        "emailqueue-overview.json",
    }
    for path, text in after.items():
        assert DEFAULT_WAITING not in text, path
        assert ("Queued|OnHold" in text) == (path in users), path


def test_changing_the_job_selector_changes_every_rule_and_the_job_variable() -> None:
    changed = dataclasses.replace(CONFIG, job_selector='job="emailq"')
    for path, text in generate.outputs(changed).items():
        assert ".*alvaria-emailqueue.*" not in text, path
    overview = generate.outputs(changed)[generate.DASHBOARD_DIR / "emailqueue-overview.json"]
    assert 'label_values(alvaria_emailqueue_up{job=\\"emailq\\"}, job)' in overview


def test_a_burn_window_that_could_never_fire_is_refused() -> None:
    impossible = dataclasses.replace(
        CONFIG, burn_windows=(BurnWindow("1h", "5m", 14.4, "critical", "2m"),)
    )
    with pytest.raises(ValueError, match=r"factor 14\.4 over 1h can never fire"):
        generate.alert_groups(impossible)
    # With a 99.9% objective the workbook's factor is fine.
    strict = dataclasses.replace(impossible, service_level_objective=Threshold(0.999))
    assert generate.alert_groups(strict)


def test_configuration_problems_are_all_reported() -> None:
    bad = dataclasses.replace(
        CONFIG,
        waiting_states=(),
        burn_windows=(BurnWindow("5m", "1h", 1, "critical", "2m"),),
    )
    problems = bad.check()
    assert any("waiting_states" in p for p in problems)
    assert any("short 1h >= long 5m" in p for p in problems)


def test_per_work_type_overrides_apply_first_match_wins(tmp_path: Path) -> None:
    config = dataclasses.replace(
        CONFIG,
        backlog_high=Threshold(
            500,
            (
                Override(50, (("work_type", "VIP.*"),)),
                Override(2000, (("org", "acme"), ("work_type", "Campaigns|VIP-bulk"))),
            ),
        ),
    )
    files = generate.outputs(config)
    rules = tmp_path / "rules.yml"
    rules.write_text(files[generate.RULES_DIR / "recording.rules.yml"])
    emails = 'alvaria_emailqueue_emails{job="alvaria-emailqueue", instance="e", org="acme", state="Queued", email_type="InboundEmail", work_type="%s"}'
    threshold = "org_work_type_email_type:alvaria_emailqueue_waiting_emails:threshold"
    expected = {"VIP-gold": 50, "VIP-bulk": 50, "Campaigns": 2000, "Billing": 500}
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": emails % work_type, "values": "1x5"} for work_type in expected
                ],
                "promql_expr_test": [
                    {
                        "expr": f'{threshold}{{work_type="{work_type}"}}',
                        "eval_time": "2m",
                        "exp_samples": [
                            {
                                "labels": f'{threshold}{{job="alvaria-emailqueue", org="acme", '
                                f'email_type="InboundEmail", work_type="{work_type}"}}',
                                "value": value,
                            }
                        ],
                    }
                    for work_type, value in expected.items()
                ],
            }
        ],
    }
    test_file = tmp_path / "overrides.test.yml"
    test_file.write_text(yaml.safe_dump(tests))
    result = run(tool("promtool"), "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


def test_time_lapse_divides_every_duration() -> None:
    fast = time_lapse(CONFIG, 30)
    assert fast.alert("BacklogHigh").for_ == "30s"
    assert fast.alert("DataStale").keep_firing_for == "4s"
    assert fast.backlog_growing_window == "1m"
    assert fast.burn_windows[0] == BurnWindow("2m", "10s", 4, "critical", "4s")
    assert fast.fallback_stale_after_seconds == 5
    text = generate.dump({"groups": generate.alert_groups(fast)})
    assert "deriv1m" in text and "offset 1m" in text and "[10s]" in text


@pytest.mark.parametrize(
    ("text", "value"), [("90s", 90), ("1h30m", 5400), ("1d", 86400), ("250ms", 0.25)]
)
def test_durations_round_trip(text: str, value: float) -> None:
    assert seconds(text) == value
    assert seconds(duration(value)) == value
    assert scaled(text, 2) == duration(value * 2)


@pytest.mark.parametrize("bad", ["", "5", "5 m", "1m5", "m"])
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        seconds(bad)


def test_a_lost_shard_of_many_organisations_is_named_in_bounded_text(tmp_path: Path) -> None:
    """22 organisations lost at once: each alert names the first 20 and says how many."""
    rules = tmp_path / "alerts.yml"
    rules.write_text(generate.outputs()[generate.RULES_DIR / "alerts.rules.yml"])
    orgs = [f"org-{i:02d}" for i in range(22)]
    up = 'alvaria_emailqueue_up{job="alvaria-emailqueue", instance="e-1", org="%s"}'
    listed = ", ".join(orgs[:20]) + " ... (22 in all)"
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": up % org, "values": "1x2 stale"} for org in orgs],
                "alert_rule_test": [
                    {
                        "alertname": "AlvariaEmailQueueOrganisationLost",
                        "eval_time": "5m",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": "alvaria-emailqueue",
                                    "org": org,
                                },
                                "exp_annotations": {
                                    "summary": f"Organisation {org} is exported by no replica "
                                    "of job alvaria-emailqueue",
                                    "description": f"Organisation {org} was exported in the last "
                                    "1h by e-1 and now by no replica of job alvaria-emailqueue: "
                                    "the replica died, left service discovery or stopped polling "
                                    "it, so its queue is not monitored and no queue or "
                                    "service-level alert can fire for it (they are inhibited). "
                                    f"Organisations of the job lost now: {listed}.",
                                    "runbook_url": f"{CONFIG.runbook_url}#alvariaemailqueueorganisationlost",
                                    "dashboard_url": "http://localhost:3000/d/alvaria-emailqueue-"
                                    "exporter-health?orgId=1&var-job=alvaria-emailqueue"
                                    f"&var-org={org}",
                                },
                            }
                            for org in orgs
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "lost.test.yml"
    test_file.write_text(yaml.safe_dump(tests))
    result = run(tool("promtool"), "test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
