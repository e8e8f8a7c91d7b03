"""Declaring families: validation, and series counted per organisation without rendering."""

from __future__ import annotations

import doctest
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import families
from exporter.metrics.families import Family, gather, series_by_org
from exporter.metrics.textformat import render
from tests.metrics.test_textformat import ODD, Synthetic, queue_registry, registry_of


def samples_per_org(body: bytes) -> Counter[str]:
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if "org" in sample.labels:
                counts[sample.labels["org"]] += 1
    return counts


@pytest.mark.parametrize("make", [lambda: registry_of(Synthetic()), queue_registry])
def test_series_by_org_matches_the_rendered_samples(make) -> None:
    registry = make()
    blocks = [b for part in gather(registry) if isinstance(part, list) for b in part]
    counted = series_by_org(blocks)
    assert counted == samples_per_org(render(registry))
    assert counted[ODD] > 0


def test_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="_total"):
        Family.counter("x_total", "h", "org")
    with pytest.raises(ValueError, match="duplicate"):
        Family.gauge("x", "h", "org", "org")
    with pytest.raises(ValueError, match="metric name"):
        Family.gauge("x-y", "h", "org")
    for bad in ("work-type", "__reserved", "1st"):
        with pytest.raises(ValueError, match="label name"):
            Family.gauge("x", "h", "org", bad)
    with pytest.raises(ValueError, match="bucket label"):
        Family.histogram("x", "h", "org", "le")
    with pytest.raises(ValueError, match="bucket"):
        Family.histogram("x", "h", "org").block()
    with pytest.raises(ValueError, match="bucket"):
        Family.gauge("x", "h", "org").block(buckets=(1.0,))
    gauge = Family.gauge("x", "h", "org", "k").block()
    with pytest.raises(ValueError, match="labels"):
        gauge.add(("acme",), 1)
    with pytest.raises(ValueError, match="org label"):
        Family.gauge("x", "h", "k", "org").block().add_all(("k",), {"acme": 1})
    with pytest.raises(ValueError, match="prefix"):
        gauge.add_all(("acme", "k"), {})


def test_a_family_without_org_is_not_counted() -> None:
    block = Family.gauge("x_info", "h", "version").block()
    block.add(("1",), 1)
    assert series_by_org([block]) == Counter()


def test_the_modules_example_runs() -> None:
    # The docstring's example is the API as it is: it fails here when the API moves on.
    result = doctest.testmod(families, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0, result
