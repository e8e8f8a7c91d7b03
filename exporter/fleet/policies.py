"""Wiring: the validated service-level settings as compiled rules and business clocks.

A policy is compiled once per distinct service-level configuration and shared by every
organisation that uses it (and by the next reload when those settings did not change): with
1,000 rules, compiling one per organisation cost ~140 ms and ~0.9 MB each.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from exporter.servicelevels.calendar import (
    CONTINUOUS,
    WEEKDAYS,
    BusinessCalendar,
    Clock,
    parse_day_hours,
)
from exporter.servicelevels.policy import ServiceLevel, ServiceLevelPolicy, ServiceLevelRule
from exporter.settings import Settings

# Policies kept for reuse: the one in force and a few before it (a reload that is reverted).
_KEPT = 4
_cache: OrderedDict[Hashable, ServiceLevelPolicy] = OrderedDict()
_last: tuple[Settings, ServiceLevelPolicy] | None = None
_lock = threading.Lock()  # plans are built in worker threads


def policy_key(cfg: Settings) -> Hashable:
    """What a policy is compiled from, as a hashable value: equal keys, the same policy."""
    calendars = tuple(
        (name, cal.timezone, tuple(sorted(cal.hours.items())), cal.holidays)
        for name, cal in sorted(cfg.calendars.items())
    )
    rules = tuple(
        (r.match.email_type, r.match.work_type, r.target, r.warning, r.calendar)
        for r in cfg.service_levels
    )
    return (cfg.service_level_target, cfg.service_level_warning, rules, calendars)


def service_level_policy(cfg: Settings) -> ServiceLevelPolicy:
    """The compiled policy of `cfg`'s service-level settings, shared with every equal one."""
    global _last
    with _lock:
        if _last is not None and _last[0] is cfg:  # every organisation of one plan: no key built
            return _last[1]
        key = policy_key(cfg)
        policy = _cache.get(key)
        if policy is None:
            policy = _compile(cfg)
            _cache[key] = policy
            while len(_cache) > _KEPT:
                _cache.popitem(last=False)
        _cache.move_to_end(key)
        _last = (cfg, policy)
        return policy


def _compile(cfg: Settings) -> ServiceLevelPolicy:
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
        match = rule.match
        rules.append(
            ServiceLevelRule(level, email_type=match.email_type, work_type=match.work_type)
        )
    return ServiceLevelPolicy(default, tuple(rules))
