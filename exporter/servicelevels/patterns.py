"""Service-level `match` patterns: RE2 full matches, linear in the label's length, whatever the pattern.

Python's `re` backtracks: ``(a|aa)+`` against 40 ``a`` and a ``!`` runs for seconds, and the label
values matched come from the API. RE2 (google-re2) guarantees time linear in the text and refuses
what it cannot do that way (backreferences, look-around), so a pattern is refused when the
configuration is read, not found slow at a poll.

All patterns of one label are matched in one pass by an `re2.Set`; the answer for each distinct
label value is remembered, so a value is matched once, however many groups and polls carry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import cast

import re2

# Memory one compiled Set may use (RE2's program and DFA cache); the settings bound patterns to
# 1,000 rules of 1,000 characters, and a Set that needs more than this is refused at config time.
SET_MAX_MEM = 64 * 1024 * 1024
# Distinct label values remembered per label; past it the memory starts again (bounded, not LRU:
# values are bounded by max_work_types per organisation, this only guards a very long life).
VALUE_MEMO_LIMIT = 100_000
# Always matches: a Set answering without it failed (RE2's DFA ran out of memory), so the
# patterns are then tried one by one rather than taken as matching nothing.
_SENTINEL = "(?s).*"


def _options(max_mem: int | None = None) -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print its own line to stderr; the error is reported
    if max_mem is not None:
        options.max_mem = max_mem
    return options


def _message(exc: re2.error) -> str:
    detail = exc.args[0] if exc.args else "cannot compile"
    return detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)


@lru_cache(maxsize=4096)  # a reload checks the same patterns again
def pattern_problem(pattern: str) -> str | None:
    """Why RE2 cannot compile `pattern` (e.g. a backreference), or None when it can."""
    try:
        re2.compile(pattern, _options())
    except re2.error as exc:
        return _message(exc)
    return None


def set_problem(patterns: Sequence[str]) -> str | None:
    """Why these patterns cannot be matched together in one Set (too large), or None."""
    return _set_problem(tuple(patterns))


@lru_cache(maxsize=8)
def _set_problem(patterns: tuple[str, ...]) -> str | None:
    try:
        _compile_set(patterns)
    except re2.error as exc:
        return _message(exc)
    return None


def _compile_set(patterns: Sequence[str]) -> re2.Set:
    matcher = re2.Set.FullMatchSet(_options(SET_MAX_MEM))
    for pattern in (*patterns, _SENTINEL):
        matcher.Add(pattern)
    matcher.Compile()
    return matcher


def _matchable(value: str) -> str:
    """`value` as RE2 can take it (UTF-8): a lone surrogate becomes U+FFFD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


class PatternSet:
    """Which of an ordered list of patterns (None = matches anything) fully match a value.

    `matching(value)` is a bit mask: bit i set when pattern i matches. Thread-safe for the one
    poll worker thread and the event loop: the memo is a dict written whole values at a time.
    """

    def __init__(self, patterns: Sequence[str | None]) -> None:
        self._indexes = [i for i, p in enumerate(patterns) if p is not None]
        given = [p for p in patterns if p is not None]
        # Patterns left unset match every value.
        self._always = sum(1 << i for i, p in enumerate(patterns) if p is None)
        self._given = given
        self._set = _compile_set(given) if given else None
        # Compiled only should the Set ever fail (see _match): 1,000 patterns take 0.1 s.
        self._one_by_one: list[re2._Regexp[str]] | None = None
        self._memo: dict[str, int] = {}

    def matching(self, value: str) -> int:
        """The mask of the patterns that fully match `value`, remembered per value."""
        found = self._memo.get(value)
        if found is None:
            found = self._always | self._match(_matchable(value))
            if len(self._memo) >= VALUE_MEMO_LIMIT:
                self._memo.clear()
            self._memo[value] = found
        return found

    def _match(self, value: str) -> int:
        if self._set is None:
            return 0
        sentinel = len(self._indexes)
        # A list of indexes or None (the stubs say bool).
        hits = cast("list[int] | None", self._set.Match(value))
        if hits is None or sentinel not in hits:  # the Set failed: ask each pattern
            if self._one_by_one is None:
                self._one_by_one = [re2.compile(p, _options()) for p in self._given]
            hits = [i for i, p in enumerate(self._one_by_one) if p.fullmatch(value) is not None]
        return sum(1 << self._indexes[i] for i in hits if i != sentinel)


@lru_cache(maxsize=8)
def pattern_set(patterns: tuple[str | None, ...]) -> PatternSet:
    """The compiled set of these patterns, shared (with what it has matched) by every policy
    that has them: a reload that changes only targets or calendars compiles nothing."""
    return PatternSet(patterns)
