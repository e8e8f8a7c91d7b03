"""Service-level settings: defaults, env/flags, the YAML rules and calendars, and every error."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from exporter.app.main import main
from exporter.domain.errors import ConfigError
from exporter.fleet.policies import service_level_policy
from exporter.servicelevels.calendar import BusinessCalendar
from exporter.settings import advice, load, masked_dump
from exporter.settings.servicelevels import parse_service_levels

ENV = {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": "k", "ALVARIA_ACCESS_TOKEN": "t"}
GOOD = """
service_level_target: 8h
service_levels:
  - match: {work_type: "VIP.*", email_type: InboundEmail}
    target: 30m
    warning: 10m
  - match: {work_type: "Sales|Billing"}
    target: 4h
    calendar: uk
  - target: 1d
    calendar: uk
calendars:
  uk:
    timezone: Europe/London
    hours: {mon: "08:00-18:00", tue: "08:00-12:00,13:00-17:00", Wednesday: "09:00-17:00", sat: ""}
    holidays: [2026-12-25, "2026-12-26"]
"""


def config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "c.yml"
    path.write_text(text, encoding="utf-8")
    return {**ENV, "ALVARIA_CONFIG_FILE": str(path)}


def test_defaults_and_env() -> None:
    s = load([], ENV).settings
    assert (s.service_level_target, s.service_level_warning) == (86400.0, 3600.0)
    assert (s.service_levels, s.calendars) == ((), {})
    env = {**ENV, "ALVARIA_SERVICE_LEVEL_TARGET": "4h", "ALVARIA_SERVICE_LEVEL_WARNING": "15m"}
    s = load(["--service-level-warning", "20m"], env).settings
    assert (s.service_level_target, s.service_level_warning) == (14400.0, 1200.0)


def test_rules_and_calendars_from_yaml(tmp_path: Path) -> None:
    s = load([], config(tmp_path, GOOD)).settings
    assert [r.target for r in s.service_levels] == [1800.0, 14400.0, 86400.0]
    assert s.service_levels[0].match.work_type == "VIP.*"
    uk = s.calendars["uk"]
    assert uk.hours == {"mon": "08:00-18:00", "tue": "08:00-12:00,13:00-17:00", "wed": "09:00-17:00", "sat": ""}  # fmt: skip
    assert uk.holidays == (date(2026, 12, 25), date(2026, 12, 26))
    policy = service_level_policy(s)
    assert policy.default.target == 28800.0
    vip = policy.level(("InboundEmail", "VIP Gold"))
    assert (vip.target, vip.warning, vip.calendar) == (1800.0, 600.0, None)
    sales = policy.level(("InboundEmail", "Sales"))
    assert (sales.target, sales.warning, sales.calendar) == (14400.0, 3600.0, "uk")
    assert isinstance(sales.clock, BusinessCalendar) and sales.clock.hours[2] == ((540, 1020),)
    assert policy.level(("ManualOutboundEmail", "VIP")).target == 86400.0
    dumped = masked_dump(s)
    assert "Europe/London" in dumped and "VIP.*" in dumped


@pytest.mark.parametrize(
    ("text", "setting", "problem"),
    [
        (
            "service_levels: [{match: {work_type: '(VIP'}}]",
            "service_levels[0].match.work_type",
            "invalid regular expression",
        ),
        # Backreferences and look-around need backtracking: refused, not run against API labels.
        (
            r"service_levels: [{match: {work_type: '(a)\1'}}]",
            "service_levels[0].match.work_type",
            "RE2 syntax",
        ),
        (
            "service_levels: [{match: {email_type: '(?=In)Inbound.*'}}]",
            "service_levels[0].match.email_type",
            "invalid regular expression",
        ),
        (
            "service_levels: [{calendar: nope}]",
            "service_levels[0].calendar",
            "unknown calendar 'nope'",
        ),
        ("service_levels: [{target: 0}]", "service_levels[0].target", "greater than zero"),
        ("service_levels: [{warning: soon}]", "service_levels[0].warning", "not a duration"),
        ("service_levels: [{colour: red}]", "service_levels[0].colour", "unknown key"),
        ("service_levels: [{match: {queue: x}}]", "service_levels[0].match.queue", "unknown key"),
        ("service_levels: {a: 1}", "service_levels", "must be a list"),
        (
            "calendars: {uk: {timezone: Mars/Base, hours: {mon: '08:00-18:00'}}}",
            "calendars.uk.timezone",
            "unknown time zone",
        ),
        (
            "calendars: {uk: {timezone: UTC, hours: {mon: '08:00-25:00'}}}",
            "calendars.uk.hours.mon",
            "25:00",
        ),
        (
            "calendars: {uk: {timezone: UTC, hours: {funday: '08:00-18:00'}}}",
            "calendars.uk.hours.funday",
            "not a weekday",
        ),
        (
            "calendars: {uk: {timezone: UTC, hours: {mon: ''}}}",
            "calendars.uk.hours",
            "opens on no day",
        ),
        ("calendars: {uk: {timezone: UTC}}", "calendars.uk.hours", "required"),
        ("calendars: {uk: {hours: {mon: '08:00-18:00'}}}", "calendars.uk.timezone", "required"),
        (
            "calendars: {uk: {timezone: UTC, hours: {mon: '9-5'}, holidays: [someday]}}",
            "calendars.uk.hours.mon",
            "not a range",
        ),
        (
            "calendars: {uk: {timezone: UTC, hours: {mon: '09:00-17:00'}, holidays: [someday]}}",
            "calendars.uk.holidays[0]",
            "not a date",
        ),
        # A date YAML itself would read, but that does not exist: named where it is.
        (
            "calendars: {office: {timezone: UTC, hours: {mon: '09:00-17:00'}, "
            "holidays: [2026-12-24, 2026-02-30]}}",
            "calendars.office.holidays[1]",
            "not a date",
        ),
    ],
)
def test_each_bad_setting_is_named(tmp_path: Path, text: str, setting: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load([], config(tmp_path, text))
    assert caught.value.setting == setting
    assert problem in caught.value.problem
    assert "c.yml" in caught.value.source


def test_every_problem_is_found_in_one_pass() -> None:
    rules = [{"match": {"work_type": "("}}, {"calendar": "nope", "target": "-1"}]
    calendars = {"uk": {"timezone": "Nowhere/Land", "hours": {"mon": "25:00-26:00"}}}
    _, _, errors = parse_service_levels(rules, calendars, "config file c.yml")
    assert [e.setting for e in errors] == [
        "calendars.uk.timezone",
        "calendars.uk.hours.mon",
        "service_levels[0].match.work_type",
        "service_levels[1].target",
        "service_levels[1].calendar",
    ]


def test_bad_service_level_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in config(tmp_path, "service_levels: [{calendar: nope}]").items():
        monkeypatch.setenv(key, value)
    assert main(["--check-config"]) == 2
    assert "service_levels[0].calendar" in capsys.readouterr().err


def test_the_documented_example_loads(tmp_path: Path) -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    text = page.read_text(encoding="utf-8")
    section = text[text.index("## Service levels and calendars") :]
    example = section[section.index("```yaml") + len("```yaml") : section.index("```\n")]
    s = load([], config(tmp_path, example)).settings
    policy = service_level_policy(s)
    assert policy.level(("InboundEmail", "VIP Gold")).target == 1800.0
    assert policy.level(("InboundEmail", "Billing")).calendar == "uk-office"
    assert policy.level(("ManualOutboundEmail", "Returns")).target == 8 * 3600.0


def test_advice_on_rules_that_never_apply_and_long_warnings(tmp_path: Path) -> None:
    text = """
service_level_warning: 2h
service_levels:
  - match: {work_type: Sales}
    target: 1h
  - target: 4h
  - match: {work_type: Billing}
    target: 1h
    warning: 10m
"""
    notes = advice(load([], config(tmp_path, text)).settings)
    assert "service_levels[0]: warning (7200s) is not shorter than the target (3600s)" in notes[0]
    assert notes[1] == "service_levels[2] never applies: service_levels[1] matches every group"
    assert len(notes) == 2
    assert not advice(load([], config(tmp_path, GOOD)).settings)


def test_advice_on_warnings_shorter_than_the_alerting_pipeline(tmp_path: Path) -> None:
    text = """
service_level_warning: 90s
service_levels:
  - match: {work_type: Sales}
    target: 1h
    warning: 1m
  - match: {work_type: Billing}
    target: 1h
    warning: 0s
  - match: {work_type: Support}
    target: 1h
    warning: 2m
"""
    notes = advice(load([], config(tmp_path, text)).settings)
    assert notes == [
        "service_levels[0].warning (60s) is shorter than the 120s the shipped alerting takes to "
        "deliver AlvariaEmailQueueServiceLevelAtRisk (scrape 30s + evaluation 30s + for 30s + "
        "group_interval 30s): the page would come after the breach; what reaches people is "
        "warning - 120s",
        "service_level_warning (90s) is shorter than the 120s the shipped alerting takes to "
        "deliver AlvariaEmailQueueServiceLevelAtRisk (scrape 30s + evaluation 30s + for 30s + "
        "group_interval 30s): the page would come after the breach; what reaches people is "
        "warning - 120s",
    ]


def test_check_config_warns_about_a_warning_too_short_to_page_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in config(tmp_path, "service_level_warning: 1m\n").items():
        monkeypatch.setenv(key, value)
    assert main(["--check-config"]) == 0
    err = capsys.readouterr().err
    assert "warning: service_level_warning (60s) is shorter than the 120s" in err
