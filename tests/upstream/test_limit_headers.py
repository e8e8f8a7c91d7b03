"""Rate-limit headers: the spellings, Reset as seconds or a Unix time, and garbage ignored."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from exporter.upstream.limit_headers import (
    MAX_HEADER_CHARS,
    Announced,
    count,
    read_announced,
    reset_time,
)

NOW = 1_800_000_000.0


def headers(**values: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in values.items()})


@pytest.mark.parametrize(
    "given",
    [
        {"RateLimit-Limit": "110", "RateLimit-Remaining": "17", "RateLimit-Reset": "42"},
        {"X-RateLimit-Limit": "110", "X-RateLimit-Remaining": "17", "X-RateLimit-Reset": "42"},
        {"X-Rate-Limit-Limit": "110", "X-Rate-Limit-Remaining": "17", "X-Rate-Limit-Reset": "42"},
        # Reset as a Unix time (larger than a year in seconds), and in milliseconds.
        {"X-RateLimit-Limit": "110", "X-RateLimit-Remaining": "17", "X-RateLimit-Reset": "1800000042"},
        {"X-RateLimit-Limit": "110", "X-RateLimit-Remaining": "17", "X-RateLimit-Reset": "1800000042000"},
        # Lower case (HTTP/2, some proxies) is the same header.
        {"ratelimit-limit": "110", "ratelimit-remaining": "17", "ratelimit-reset": "42"},
        # The IETF draft's lists: the first member counts, its parameters are not numbers.
        {"RateLimit-Limit": "110, 110;w=60, 5000;w=3600", "RateLimit-Remaining": "17", "RateLimit-Reset": "42"},
        # The one-header forms of the IETF draft (07; 08 and later with a policy).
        {"RateLimit": "limit=110, remaining=17, reset=42"},
        {"RateLimit": '"default";r=17;t=42', "RateLimit-Policy": '"default";q=110;w=60'},
    ],
)  # fmt: skip
def test_every_spelling_says_the_same(given: dict[str, str]) -> None:
    assert read_announced(CIMultiDict(given), NOW) == Announced(110, 17, NOW + 42)


def test_nothing_said_is_empty() -> None:
    said = read_announced(headers(Content_Type="application/json"), NOW)
    assert said.empty and said == Announced()


def test_fields_come_from_whichever_spelling_has_them() -> None:
    said = read_announced(headers(RateLimit_Remaining="3", X_RateLimit_Limit="25"), NOW)
    assert said == Announced(25, 3, None)


def test_the_ietf_spelling_wins_over_the_legacy_one() -> None:
    given = headers(RateLimit_Remaining="3", X_RateLimit_Remaining="9")
    assert read_announced(given, NOW).remaining == 3


@pytest.mark.parametrize(
    "value",
    ["-1", "1e6", "0x10", "ten", "", " ", "1.5", "nan", "inf", "12345678901", "١٢", "+5",
     "1" * 300],
)  # fmt: skip
def test_a_count_that_is_not_a_plain_number_is_ignored(value: str) -> None:
    assert count(value) is None


def test_counts_are_bounded() -> None:
    assert count("1000000000") == 10**9
    assert count("1000000001") is None
    assert count("0") == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", NOW),
        ("2.5", NOW + 2.5),
        (str(365 * 86400), NOW + 365 * 86400),  # a year in seconds is still a delta
        ("1800000100", 1_800_000_100.0),  # a Unix time
        ("1700000000", 1_700_000_000.0),  # a Unix time in the past: the window has reset
        ("1800000100500", 1_800_000_100.5),  # milliseconds
        ("4000000000", None),  # a Unix time decades ahead: garbage
        ("-5", None),
        ("soon", None),
        ("1e9", None),
        ("12345678901234", None),  # too many digits
        (None, None),
        ("9" * (MAX_HEADER_CHARS + 1), None),
    ],
)
def test_reset_is_seconds_or_a_unix_time(value: str | None, expected: float | None) -> None:
    assert reset_time(value, NOW) == expected


def test_garbage_in_one_field_spares_the_others() -> None:
    given = headers(RateLimit_Limit="lots", RateLimit_Remaining="4", RateLimit_Reset="\x00\x01")
    assert read_announced(given, NOW) == Announced(None, 4, None)


def test_oversized_structured_headers_are_ignored() -> None:
    long = "limit=110, remaining=17, reset=42" + ", x=1" * 100
    assert read_announced(headers(RateLimit=long), NOW).empty


def test_merged_keeps_what_the_newer_answer_left_out() -> None:
    old = Announced(110, 17, NOW + 42)
    assert old.merged(Announced(remaining=16)) == Announced(110, 16, NOW + 42)
    assert old.merged(Announced()) == old
