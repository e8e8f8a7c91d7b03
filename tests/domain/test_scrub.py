"""The one scrubber: bounded, control characters replaced, configured secrets masked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.domain import scrub as scrubbing
from exporter.domain.scrub import MASK, remember_secrets, scrub

SECRET = "s3cret-value-0042"
OTHER = "apikey-7f3c9e-long"


@pytest.fixture(autouse=True)
def secrets() -> Iterator[None]:
    remember_secrets([SECRET, OTHER], keep_previous=False)
    yield
    remember_secrets([], keep_previous=False)


def test_control_characters_become_question_marks() -> None:
    assert scrub("a\nb\x1b[31mc\u202ed\te") == "a?b?[31mc?d?e"


def test_newlines_are_kept_only_when_asked() -> None:
    assert scrub("Traceback\n  line", keep_newlines=True) == "Traceback\n  line"


def test_secrets_are_masked_wherever_they_are() -> None:
    assert scrub(f"error {SECRET}: {OTHER}{SECRET}") == f"error {MASK}: {MASK}"


def test_long_text_is_cut_and_only_a_window_is_read() -> None:
    text = "y" * 10_000_000
    out = scrub(text, 100)
    assert len(out) == 100 and out.endswith("~")


def test_a_secret_across_the_cut_is_masked_not_half_shown() -> None:
    out = scrub("x" * 95 + SECRET + "tail", 100)
    assert SECRET[:5] not in out and out.endswith(MASK + "~")


def test_masking_does_not_pull_the_next_secret_into_view() -> None:
    # The first secret masked shortens the text; the cut stays where it was without masking.
    out = scrub(SECRET * 3 + "z" * 60 + OTHER, 100)
    assert OTHER[:3] not in out


def test_short_values_are_not_masked() -> None:
    remember_secrets(["demo"], keep_previous=False)
    assert scrub("demo simulator started") == "demo simulator started"


def test_the_previous_configurations_secrets_stay_masked_for_one_reload() -> None:
    remember_secrets(["rotated-secret-1"])
    assert scrub(SECRET) == MASK, "the secret of the configuration before"
    remember_secrets(["rotated-secret-2"])
    assert scrub(SECRET) == SECRET and scrub("rotated-secret-1") == MASK
    assert scrubbing._longest == len("rotated-secret-1")


@given(st.text(), st.integers(1, 400))
def test_never_a_secret_a_control_character_or_more_than_the_limit(text: str, limit: int) -> None:
    out = scrub(text + SECRET + text, limit)
    assert SECRET not in out
    assert all(c.isprintable() for c in out)
    assert len(out) <= limit + len(MASK)
