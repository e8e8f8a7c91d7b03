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
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from itertools import chain, starmap
from typing import Any, Literal

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector

from exporter.metrics.families import Block, Family, LabelValues, Part, Rows, gather
from exporter.metrics.gzipped import LEVEL, Chunk, Deflater, Piece, data_of

Format = Literal["text", "openmetrics"]
CONTENT_TYPES: dict[Format, str] = {
    "text": "text/plain; version=0.0.4; charset=utf-8",
    "openmetrics": "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
_INF, _NINF = math.inf, -math.inf
# Where a line is split around its first label value (no template or escaped value holds NUL:
# label values from upstream have their control characters replaced).
_MARK = "\x00"
_FRAGMENTS_LIMIT = 100_000  # keys per family; forgotten when full (only a speed-up)
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


class Rendered:
    """One render's body as pieces in output order: the body, or its gzip (`Renderer.gzip`),
    is joined from them when asked for."""

    __slots__ = ("pieces",)

    def __init__(self, pieces: list[Piece]) -> None:
        self.pieces = pieces

    def body(self) -> bytes:
        return b"".join(map(data_of, self.pieces))


# A family's series as rendered: its name and the `le` bounds of histograms.
_Shape = tuple[str, tuple[str, ...]]


class Renderer:
    """Renders gathered parts; keeps what the next render can reuse.

    Kept between renders (only what the last render used, so bounded by one body): the lines of
    every mapping that is the very object rendered last time (a frozen snapshot's counts: each
    organisation's are rendered once per poll) with their deflate data, and the line prefixes of
    series whose values move with time (ages).
    """

    def __init__(self, level: int = LEVEL) -> None:
        # (family, `le` bounds) -> label values before the key -> what was rendered under them
        self._chunks: dict[_Shape, dict[LabelValues, tuple[object, list[Chunk]]]] = {}
        self._prefixes: dict[_Shape, dict[LabelValues, dict[Any, Any]]] = {}
        self._layouts: dict[_Shape, _Layout] = {}
        self._deflater = Deflater(level)

    @property
    def remembered(self) -> int:
        """Series whose line prefixes are kept for the next render."""
        return sum(len(memo) for memos in self._prefixes.values() for memo in memos.values())

    def render(self, parts: Sequence[Part], fmt: Format) -> bytes:
        """The whole `/metrics` body in `fmt`."""
        return self.pieces(parts, fmt).body()

    def gzip(self, rendered: Rendered) -> bytes:
        """The gzip of a rendered body (kept lines are compressed once, see `gzipped`)."""
        return self._deflater.gzip(rendered.pieces)

    def pieces(self, parts: Sequence[Part], fmt: Format) -> Rendered:
        """The whole `/metrics` body in `fmt`, as pieces."""
        out: list[Piece] = []
        state = _Pass(self)
        for part in parts:
            if isinstance(part, list):
                blocks: Iterable[Block] = part
            elif getattr(part, "collect", None) is not None:
                out.append(_generic(part, fmt).encode())  # type: ignore[arg-type]
                continue
            else:
                blocks = part.blocks()  # type: ignore[union-attr]
            for block in blocks:
                family = block.family
                if family.name in state.seen:
                    raise ValueError(f"{family.name}: the family was yielded twice in one scrape")
                state.seen.add(family.name)
                out.extend(_assemble(family, state.sections(block), fmt))
        self._chunks, self._prefixes, self._layouts = state.chunks, state.prefixes, state.layouts
        if fmt == "openmetrics":
            out.append(b"# EOF\n")
        return Rendered(out)


class _Pass:
    """One render: what it reuses from the renderer, and what it keeps for the next."""

    def __init__(self, renderer: Renderer) -> None:
        self.old = renderer
        self.chunks: dict[_Shape, dict[LabelValues, tuple[object, list[Chunk]]]] = {}
        self.prefixes: dict[_Shape, dict[LabelValues, dict[Any, Any]]] = {}
        self.layouts: dict[_Shape, _Layout] = {}
        self.escaped = _Escaped()
        self.seen: set[str] = set()

    def sections(self, block: Block) -> list[list[str | Chunk]]:
        """The block's sections (see `_empty_sections`), each a list of lines and kept chunks."""
        shape = (block.family.name, block.le)
        layout = self.layouts[shape] = self.old._layouts.get(shape) or _Layout(block)
        lines: list[list[str | Chunk]] = [[] for _ in _empty_sections(block)]
        if block.singles:
            self._singles_lines(block, layout, lines)
        old_chunks = self.old._chunks.get(shape, {})
        old_memos = self.old._prefixes.get(shape, {})
        chunks = self.chunks.setdefault(shape, {})
        memos = self.prefixes.setdefault(shape, {})
        for rows in block.rows:
            prefix = rows.prefix
            if rows.reusable:
                cached = old_chunks.get(prefix)
                if cached is None or cached[0] is not rows.mapping:
                    text = _rows_lines(block, rows, layout, self.escaped, {})
                    cached = (rows.mapping, [Chunk(t) for t in text])
                chunks[prefix] = cached
                for section, chunk in zip(lines, cached[1], strict=False):
                    section.append(chunk)
            else:
                memo = old_memos.get(prefix, {})
                rendered = _rows_lines(block, rows, layout, self.escaped, memo)
                if len(memo) > len(rows.mapping):  # groups gone since the last render
                    memo = {k: memo[k] for k in rows.mapping}
                if memo:
                    memos[prefix] = memo
                for section, rendered_text in zip(lines, rendered, strict=False):
                    section.append(rendered_text)
        return lines

    def _singles_lines(
        self, block: Block, layout: _Layout, sections: list[list[str | Chunk]]
    ) -> None:
        """The single series of `block` (a few per organisation: formatted afresh)."""
        get = self.escaped.__getitem__
        if block.le:
            lines = _empty_sections(block)
            gauge = block.family.kind == "gaugehistogram"
            formats = layout.bound(())
            for values, value in block.singles:
                _histogram(lines, gauge, formats, values, values, value, {}, get)
            for section, part in zip(sections, lines, strict=True):
                section.append("".join(part))
            return
        fmt = layout.templates[0].format
        out = [f"{fmt(*map(get, values))}{go_float(value)}\n" for values, value in block.singles]
        sections[0].append("".join(out))


def _empty_sections(block: Block) -> list[list[str]]:
    """Sample lines, or for gauge histograms: buckets, gcounts, gsums (text 0.0.4 moves the
    last two into gauges of their own) and the three interleaved per series (OpenMetrics)."""
    return [[], [], [], []] if block.family.kind == "gaugehistogram" else [[]]


class _Layout:
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
        holds the marker the split is made at (then the lines are formatted)."""
        found = self._fragments
        missing = set(keys).difference(found)
        if not missing:
            return found
        if len(found) + len(missing) > _FRAGMENTS_LIMIT:
            found.clear()
        fmt = self.templates[0].format
        for key in missing:
            line = fmt(_MARK, get(key)) if scalar else fmt(_MARK, *map(get, key))
            head, mark, tail = line.partition(_MARK)
            if not mark or _MARK in tail:
                return None
            found[key] = (head, tail)
        return found


def _rows_lines(
    block: Block, rows: Rows, layout: _Layout, escaped: _Escaped, memo: dict[Any, Any]
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
    if len(rows.prefix) == 1 and _MARK not in rows.prefix[0]:
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
    lines = _empty_sections(block)
    gauge = block.family.kind == "gaugehistogram"
    for key, raw in rows.mapping.items():
        tail = (key,) if scalar else key
        value = raw if fn is None else fn(raw)
        _histogram(lines, gauge, formats, key, tail, value, memo, get)
    return ["".join(section) for section in lines]


def _histogram(
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


def _assemble(family: Family, sections: list[list[str | Chunk]], fmt: Format) -> list[Piece]:
    """Headers and sections in the order each format wants them, as pieces: kept chunks as
    they are, the text in between joined and encoded."""
    if family.kind != "gaugehistogram":
        return _pieces([_headers(family, fmt), *sections[0]])
    buckets, gcount, gsum, interleaved = sections
    if fmt == "openmetrics":
        return _pieces([_headers(family, fmt), *interleaved])
    # Text 0.0.4 has no gauge histogram: prometheus_client moves _gcount and _gsum into gauges.
    return _pieces(
        [
            _headers(family, fmt),
            *buckets,
            _headers(family, fmt, "_gcount"),
            *gcount,
            _headers(family, fmt, "_gsum"),
            *gsum,
        ]
    )


def _pieces(parts: list[str | Chunk]) -> list[Piece]:
    """Runs of text joined and encoded once; chunks kept as they are."""
    out: list[Piece] = []
    run: list[str] = []
    for part in parts:
        if isinstance(part, str):
            run.append(part)
            continue
        if run:
            out.append("".join(run).encode())
            run = []
        out.append(part)
    if run:
        out.append("".join(run).encode())
    return out


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
