"""The example Alertmanager configuration, generated from the exporter's service levels and calendars."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from exporter.app.main import main as exporter_main
from exporter.servicelevels.calendar import BusinessCalendar, parse_day_hours
from exporter.settings.advice import ALERT_PIPELINE
from exporter.settings.servicelevels import CalendarSettings
from monitoring import alertmanager, calendars
from monitoring.config import CONFIG
from monitoring.durations import seconds
from tests.monitoring.test_rules import run, tool

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / alertmanager.EXAMPLE_SERVICE_LEVELS
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Two calendars whose clocks change in the weeks sampled below (London 2026-03-29, New York
# 2026-03-08), split days, a night shift across midnight, holidays, and a regex with quotes.
CUSTOM = """
service_levels:
  - match: {work_type: 'VIP "gold" \\d+', email_type: InboundEmail}
    target: 30m
  - match: {work_type: "Night.*"}
    target: 2h
    calendar: nyc-nights
  - match: {email_type: InboundEmail}
    target: 4h
    calendar: uk-office
calendars:
  uk-office:
    timezone: Europe/London
    hours: {mon: "08:00-18:00", tue: "08:00-18:00", wed: "08:00-18:00", thu: "08:00-18:00",
            fri: "08:00-12:00,13:00-17:00", sat: "", sun: ""}
    holidays: [2026-03-30, 2026-04-03, 2026-12-25]
  nyc-nights:
    timezone: America/New_York
    hours: {mon: "22:00-24:00", tue: "00:00-06:00,22:00-24:00", wed: "00:00-06:00",
            friday: "01:30-03:00", sun: "00:00-24:00"}
"""


def _custom(tmp_path: Path) -> Path:
    path = tmp_path / "exporter.yml"
    path.write_text(CUSTOM, encoding="utf-8")
    return path


def _active(intervals: list[dict[str, Any]], t: float) -> bool:
    """Whether Alertmanager's time interval (one `time_intervals` entry) contains instant `t`."""
    for spec in intervals:
        local = datetime.fromtimestamp(t, ZoneInfo(spec.get("location", "UTC")))
        minute = local.hour * 60 + local.minute
        checks = [
            "weekdays" not in spec or calendars.WEEKDAYS[local.weekday()] in spec["weekdays"],
            "times" not in spec
            or any(
                calendars._minutes(r["start_time"]) <= minute < calendars._minutes(r["end_time"])
                for r in spec["times"]
            ),
            "days_of_month" not in spec or str(local.day) in spec["days_of_month"],
            "months" not in spec or str(local.month) in spec["months"],
            "years" not in spec or str(local.year) in spec["years"],
        ]
        if all(checks):
            return True
    return False


def _exporter_calendar(levels: calendars.ServiceLevels, name: str) -> BusinessCalendar:
    settings = levels.calendars[name]
    hours = tuple(parse_day_hours(settings.hours.get(day, "")) for day in WEEKDAYS)
    return BusinessCalendar(settings.timezone, hours, frozenset(settings.holidays))


@pytest.mark.parametrize(
    ("calendar", "start"),
    [
        ("uk-office", datetime(2026, 3, 23, tzinfo=UTC)),
        ("nyc-nights", datetime(2026, 3, 2, tzinfo=UTC)),
    ],
)
def test_pages_exactly_while_the_exporters_calendar_is_open(
    tmp_path: Path, calendar: str, start: datetime
) -> None:
    """Over a fortnight with a clock change and holidays, every 15 minutes: the page route is
    active exactly when the exporter's clock counts time, the ticket route exactly otherwise."""
    levels = calendars.load(_custom(tmp_path))
    clock = _exporter_calendar(levels, calendar)
    intervals = {i["name"]: i["time_intervals"] for i in calendars.time_intervals(levels)}
    routes = [
        r
        for r in calendars.service_level_routes(levels)
        if any(calendar in n for n in r.get("active_time_intervals", []))
    ]
    assert [r["receiver"] for r in routes] == ["pager", "ticket"]

    def sends(route: dict[str, Any], t: float) -> bool:
        """Whether Alertmanager notifies through `route` at `t` (not muted by time)."""
        active = any(_active(intervals[n], t) for n in route["active_time_intervals"])
        return active and not any(
            _active(intervals[n], t) for n in route.get("mute_time_intervals", [])
        )

    holidays = intervals.get(calendars.interval_name(calendar, "holidays"), [])
    checked = 0
    t = start.timestamp()
    while t < (start + timedelta(days=14)).timestamp():
        open_ = clock.elapsed(t, t + 1) > 0
        page, ticket = (sends(route, t) for route in routes)
        assert page == open_, datetime.fromtimestamp(t, UTC)
        assert ticket != page, datetime.fromtimestamp(t, UTC)
        checked += open_
        t += 900
    assert checked > 50
    if calendar == "uk-office":  # the Monday after the clock change is a holiday
        monday = datetime(2026, 3, 30, 10, tzinfo=ZoneInfo("Europe/London")).timestamp()
        assert not clock.elapsed(monday, monday + 1) and _active(holidays, monday)


def test_routes_follow_the_exporters_rules_in_order(tmp_path: Path) -> None:
    text = alertmanager.render(CONFIG, calendars.load(_custom(tmp_path)))
    path = tmp_path / "alertmanager.yml"
    path.write_text(text, encoding="utf-8")
    result = run(tool("amtool"), "check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    cases = {
        # The quoted regex survives the matcher syntax; the VIP rule has no calendar.
        ('VIP "gold" 7', "InboundEmail"): "pager",
        ("Night-shift", "InboundEmail"): "pager,ticket",
        ("Sales", "InboundEmail"): "pager,ticket",
        # No rule matches: the exporter's defaults, a continuous clock.
        ("Sales", "CampaignOutboundEmail"): "pager",
    }
    for (work_type, email_type), receivers in cases.items():
        labels = (
            calendars.matcher("work_type", "=", work_type),
            calendars.matcher("email_type", "=", email_type),
        )
        result = run(
            tool("amtool"),
            "config",
            "routes",
            "test",
            "--config.file",
            str(path),
            "alertname=AlvariaEmailQueueServiceLevelAtRisk",
            "severity=critical",
            *labels,
        )
        assert result.stdout.strip() == receivers, (labels, result.stdout + result.stderr)
    routes = yaml.safe_load(text)["route"]["routes"][0]["routes"][0]["routes"]
    night = [r for r in routes if 'work_type=~"Night.*"' in r["matchers"]]
    assert [r.get("active_time_intervals") for r in night] == [
        ["alvaria-calendar-nyc-nights-open"],
        ["alvaria-calendar-nyc-nights-closed"],
    ]
    assert "mute_time_intervals" not in night[0], "no holidays, no holiday interval"


def test_fleet_wide_grouping_option(tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, service_level_group_by=alertmanager.FLEET_GROUP_BY)
    text = alertmanager.render(config, calendars.load(EXAMPLE))
    path = tmp_path / "alertmanager.yml"
    path.write_text(text, encoding="utf-8")
    result = run(tool("amtool"), "check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    route = yaml.safe_load(text)["route"]["routes"][0]["routes"][0]
    assert route["group_by"] == ["alertname", "work_type", "email_type"]
    assert "Grouped fleet-wide" in text


def test_the_committed_example_comes_from_the_example_exporter_configuration() -> None:
    levels = calendars.load(EXAMPLE)
    committed = (ROOT / alertmanager.PATH).read_text(encoding="utf-8")
    names = {i["name"] for i in yaml.safe_load(committed)["time_intervals"]}
    assert names == {i["name"] for i in calendars.time_intervals(levels)}
    assert names == {
        "alvaria-calendar-uk-office-open",
        "alvaria-calendar-uk-office-closed",
        "alvaria-calendar-uk-office-holidays",
    }


def test_the_example_is_a_valid_exporter_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file the routing is generated from is one the exporter reads, without advice."""
    env = {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": "k", "ALVARIA_ACCESS_TOKEN": "t"}
    for key, value in (env | {"ALVARIA_CONFIG_FILE": str(EXAMPLE)}).items():
        monkeypatch.setenv(key, value)
    assert exporter_main(["--check-config"]) == 0
    out, err = capsys.readouterr()
    assert "uk-office" in out and "warning:" not in err


def test_a_bad_exporter_configuration_is_refused_naming_the_place(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(
        "calendars:\n  uk:\n    timezone: Mars/Olympus\n    hours: {mon: '25:00-26:00'}\n"
        "service_levels:\n  - calendar: nowhere\n",
        encoding="utf-8",
    )
    errors = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stderr", errors)
        assert alertmanager.main(["--exporter-config", str(path)], write=lambda _: None) == 2
    text = errors.getvalue()
    assert "calendars.uk.timezone" in text and "calendars.uk.hours.mon" in text
    assert "service_levels[0].calendar" in text
    assert "Traceback" not in text


def test_the_command_line_prints_the_configuration_for_a_file(tmp_path: Path) -> None:
    out: list[str] = []
    assert alertmanager.main(["--exporter-config", str(_custom(tmp_path))], write=out.append) == 0
    assert out == [alertmanager.render(CONFIG, calendars.load(_custom(tmp_path)))]


def test_check_config_advice_uses_the_shipped_pipeline() -> None:
    """The exporter's `--check-config` warns with the delays the shipped files really have."""
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["global"]
    route = yaml.safe_load((ROOT / alertmanager.PATH).read_text())["route"]["routes"][0]
    (service_level,) = [r for r in route["routes"] if "ServiceLevel" in r["matchers"][0]]
    rule = next(
        r
        for g in yaml.safe_load((ROOT / "deploy/prometheus/rules/alerts.rules.yml").read_text())[
            "groups"
        ]
        for r in g["rules"]
        if r.get("alert") == "AlvariaEmailQueueServiceLevelAtRisk"
    )
    assert dict(ALERT_PIPELINE) == {
        "scrape": seconds(prometheus["scrape_interval"]),
        "evaluation": seconds(prometheus["evaluation_interval"]),
        "for": seconds(rule["for"]),
        "group_interval": seconds(service_level["group_interval"]),
    }
    assert seconds(service_level["group_wait"]) <= seconds(service_level["group_interval"])
    assert sum(dict(ALERT_PIPELINE).values()) == alertmanager.pipeline_delay(CONFIG)


def test_holidays_are_grouped_by_month() -> None:
    levels = calendars.ServiceLevels(
        (),
        {
            "x": CalendarSettings(
                timezone="UTC",
                hours={"mon": "08:00-18:00"},
                holidays=(date(2026, 12, 28), date(2026, 12, 25), date(2027, 1, 1)),
            )
        },
        "x.yml",
    )
    (holidays,) = [i for i in calendars.time_intervals(levels) if i["name"].endswith("holidays")]
    assert holidays["time_intervals"] == [
        {"years": ["2026"], "months": ["12"], "days_of_month": ["25", "28"], "location": "UTC"},
        {"years": ["2027"], "months": ["1"], "days_of_month": ["1"], "location": "UTC"},
    ]
