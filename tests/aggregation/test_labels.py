"""Label values from upstream: unsafe characters replaced, long values cut with a hash suffix."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.aggregation.builder import AggregationOptions, aggregate
from exporter.aggregation.labels import bound_label
from exporter.domain.models import Email


def test_short_printable_values_are_kept_as_they_are() -> None:
    for value in ("Billing", "Service 01", "Résumé - FR", "客服", "a\u00a0b", "📧"):
        assert bound_label(value, 128) == value


def test_control_bidi_and_separator_characters_become_question_marks() -> None:
    value = "a\rb\nc\x00d\x07e\u202ef\u2066g\u2069h\u2028i\u200bj\x7fk"
    assert bound_label(value, 128) == "a?b?c?d?e?f?g?h?i?j?k"


def test_long_values_are_cut_to_the_limit_and_end_in_a_hash() -> None:
    a, b = "W" * 200 + "a", "W" * 200 + "b"
    cut_a, cut_b = bound_label(a, 32), bound_label(b, 32)
    assert len(cut_a) == len(cut_b) == 32
    assert re.fullmatch(r"W{25}~[0-9a-f]{6}", cut_a)
    assert cut_a != cut_b  # two long names that share a prefix stay two series
    assert bound_label(a, 32) == cut_a  # stable
    assert bound_label("x" * 32, 32) == "x" * 32  # exactly at the limit: kept


def test_a_long_value_with_control_characters_is_cleaned_and_cut() -> None:
    cut = bound_label("\r\n" + "x" * 300, 20)
    assert cut.startswith("??xxxxxxxxxxx~") and len(cut) == 20


@given(st.text(max_size=400), st.integers(min_value=16, max_value=200))
def test_every_bounded_value_is_short_and_safe(value: str, limit: int) -> None:
    out = bound_label(value, limit)
    assert len(out) <= limit
    out.encode("utf-8")  # no lone surrogates
    assert not any(c in out for c in "\r\n\x00\u202e\u2028")


def test_every_label_from_upstream_is_bounded() -> None:
    long = "Q" * 500
    emails = [
        Email(
            id="1",
            state="Queued\r\n",
            email_type="In\x00bound",
            work_type_name=long,
            work_handler_name="doe,\u202ejane",
            queued_time="2024-01-01T00:00:00Z",
        )
    ]
    options = AggregationOptions(agent_metrics=True, max_label_length=64)
    snap = aggregate(emails, now=1_800_000_000.0, options=options)
    ((state, email_type, work_type),) = [k for k, n in snap.counts.items() if n]
    assert (state, email_type) == ("Queued??", "In?bound")
    assert len(work_type) == 64 and work_type.startswith("Q" * 57 + "~")
    assert list(snap.agents) == [("doe,?jane", "Queued??")]


def test_over_long_ids_are_kept_apart_in_bounded_memory() -> None:
    emails = [Email(id="x" * 10_000 + str(n), state="Queued") for n in range(3)]
    snap = aggregate(emails, now=1_800_000_000.0, options=AggregationOptions())
    assert snap.unique_items == 3
    assert all(isinstance(i, bytes) and len(i) == 16 for i in snap.memberships)
    # Digit strings too long for a 64-bit integer stay strings (no slow or failing int()).
    snap = aggregate([Email(id="9" * 5000)], now=1_800_000_000.0, options=AggregationOptions())
    assert snap.unique_items == 1


def _polls(work_types: list[list[str]], options: AggregationOptions) -> list[tuple[object, ...]]:
    """What each of a run of polls exported (counts, last seen pairs, overflow, memberships,
    work type info). Every other email carries its work type's id (`id-` and its name)."""
    from exporter.domain.models import Snapshot

    out: list[tuple[object, ...]] = []
    previous: Snapshot | None = None
    for n, names in enumerate(work_types):
        emails = [
            Email(id=str(i), state=("Queued", "Active", "Odd")[i % 3], email_type="InboundEmail",
                  work_type_name=name, work_type_id=f"id-{name}" if i % 2 else None)
            for i, name in enumerate(names)
        ]  # fmt: skip
        previous = aggregate(emails, now=1000.0 + 30 * n, options=options, previous=previous)
        out.append(
            (dict(previous.counts), dict(previous.last_seen), dict(previous.overflow),
             dict(previous.memberships), dict(previous.handling.work_type_info))
        )  # fmt: skip
    return out


@pytest.mark.parametrize("work_type_label", ["name", "id"])
def test_labels_resolved_from_the_shared_table_export_what_resolving_afresh_does(
    monkeypatch: pytest.MonkeyPatch, work_type_label: str
) -> None:
    from exporter.aggregation import groups

    runs = [
        ["A", "B", "C", "other", "D" * 300, "A"],
        ["A", "B", "E", "F", "other", "D" * 300],  # E and F past the cap: folded
        ["B", "E", "F", "G", "A", ""],
        ["E", "F", "G", "H", "B", "C"],
    ]
    options = AggregationOptions(
        max_work_types=3, max_label_length=40, work_type_label=work_type_label
    )
    warm = _polls(runs, options)
    again = _polls(runs, options)  # the shared table is full of these labels now

    class Cold(groups.BoundedLabels):
        def table(
            self, max_length: int, by_id: bool = False
        ) -> dict[groups.RawLabels, groups.Bounded]:
            return {}  # nothing shared, nothing remembered: every combination resolved afresh

    monkeypatch.setattr(groups, "BOUNDED", Cold())
    assert warm == again == _polls(runs, options)
    assert any(info for *_, info in warm)  # the (id, name) pairs were there to compare


def test_organisations_with_the_same_work_types_share_their_keys() -> None:
    options = AggregationOptions()
    emails = [Email(id="1", state="Queued", email_type="InboundEmail", work_type_name="Billing")]
    acme = aggregate(emails, now=1000.0, options=options)
    other = aggregate(list(emails), now=1000.0, options=options)
    [key] = [k for k in acme.counts if k[0] == "Queued"]
    [same] = [k for k in other.counts if k == key]
    assert same is key


def test_organisations_labelled_by_name_and_by_id_do_not_share_their_labels() -> None:
    emails = [Email(id="1", state="Queued", work_type_name="Billing", work_type_id="42")]
    by_name = aggregate(emails, now=1000.0, options=AggregationOptions())
    by_id = aggregate(emails, now=1000.0, options=AggregationOptions(work_type_label="id"))
    again = aggregate(emails, now=1000.0, options=AggregationOptions())
    assert {k[2] for k, n in by_name.counts.items() if n} == {"Billing"}
    assert {k[2] for k, n in by_id.counts.items() if n} == {"42"}
    assert {k[2] for k, n in again.counts.items() if n} == {"Billing"}


def test_the_shared_label_tables_are_bounded_in_number_and_size() -> None:
    from exporter.aggregation.groups import MAX_TABLES, BoundedLabels

    shared = BoundedLabels(limit=3)
    for n in range(3 * MAX_TABLES):  # reloads through many max_label_length values
        shared.bound(("Queued", "InboundEmail", "Billing"), 16 + n)
    assert len(shared._tables) <= MAX_TABLES
    for n in range(10):
        shared.bound(("Queued", "InboundEmail", f"wt{n}"), 16)
    assert len(shared.table(16)) <= 3
