"""Service-level patterns: RE2 full matches in linear time, once per distinct label value."""

from __future__ import annotations

import time

import pytest

from exporter.servicelevels.patterns import PatternSet, pattern_problem, set_problem
from exporter.servicelevels.policy import ServiceLevel, ServiceLevelPolicy, ServiceLevelRule


def test_a_pattern_that_backtracks_in_python_runs_in_linear_time() -> None:
    # Python's re takes seconds (exponential in the a's) for this; RE2 microseconds.
    policy = ServiceLevelPolicy(
        ServiceLevel(86400, 3600), (ServiceLevelRule(ServiceLevel(60, 10), work_type="(a|aa)+"),)
    )
    started = time.perf_counter()
    level = policy.level(("InboundEmail", "a" * 40 + "!"))
    assert time.perf_counter() - started < 0.5
    assert level.target == 86400
    assert policy.level(("InboundEmail", "a" * 40)).target == 60


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=a)a", "(?<!x)y", "a{1001}"])
def test_what_re2_cannot_run_in_linear_time_is_a_problem(pattern: str) -> None:
    assert pattern_problem(pattern)


def test_plain_patterns_are_accepted() -> None:
    assert pattern_problem("VIP.*|Sales(?: EMEA)?") is None
    assert pattern_problem("(?i)billing") is None


def test_a_set_too_large_for_re2_is_a_problem() -> None:
    assert set_problem(["(" + "a?" * 200 + "){5}" + str(i) for i in range(1000)])
    assert set_problem([f"work{i}.*" for i in range(1000)]) is None


def test_unset_patterns_match_anything_and_the_mask_is_by_position() -> None:
    patterns = PatternSet([None, "Sales.*", "Sales", "VIP"])
    assert patterns.matching("Sales") == 0b0111
    assert patterns.matching("Sales EMEA") == 0b0011
    assert patterns.matching("Billing") == 0b0001
    assert patterns.matching("") == 0b0001


def test_each_distinct_value_is_matched_once(monkeypatch: pytest.MonkeyPatch) -> None:
    patterns = PatternSet([f"work{i}|shared" for i in range(1000)])
    calls: list[str] = []
    match = patterns._match

    def counted(value: str) -> int:
        calls.append(value)
        return match(value)

    monkeypatch.setattr(patterns, "_match", counted)
    for _ in range(3):
        for value in ("work7", "shared", "none"):
            patterns.matching(value)
    assert calls == ["work7", "shared", "none"]
    assert patterns.matching("shared") == (1 << 1000) - 1
    assert patterns.matching("work7") == 1 << 7


def test_when_the_set_fails_each_pattern_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    # RE2's Set answers nothing when its DFA runs out of memory: that is not "no match".
    patterns = PatternSet(["VIP.*", None, "Sales"])

    class Failing:
        def Match(self, text: str) -> None:
            return None

    monkeypatch.setattr(patterns, "_set", Failing())
    assert patterns.matching("VIP Gold") == 0b011
    assert patterns.matching("Sales") == 0b110
    assert patterns.matching("other") == 0b010


def test_a_lone_surrogate_in_a_label_does_not_raise() -> None:
    patterns = PatternSet([".*x"])
    assert patterns.matching("\ud800x") == 1


def test_the_first_matching_rule_of_a_thousand_wins() -> None:
    levels = [ServiceLevel(60.0 + i, 10) for i in range(1000)]
    rules = tuple(
        ServiceLevelRule(
            level, work_type=f"wt{i % 500}", email_type="Inbound.*" if i < 500 else None
        )
        for i, level in enumerate(levels)
    )
    policy = ServiceLevelPolicy(ServiceLevel(86400, 3600), rules)
    assert policy.level(("InboundEmail", "wt3")) is levels[3]
    assert policy.level(("ManualOutboundEmail", "wt3")) is levels[503]
    assert policy.level(("ManualOutboundEmail", "wt999")).target == 86400
