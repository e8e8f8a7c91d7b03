"""Blocks of metric families as Prometheus text 0.0.4 or OpenMetrics 1.0, byte for byte as
prometheus_client writes them, at a fraction of its cost.

prometheus_client's `generate_latest` sorts, validates and escapes every label of every sample
on every scrape (5 to 10 µs of CPU a sample). Here a family's labels are compiled once into a format
template, label values are escaped once per render, and work is kept between renders where the
data allows it: a block of series whose mapping is the very object rendered last time (a frozen
snapshot's) is reused whole, and the line prefixes of series whose values change per scrape
(ages) are remembered, so only their numbers are formatted again. What is kept is only what the
last render used, so it is bounded by the size of one `/metrics` body.

`Renderer` is not thread-safe: one render at a time (`exporter.web.exposition` runs them in one
worker thread).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import chain, starmap
from typing import Any, Literal

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector

from exporter.metrics.families import Block, Family, LabelValues, Part, Rows, gather

Format = Literal["text", "openmetrics"]
CONTENT_TYPES: dict[Format, str] = {
    "text": "text/plain; version=0.0.4; charset=utf-8",
    "openmetrics": "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
_INF, _NINF = math.inf, -math.inf
_LINE = "{}{}\n".format
_EXPONENTS = {dot: f"e+{dot - 1:02d}" for dot in range(7, 17)}


def render(registry: CollectorRegistry, fmt: Format = "text") -> bytes:
    """One body, rendered here and now (`--once`, tests); the server renders in a thread."""
    return Renderer().render(gather(registry), fmt)


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


class _Escaped(dict[str, str]):
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


class Renderer:
    """Renders gathered parts; keeps what the next render can reuse."""

    def __init__(self) -> None:
        self._chunks: dict[tuple[str, LabelValues], tuple[object, list[str]]] = {}
        self._prefixes: dict[tuple[str, LabelValues], dict[Any, Any]] = {}

    @property
    def remembered(self) -> int:
        """Series whose line prefixes are kept for the next render."""
        return sum(len(memo) for memo in self._prefixes.values())

    def render(self, parts: Sequence[Part], fmt: Format) -> bytes:
        """The whole `/metrics` body in `fmt`."""
        # Encoded a family at a time: no single join or encode of the whole body holds the GIL
        # for long while the event loop waits for it.
        out: list[bytes] = []
        chunks: dict[tuple[str, LabelValues], tuple[object, list[str]]] = {}
        prefixes: dict[tuple[str, LabelValues], dict[Any, Any]] = {}
        escaped = _Escaped()
        seen: set[str] = set()
        for part in parts:
            if not isinstance(part, list):
                out.append(_generic(part, fmt).encode())
                continue
            for block in part:
                family = block.family
                if family.name in seen:
                    raise ValueError(f"{family.name}: the family was yielded twice in one scrape")
                seen.add(family.name)
                sections = self._sections(block, escaped, chunks, prefixes)
                out.append("".join(_assemble(family, sections, fmt)).encode())
        self._chunks, self._prefixes = chunks, prefixes
        if fmt == "openmetrics":
            out.append(b"# EOF\n")
        return b"".join(out)

    def _sections(
        self,
        block: Block,
        escaped: _Escaped,
        chunks: dict[tuple[str, LabelValues], tuple[object, list[str]]],
        prefixes: dict[tuple[str, LabelValues], dict[Any, Any]],
    ) -> list[list[str]]:
        """The block's sections of lines (see `_empty_sections`)."""
        family = block.family
        lines = _empty_sections(block)
        for values, value in block.singles:
            fixed = dict(enumerate(escaped[v] for v in values))
            _series(block, lines, _Layout(block, fixed).formats(), (), value)
        for rows in block.rows:
            key = (family.name, rows.prefix)
            if rows.value is None:
                cached = self._chunks.get(key)
                if cached is None or cached[0] is not rows.mapping:
                    cached = (rows.mapping, _rows_lines(block, rows, escaped, {}))
                chunks[key] = cached
                for section, part in zip(lines, cached[1], strict=False):
                    section.append(part)
            else:
                memo = self._prefixes.get(key, {})
                rendered = _rows_lines(block, rows, escaped, memo)
                if len(memo) > len(rows.mapping):  # groups gone since the last render
                    memo = {k: memo[k] for k in rows.mapping}
                prefixes[key] = memo
                for section, part in zip(lines, rendered, strict=False):
                    section.append(part)
        return lines


def _empty_sections(block: Block) -> list[list[str]]:
    """Sample lines, or for gauge histograms: buckets, gcounts, gsums (text 0.0.4 moves the
    last two into gauges of their own) and the three interleaved per series (OpenMetrics)."""
    return [[], [], [], []] if block.family.kind == "gaugehistogram" else [[]]


class _Layout:
    """The `str.format` templates of one series shape: labels `fixed` (escaped), rest per key."""

    def __init__(self, block: Block, fixed: dict[int, str]) -> None:
        self.block = block
        family, labels = block.family, block.family.labels
        name = family.name
        if not block.le:
            sample = name + "_total" if family.kind == "counter" else name
            self.templates = [_template(sample, labels, fixed)]
        else:
            count, total = (
                ("_gcount", "_gsum") if family.kind == "gaugehistogram" else ("_count", "_sum")
            )
            self.templates = [
                *(_template(name + "_bucket", labels, fixed, f'le="{le}"') for le in block.le),
                _template(name + count, labels, fixed),
                _template(name + total, labels, fixed),
            ]

    def formats(self) -> list[Any]:
        return [t.format for t in self.templates]


def _series(
    block: Block, lines: list[list[str]], formats: list[Any], key: Sequence[str], value: Any
) -> None:
    if not block.le:
        lines[0].append(f"{formats[0](*key)}{go_float(value)}\n")
        return
    _histogram(block, lines, [f(*key) for f in formats], value)


def _histogram(block: Block, lines: list[list[str]], prefixes: Sequence[str], value: Any) -> None:
    counts, total = value
    buckets = "".join([f"{p}{go_float(c)}\n" for p, c in zip(prefixes, counts, strict=False)])
    count = f"{prefixes[-2]}{go_float(counts[-1])}\n"
    sums = f"{prefixes[-1]}{go_float(total)}\n"
    if block.family.kind == "gaugehistogram":
        lines[0].append(buckets)
        lines[1].append(count)
        lines[2].append(sums)
        lines[3].append(buckets + count + sums)
    else:
        lines[0].append(buckets + count + sums)


def _rows_lines(block: Block, rows: Rows, escaped: _Escaped, memo: dict[Any, Any]) -> list[str]:
    """One string per section for every series of `rows`; `memo` remembers the line prefixes
    of series whose values are computed per render (`rows.value`)."""
    layout = _Layout(block, {i: escaped[v] for i, v in enumerate(rows.prefix)})
    mapping, fn = rows.mapping, rows.value
    scalar = len(rows.prefix) + 1 == len(block.family.labels)
    # Label values rarely need escaping: checked for all keys at once, at C speed.
    joined = "".join(mapping) if scalar else "".join(chain.from_iterable(mapping))
    clean = not ("\\" in joined or '"' in joined or "\n" in joined)
    get = escaped.__getitem__
    if not block.le:
        fmt = layout.templates[0].format
        if fn is None:  # every prefix is used once: build them all at C speed
            prefixes: Iterable[str]
            if scalar:
                prefixes = map(fmt, mapping) if clean else map(fmt, map(get, mapping))
            else:
                keys = mapping if clean else (map(get, key) for key in mapping)
                prefixes = starmap(fmt, keys)
            return ["".join(map(_LINE, prefixes, map(go_float, mapping.values())))]
        out: list[str] = []
        append = out.append
        for key, raw in mapping.items():
            prefix = memo.get(key)
            if prefix is None:
                if scalar:
                    prefix = memo[key] = fmt(key if clean else get(key))
                else:
                    prefix = memo[key] = fmt(*key) if clean else fmt(*map(get, key))
            append(f"{prefix}{go_float(fn(raw))}\n")
        return ["".join(out)]
    lines = _empty_sections(block)
    formats = layout.formats()
    for key, raw in mapping.items():
        value = raw if fn is None else fn(raw)
        prefixes_of = memo.get(key) if fn is not None else None
        if prefixes_of is None:
            tail = [get(k) for k in ((key,) if scalar else key)]
            # A tuple, not a list: kept in the memo, a tuple of strings is one the garbage
            # collector stops tracking (a list it walks at every full collection).
            prefixes_of = tuple([f(*tail) for f in formats])
            if fn is not None:
                memo[key] = prefixes_of
        _histogram(block, lines, prefixes_of, value)
    return ["".join(section) for section in lines]


def _headers(family: Family, fmt: Format, suffix: str = "") -> str:
    name = family.name + suffix
    if fmt == "openmetrics":
        text = family.help.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        return f"# HELP {name} {text}\n# TYPE {name} {family.kind}\n"
    text = family.help.replace("\\", r"\\").replace("\n", r"\n")
    kind: str = family.kind
    if suffix:
        kind = "gauge"
    elif kind == "counter":
        name += "_total"
    elif kind == "gaugehistogram":
        kind = "histogram"
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n"


def _assemble(family: Family, sections: list[list[str]], fmt: Format) -> list[str]:
    """Headers and sections in the order each format wants them."""
    if family.kind != "gaugehistogram":
        return [_headers(family, fmt), *sections[0]]
    buckets, gcount, gsum, interleaved = sections
    if fmt == "openmetrics":
        return [_headers(family, fmt), *interleaved]
    # Text 0.0.4 has no gauge histogram: prometheus_client moves _gcount and _gsum into gauges.
    return [
        _headers(family, fmt),
        *buckets,
        _headers(family, fmt, "_gcount"),
        *gcount,
        _headers(family, fmt, "_gsum"),
        *gsum,
    ]


class _One:
    """A registry-like wrapper, so prometheus_client renders a single collector."""

    def __init__(self, collector: Collector) -> None:
        self.collect = collector.collect


def _generic(collector: Collector, fmt: Format) -> str:
    """A standard collector through prometheus_client's own exposition (small collectors)."""
    one: Any = _One(collector)
    if fmt == "openmetrics":
        body: bytes = openmetrics_latest(one)  # type: ignore[no-untyped-call]
        return body.decode().removesuffix("# EOF\n")
    return text_latest(one).decode()
