"""The exporter's service-level rules and business calendars, as Alertmanager routes and time intervals.

One source of truth: the `service_levels:` and `calendars:` of an exporter configuration file,
read with the exporter's own parser (`exporter.settings.servicelevels`), so the routing opens
and closes exactly where the exporter's clocks do.

- Each calendar becomes three Alertmanager `time_intervals`: `<name>-open` (the weekly opening
  hours), `<name>-closed` (their complement) and, when it has holidays, `<name>-holidays`
  (whole local dates), all in the calendar's time zone (`location`).
- Each service-level rule becomes a route matching the same `work_type` / `email_type`
  regexes, in the same order (Alertmanager takes the first matching route, as the exporter
  takes the first matching rule). A rule with a calendar pages while it is open and not a
  holiday and sends a ticket otherwise; a rule without one pages at any hour. The exporter's
  defaults (no calendar) come last.

Semantics the exporter and the routing share (README, "Clocks"): ages and breaches count open
time only, *at risk* is "breaches within `warning` of wall-clock time", and a breached email
stays breached while the calendar is closed. So a service-level alert can fire while the office
is closed (an email due at 08:30 is at risk from 07:30 with a one-hour warning; one that breached
on Friday at 17:00 stays breached all weekend): it then opens a ticket instead of paging, and if
it still fires when the calendar opens, it pages then (Alertmanager sends a muted alert at the
first group_interval of the active period).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from exporter.settings.servicelevels import (
    CalendarSettings,
    ServiceLevelRuleSettings,
    parse_service_levels,
)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_MINUTES = 1440
Route = dict[str, Any]


@dataclass(frozen=True)
class ServiceLevels:
    """The service-level rules and calendars of one exporter configuration file."""

    rules: tuple[ServiceLevelRuleSettings, ...]
    calendars: dict[str, CalendarSettings]
    source: str


def load(path: Path) -> ServiceLevels:
    """`service_levels:` and `calendars:` of an exporter configuration file.

    Raises ValueError naming every problem, each at its place in the file, as the exporter's
    `--check-config` would.
    """
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a mapping of settings")
    rules, calendars, errors = parse_service_levels(
        raw.get("service_levels"), raw.get("calendars"), str(path)
    )
    if errors:
        raise ValueError("\n".join(str(error) for error in errors))
    return ServiceLevels(rules, calendars, str(path))


def _ranges(text: str) -> list[tuple[int, int]]:
    """`"08:00-12:00,13:00-17:00"` as minutes after midnight (validated by the exporter)."""
    out = []
    for part in filter(None, (p.strip().replace(" ", "") for p in text.split(","))):
        start, end = part.split("-")
        out.append((_minutes(start), _minutes(end)))
    return sorted(out)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, at = [], 0
    for start, end in ranges:
        if start > at:
            out.append((at, start))
        at = max(at, end)
    if at < DAY_MINUTES:
        out.append((at, DAY_MINUTES))
    return out


def _weekly(per_day: list[list[tuple[int, int]]], zone: str) -> list[dict[str, Any]]:
    """Alertmanager time ranges for per-weekday minute ranges, days with equal hours together."""
    days: dict[tuple[tuple[int, int], ...], list[str]] = defaultdict(list)
    for name, ranges in zip(WEEKDAYS, per_day, strict=True):
        if ranges:
            days[tuple(ranges)].append(name)
    return [
        {
            "weekdays": names,
            "times": [{"start_time": _hhmm(s), "end_time": _hhmm(e)} for s, e in ranges],
            "location": zone,
        }
        for ranges, names in days.items()
    ]


def interval_name(calendar: str, kind: str) -> str:
    """The name of a generated time interval: `kind` is open, closed or holidays."""
    return f"alvaria-calendar-{calendar}-{kind}"


def time_intervals(levels: ServiceLevels) -> list[dict[str, Any]]:
    """Alertmanager `time_intervals` for every calendar: open, closed and holidays."""
    out: list[dict[str, Any]] = []
    for name, calendar in levels.calendars.items():
        short = [day[:3] for day in WEEKDAYS]
        open_ = [_ranges(calendar.hours.get(day, "")) for day in short]
        out.append({"name": interval_name(name, "open"), "time_intervals": _weekly(open_, calendar.timezone)})  # fmt: skip
        closed = [_complement(ranges) for ranges in open_]
        out.append({"name": interval_name(name, "closed"), "time_intervals": _weekly(closed, calendar.timezone)})  # fmt: skip
        if calendar.holidays:
            months: dict[tuple[int, int], list[int]] = defaultdict(list)
            for day in sorted(set(calendar.holidays)):
                months[(day.year, day.month)].append(day.day)
            out.append(
                {
                    "name": interval_name(name, "holidays"),
                    "time_intervals": [
                        {
                            "years": [str(year)],
                            "months": [str(month)],
                            "days_of_month": [str(d) for d in days],
                            "location": calendar.timezone,
                        }
                        for (year, month), days in months.items()
                    ],
                }
            )
    return out


def matcher(label: str, op: str, value: str) -> str:
    """An Alertmanager matcher string, the value quoted and escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{label}{op}"{escaped}"'


def _rule_routes(levels: ServiceLevels, matchers: list[str], calendar: str | None) -> list[Route]:
    """Critical service-level alerts of one rule: page while open, else a ticket."""
    if calendar is None:
        return [{"matchers": matchers, "receiver": "pager"}]
    holidays = bool(levels.calendars[calendar].holidays)
    page: Route = {
        "matchers": matchers,
        "receiver": "pager",
        "active_time_intervals": [interval_name(calendar, "open")],
    }
    if holidays:
        page["mute_time_intervals"] = [interval_name(calendar, "holidays")]
    page["continue"] = True
    closed = [interval_name(calendar, "closed")]
    if holidays:
        closed.append(interval_name(calendar, "holidays"))
    ticket: Route = {"matchers": matchers, "receiver": "ticket", "active_time_intervals": closed}
    return [page, ticket]


def service_level_routes(levels: ServiceLevels) -> list[Route]:
    """The routes of the critical service-level alerts, one rule after the other."""
    routes: list[Route] = []
    for rule in levels.rules:
        matchers = ['severity="critical"']
        if rule.match.work_type is not None:
            matchers.append(matcher("work_type", "=~", rule.match.work_type))
        if rule.match.email_type is not None:
            matchers.append(matcher("email_type", "=~", rule.match.email_type))
        routes += _rule_routes(levels, matchers, rule.calendar)
        if len(matchers) == 1:
            return routes  # a rule matching every group: later rules never apply
    return routes + _rule_routes(levels, ['severity="critical"'], None)
