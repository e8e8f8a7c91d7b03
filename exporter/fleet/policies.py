"""Wiring: the validated service-level settings as compiled rules and business clocks."""

from __future__ import annotations

import re

from exporter.servicelevels.calendar import (
    CONTINUOUS,
    WEEKDAYS,
    BusinessCalendar,
    Clock,
    parse_day_hours,
)
from exporter.servicelevels.policy import ServiceLevel, ServiceLevelPolicy, ServiceLevelRule
from exporter.settings import Settings


def service_level_policy(cfg: Settings) -> ServiceLevelPolicy:
    """The validated service-level settings as compiled rules and business clocks."""
    clocks: dict[str, Clock] = {
        name: BusinessCalendar(
            cal.timezone,
            tuple(parse_day_hours(cal.hours.get(day, "")) for day in WEEKDAYS),
            frozenset(cal.holidays),
        )
        for name, cal in cfg.calendars.items()
    }
    default = ServiceLevel(cfg.service_level_target, cfg.service_level_warning)
    rules = []
    for rule in cfg.service_levels:
        level = ServiceLevel(
            default.target if rule.target is None else rule.target,
            default.warning if rule.warning is None else rule.warning,
            clocks[rule.calendar] if rule.calendar else CONTINUOUS,
            rule.calendar,
        )
        patterns = (rule.match.email_type, rule.match.work_type)
        email_type, work_type = (None if p is None else re.compile(p) for p in patterns)
        rules.append(ServiceLevelRule(level, email_type=email_type, work_type=work_type))
    return ServiceLevelPolicy(default, tuple(rules))
