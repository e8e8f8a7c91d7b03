"""How a family's series become lines of text, as prometheus_client writes them.

`Layout` holds a family's `str.format` templates (label values in declared order, written
sorted by label name), made once per family and shared by every organisation; `rows_lines`
turns a mapping of series into lines: from fragments shared by every organisation (each key's
line before and after the organisation's value) when it can, histograms a series at a time,
their bucket lines kept while the counts stay. Used by `exporter.metrics.textformat`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from itertools import chain, starmap
from operator import itemgetter, methodcaller
from typing import Any

from exporter.metrics.families import Block, Rows

_INF, _NINF = math.inf, -math.inf
# Where a line is split around its first label value (no template or escaped value holds NUL:
# label values from upstream have their control characters replaced).
_MARK = "\x00"
# Keys per family with fragments kept. They pay when organisations share keys (the same states,
# email types and work types); a family with more keys than this (one organisation with
# thousands of work types) is formatted a line at a time, as it would gain nothing from them.
_FRAGMENTS_LIMIT = 4096
_LINE = "{}{}\n".format
_SPLIT = methodcaller("partition", _MARK)
_AROUND = itemgetter(0, 2)
_EXPONENTS = {dot: f"e+{dot - 1:02d}" for dot in range(7, 17)}


def go_float(value: float) -> str:
    """A sample value as prometheus_client writes it (its `floatToGoString`)."""
    if value.__class__ is int and -1_000_000 < value < 1_000_000:
        return f"{value}.0"
    d = float(value)
    # Ordered by how often each case comes up; NaN fails every comparison and falls through.
    if d < 1e6:
        return repr(d) if d != _NINF else "-Inf"
    if d < 1e16:
        # Python writes 1234567.5; Go (and prometheus_client, to match it) 1.2345675e+06.
        s = repr(d)
        digits = s.replace(".", "", 1).rstrip("0")
        if len(digits) > 1:
            return f"{digits[0]}.{digits[1:]}{_EXPONENTS[s.find('.')]}"
        return digits + _EXPONENTS[s.find(".")]
    if d == _INF:
        return "+Inf"
    return repr(d) if d == d else "NaN"


def escape_label_value(value: str) -> str:
    """Backslash, double quote and newline escaped, as both formats want them."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


class Escaped(dict[str, str]):
    """Label value -> escaped, computed once per distinct value per render."""

    def __missing__(self, value: str) -> str:
        escaped = self[value] = escape_label_value(value)
        return escaped


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _template(sample: str, labels: Sequence[str], fixed: dict[int, str], extra: str = "") -> str:
    """`sample{a="{0}",b="x"} ` as a `str.format` template: label values sorted by label name,
    those in `fixed` filled in, the others numbered in declared order; `extra` (`le`) spliced."""
    names = sorted([*labels, "le"] if extra else labels)
    slot = {i: n for n, i in enumerate(i for i in range(len(labels)) if i not in fixed)}
    parts = []
    for name in names:
        if name == "le" and extra:
            parts.append(extra)
            continue
        i = labels.index(name)
        parts.append(f'{name}="{_literal(fixed[i]) if i in fixed else "{" + str(slot[i]) + "}"}"')
    body = ",".join(parts)
    return f"{sample}{{{{{body}}}}} " if body else f"{sample} "


def empty_sections(block: Block) -> list[list[str]]:
    """Sample lines, or for gauge histograms: buckets, gcounts, gsums (text 0.0.4 moves the
    last two into gauges of their own) and the three interleaved per series (OpenMetrics)."""
    return [[], [], [], []] if block.family.kind == "gaugehistogram" else [[]]


class Layout:
    """The `str.format` templates of one family's series (one per bucket, count and sum for
    histograms): label values in declared order, written sorted by label name."""

    def __init__(self, block: Block) -> None:
        family, labels = block.family, block.family.labels
        name = family.name
        if not block.le:
            sample = name + "_total" if family.kind == "counter" else name
            self.templates = [_template(sample, labels, {})]
        else:
            count, total = (
                ("_gcount", "_gsum") if family.kind == "gaugehistogram" else ("_count", "_sum")
            )
            self.templates = [
                *(_template(name + "_bucket", labels, {}, f'le="{le}"') for le in block.le),
                _template(name + count, labels, {}),
                _template(name + total, labels, {}),
            ]

        # key -> the line before and after the first label value (see `fragments`)
        self._fragments: dict[Any, tuple[str, str]] = {}

    def bound(self, prefix: Sequence[str]) -> list[Callable[..., str]]:
        """The templates' `format`s with the (escaped) label values `prefix` filled in."""
        return [partial(t.format, *prefix) for t in self.templates]

    def fragments(
        self, keys: Iterable[Any], scalar: bool, get: Callable[[str], str]
    ) -> dict[Any, tuple[str, str]] | None:
        """For a family's series whose first label (the organisation) comes before the key: the
        line of each key up to and after that label's value, shared by every organisation (so
        each organisation's lines are joined from them, not formatted). None when a key's value
        holds the marker the split is made at, or the family has too many keys to keep them
        (then the lines are formatted)."""
        found = self._fragments
        missing = list(set(keys).difference(found))
        if not missing:
            return found
        if len(found) + len(missing) > _FRAGMENTS_LIMIT:
            return None
        # Made in bulk, at C speed: a key seen for the first time costs what formatting its
        # line did (the templates hold no NUL: names are checked, `le` values are numbers).
        joined = "".join(missing) if scalar else "".join(chain.from_iterable(missing))
        if _MARK in joined:
            return None
        fmt = partial(self.templates[0].format, _MARK)
        lines: Iterable[str]
        if "\\" in joined or '"' in joined or "\n" in joined:
            escaped = map(get, missing) if scalar else (map(get, key) for key in missing)
            lines = map(fmt, escaped) if scalar else starmap(fmt, escaped)
        else:
            lines = map(fmt, missing) if scalar else starmap(fmt, missing)
        found.update(zip(missing, map(_AROUND, map(_SPLIT, lines)), strict=True))
        return found


def rows_lines(
    block: Block, rows: Rows, layout: Layout, escaped: Escaped, memo: dict[Any, Any]
) -> list[str]:
    """One string per section for every series of `rows`; `memo` remembers the line prefixes
    of series whose values are computed per render (`rows.value`), and for histograms the
    lines of the buckets and count as long as they do not change."""
    mapping, fn = rows.mapping, rows.value
    scalar = len(rows.prefix) + 1 == len(block.family.labels)
    get = escaped.__getitem__
    formats = layout.bound([get(v) for v in rows.prefix])
    if block.le:
        return _histogram_rows(block, rows, formats, get, memo)
    if len(rows.prefix) == 1 and len(mapping) <= _FRAGMENTS_LIMIT and _MARK not in rows.prefix[0]:
        fragments = layout.fragments(mapping, scalar, get)
        if fragments is not None:
            value = get(rows.prefix[0])
            around = map(fragments.__getitem__, mapping)
            numbers = map(go_float, mapping.values() if fn is None else map(fn, mapping.values()))
            lines = [f"{h}{value}{t}{n}\n" for (h, t), n in zip(around, numbers, strict=True)]
            return ["".join(lines)]
    fmt = formats[0]
    if fn is None:  # every prefix is used once: build them all at C speed
        # Label values rarely need escaping: checked for all keys at once, at C speed.
        joined = "".join(mapping) if scalar else "".join(chain.from_iterable(mapping))
        clean = not ("\\" in joined or '"' in joined or "\n" in joined)
        prefixes: Iterable[str]
        if scalar:
            prefixes = map(fmt, mapping) if clean else map(fmt, map(get, mapping))
        else:
            keys = mapping if clean else (map(get, key) for key in mapping)
            prefixes = starmap(fmt, keys)
        return ["".join(map(_LINE, prefixes, map(go_float, mapping.values())))]
    for key in mapping.keys() - memo.keys():
        memo[key] = fmt(get(key)) if scalar else fmt(*map(get, key))
    values = map(go_float, map(fn, mapping.values()))
    return ["".join(map(_LINE, map(memo.__getitem__, mapping), values))]


def _histogram_rows(
    block: Block,
    rows: Rows,
    formats: list[Callable[..., str]],
    get: Callable[[str], str],
    memo: dict[Any, Any],
) -> list[str]:
    """The sections of histogram series (see `_histogram`)."""
    scalar = len(rows.prefix) + 1 == len(block.family.labels)
    fn = rows.value
    lines = empty_sections(block)
    gauge = block.family.kind == "gaugehistogram"
    for key, raw in rows.mapping.items():
        tail = (key,) if scalar else key
        value = raw if fn is None else fn(raw)
        histogram(lines, gauge, formats, key, tail, value, memo, get)
    return ["".join(section) for section in lines]


def histogram(
    lines: list[list[str]],
    gauge: bool,
    formats: list[Callable[..., str]],
    key: Any,
    tail: tuple[str, ...],
    value: Any,
    memo: dict[Any, Any],
    get: Callable[[str], str],
) -> None:
    """The lines of one histogram series (`memo[key]`), its label values after the bound ones
    `tail`.

    `memo` keeps, per key, the bucket and count lines of the last render (reused while the
    counts stay the same: ages cross a bound now and then, not at every scrape) and the sum's
    line prefix."""
    counts, total = value
    known = memo.get(key)
    if known is None or known[0] != tuple(counts):
        escaped = [get(k) for k in tail]
        prefixes = [f(*escaped) for f in formats]
        buckets = "".join([f"{p}{go_float(c)}\n" for p, c in zip(prefixes, counts, strict=False)])
        count = f"{prefixes[-2]}{go_float(counts[-1])}\n"
        # A tuple of strings and numbers: one the garbage collector stops tracking.
        known = memo[key] = (tuple(counts), buckets, count, prefixes[-1])
    _, buckets, count, sum_prefix = known
    sums = f"{sum_prefix}{go_float(total)}\n"
    if gauge:
        lines[0].append(buckets)
        lines[1].append(count)
        lines[2].append(sums)
        lines[3].append(buckets + count + sums)
    else:
        lines[0].append(buckets + count + sums)
