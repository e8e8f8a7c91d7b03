"""The YAML-only service-level settings: ``service_levels`` (ordered rules) and ``calendars``.

Checked by hand rather than by pydantic so that every problem is reported at once, each naming
the exact place in the file (``service_levels[2].match.work_type``, ``calendars.uk.hours.mon``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict

from exporter.domain.errors import ConfigError
from exporter.servicelevels.calendar import WEEKDAYS, parse_day_hours
from exporter.servicelevels.patterns import pattern_problem, set_problem
from exporter.settings.values import parse_duration, type_name

# Bounds on what one config file can ask for (each rule is tried per new group; each holiday
# is a set member; a regex is compiled once).
MAX_RULES = 1000
MAX_CALENDARS = 100
MAX_HOLIDAYS = 5000
MAX_PATTERN_LENGTH = 1000
_DAY_NAMES = {name: name for name in WEEKDAYS} | {
    full: full[:3]
    for full in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
}


class CalendarSettings(BaseModel):
    """A business-hours clock: opening hours per weekday in a time zone, minus holidays."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str
    hours: dict[str, str]  # mon..sun -> "08:00-18:00" or "08:00-12:00,13:00-17:00" ("" closed)
    holidays: tuple[date, ...] = ()


class ServiceLevelMatch(BaseModel):
    """Regular expressions that must fully match a group's label values (unset: anything)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    work_type: str | None = None
    email_type: str | None = None


class ServiceLevelRuleSettings(BaseModel):
    """One ordered rule; unset values fall back to the exporter-wide defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: ServiceLevelMatch = ServiceLevelMatch()
    target: float | None = None
    warning: float | None = None
    calendar: str | None = None


class _Errors:
    """Collects ConfigErrors, each naming its place in the config file."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[ConfigError] = []

    def add(self, setting: str, problem: str) -> None:
        self.found.append(ConfigError(setting, f"{self.source} ({setting})", problem))


def _mapping(raw: Any, where: str, errors: _Errors) -> Mapping[Any, Any] | None:
    if isinstance(raw, Mapping):
        return raw
    errors.add(where, f"must be a mapping, not {type_name(raw)}")
    return None


def _unknown_keys(data: Mapping[Any, Any], allowed: tuple[str, ...], where: str, errors: _Errors) -> None:  # fmt: skip
    for key in data:
        if key not in allowed:
            errors.add(f"{where}.{key}", f"unknown key; expected one of {', '.join(allowed)}")


def _calendar(name: str, raw: Any, errors: _Errors) -> CalendarSettings | None:
    where = f"calendars.{name}"
    data = _mapping(raw, where, errors)
    if data is None:
        return None
    before = len(errors.found)
    _unknown_keys(data, ("timezone", "hours", "holidays"), where, errors)
    zone = data.get("timezone")
    if not isinstance(zone, str) or not zone.strip():
        errors.add(f"{where}.timezone", "required: an IANA time zone such as Europe/London")
    else:
        try:
            ZoneInfo(zone.strip())
        except (ZoneInfoNotFoundError, ValueError):
            errors.add(f"{where}.timezone", f"unknown time zone {zone!r} (e.g. Europe/London, UTC)")
    hours: dict[str, str] = {}
    raw_hours = None
    if data.get("hours") is None:
        errors.add(f"{where}.hours", 'required: opening hours per weekday, e.g. mon: "08:00-18:00"')
    else:
        raw_hours = _mapping(data.get("hours"), f"{where}.hours", errors)
    for key, value in (raw_hours or {}).items():
        day = _DAY_NAMES.get(str(key).strip().lower())
        at = f"{where}.hours.{key}"
        if day is None:
            errors.add(at, f"not a weekday; use {', '.join(WEEKDAYS)}")
        elif day in hours:
            errors.add(at, f"{day} is given twice")
        elif value is not None and not isinstance(value, str):
            errors.add(at, f'must be a string like "08:00-18:00", not {type_name(value)}')
        else:
            try:
                parse_day_hours(value or "")
            except ValueError as exc:
                errors.add(at, str(exc))
            else:
                hours[day] = value or ""
    if raw_hours is not None and not any(parse_day_hours(v) for v in hours.values()):
        if len(errors.found) == before:
            errors.add(f"{where}.hours", "opens on no day of the week: no email could ever breach")
    holidays: list[date] = []
    raw_holidays = data.get("holidays") or []
    if not isinstance(raw_holidays, list):
        errors.add(f"{where}.holidays", f"must be a list of dates, not {type_name(raw_holidays)}")
        raw_holidays = []
    if len(raw_holidays) > MAX_HOLIDAYS:
        errors.add(f"{where}.holidays", f"at most {MAX_HOLIDAYS} dates")
        raw_holidays = []
    for i, item in enumerate(raw_holidays):
        try:
            holidays.append(item if isinstance(item, date) else date.fromisoformat(str(item)))
        except ValueError:
            errors.add(f"{where}.holidays[{i}]", f"{item!r} is not a date like 2026-12-25")
    if len(errors.found) > before:
        return None
    return CalendarSettings(timezone=str(zone).strip(), hours=hours, holidays=tuple(holidays))


def _duration(raw: Any, where: str, errors: _Errors, *, positive: bool) -> float | None:
    if raw is None:
        return None
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        errors.add(where, str(exc))
        return None
    if seconds < 0 or (positive and seconds == 0):
        errors.add(where, "must be greater than zero" if positive else "must not be negative")
        return None
    return seconds


def _rule(i: int, raw: Any, calendars: Mapping[str, object], errors: _Errors) -> ServiceLevelRuleSettings | None:  # fmt: skip
    where = f"service_levels[{i}]"
    data = _mapping(raw, where, errors)
    if data is None:
        return None
    before = len(errors.found)
    _unknown_keys(data, ("match", "target", "warning", "calendar"), where, errors)
    patterns: dict[str, str] = {}
    match = _mapping(data.get("match") or {}, f"{where}.match", errors) or {}
    _unknown_keys(match, ("work_type", "email_type"), f"{where}.match", errors)
    for label in ("work_type", "email_type"):
        pattern = match.get(label)
        if pattern is None:
            continue
        at = f"{where}.match.{label}"
        if not isinstance(pattern, str | int) or isinstance(pattern, bool):
            errors.add(at, f"must be a regular expression string, not {type_name(pattern)}")
        elif len(str(pattern)) > MAX_PATTERN_LENGTH:
            errors.add(at, f"longer than {MAX_PATTERN_LENGTH} characters")
        else:
            problem = pattern_problem(str(pattern))
            if problem is not None:
                # RE2 syntax: matching time stays linear in the label value, whatever the pattern.
                hint = "RE2 syntax: no backreferences or look-around"
                errors.add(at, f"invalid regular expression ({hint}): {problem}")
            else:
                patterns[label] = str(pattern)
    target = _duration(data.get("target"), f"{where}.target", errors, positive=True)
    warning = _duration(data.get("warning"), f"{where}.warning", errors, positive=False)
    calendar = data.get("calendar")
    if calendar is not None:
        if not isinstance(calendar, str) or calendar not in calendars:
            known = ", ".join(sorted(calendars)) or "none are defined under calendars:"
            errors.add(f"{where}.calendar", f"unknown calendar {calendar!r} (known: {known})")
    if len(errors.found) > before:
        return None
    return ServiceLevelRuleSettings(
        match=ServiceLevelMatch(**patterns), target=target, warning=warning, calendar=calendar
    )


def parse_service_levels(
    raw_rules: Any, raw_calendars: Any, source: str
) -> tuple[tuple[ServiceLevelRuleSettings, ...], dict[str, CalendarSettings], list[ConfigError]]:
    """The rules and calendars of the config file, and every problem found in them."""
    errors = _Errors(source)
    calendars: dict[str, CalendarSettings] = {}
    names: set[str] = set()
    cal_data = _mapping(raw_calendars, "calendars", errors) if raw_calendars is not None else {}
    if cal_data is not None and len(cal_data) > MAX_CALENDARS:
        errors.add("calendars", f"at most {MAX_CALENDARS} calendars")
        cal_data = {}
    for name, raw in (cal_data or {}).items():
        if not isinstance(name, str) or not name:
            errors.add(f"calendars.{name}", "a calendar name must be a non-empty string")
            continue
        names.add(name)
        if (cal := _calendar(name, raw, errors)) is not None:
            calendars[name] = cal
    rules: list[ServiceLevelRuleSettings] = []
    if raw_rules is not None and not isinstance(raw_rules, list):
        errors.add("service_levels", f"must be a list of rules, not {type_name(raw_rules)}")
    elif raw_rules is not None and len(raw_rules) > MAX_RULES:
        errors.add("service_levels", f"at most {MAX_RULES} rules")
    else:
        for i, raw in enumerate(raw_rules or []):
            # A rule naming a calendar that is itself invalid is reported once, at the calendar.
            if (rule := _rule(i, raw, dict.fromkeys(names), errors)) is not None:
                rules.append(rule)
    for label in ("email_type", "work_type"):
        patterns = [p for r in rules if (p := getattr(r.match, label)) is not None]
        if patterns and (problem := set_problem(patterns)) is not None:
            errors.add("service_levels", f"the {label} patterns together are too large: {problem}")
    return tuple(rules), calendars, errors.found
