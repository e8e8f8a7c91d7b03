"""Blocks of metric families as Prometheus text 0.0.4 or OpenMetrics 1.0, byte for byte as
prometheus_client writes them, at a fraction of its cost.

prometheus_client's `generate_latest` sorts, validates and escapes every label of every sample
on every scrape (5 to 10 µs of CPU a sample). Here a family's labels are compiled once into
format templates (`exporter.metrics.lines`), label values are escaped once per render, and work
is kept between renders where the data allows it: a block of series whose mapping is the very
object rendered last time (a frozen snapshot's) is reused whole, encoded and deflated already
(`exporter.metrics.gzipped`), and what the lines of series whose values change per scrape (ages)
are made of is kept, so only their numbers are formatted again. What is kept is only what the
last render used, so it is bounded by the size of one `/metrics` body.

`Renderer` is not thread-safe: one render at a time (`exporter.web.exposition` runs them in one
worker thread).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector

from exporter.metrics.families import Block, Family, LabelValues, Part, gather
from exporter.metrics.gzipped import LEVEL, Chunk, Deflater, Piece, data_of
from exporter.metrics.lines import (
    Escaped,
    Layout,
    empty_sections,
    escape_label_value,
    go_float,
    histogram,
    rows_lines,
)

__all__ = [
    "CONTENT_TYPES",
    "Format",
    "Rendered",
    "Renderer",
    "escape_label_value",
    "go_float",
    "render",
]

Format = Literal["text", "openmetrics"]
CONTENT_TYPES: dict[Format, str] = {
    "text": "text/plain; version=0.0.4; charset=utf-8",
    "openmetrics": "application/openmetrics-text; version=1.0.0; charset=utf-8",
}


def render(registry: CollectorRegistry, fmt: Format = "text") -> bytes:
    """One body, rendered here and now (`--once`, tests); the server renders in a thread."""
    return Renderer().render(gather(registry), fmt)


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
        self._layouts: dict[_Shape, Layout] = {}
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
        self.layouts: dict[_Shape, Layout] = {}
        self.escaped = Escaped()
        self.seen: set[str] = set()

    def sections(self, block: Block) -> list[list[str | Chunk]]:
        """The block's sections (see `empty_sections`), each a list of lines and kept chunks."""
        shape = (block.family.name, block.le)
        layout = self.layouts[shape] = self.old._layouts.get(shape) or Layout(block)
        lines: list[list[str | Chunk]] = [[] for _ in empty_sections(block)]
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
                    text = rows_lines(block, rows, layout, self.escaped, {})
                    cached = (rows.mapping, [Chunk(t) for t in text])
                chunks[prefix] = cached
                for section, chunk in zip(lines, cached[1], strict=False):
                    section.append(chunk)
            else:
                memo = old_memos.get(prefix, {})
                rendered = rows_lines(block, rows, layout, self.escaped, memo)
                if len(memo) > len(rows.mapping):  # groups gone since the last render
                    memo = {k: memo[k] for k in rows.mapping}
                if memo:
                    memos[prefix] = memo
                for section, rendered_text in zip(lines, rendered, strict=False):
                    section.append(rendered_text)
        return lines

    def _singles_lines(
        self, block: Block, layout: Layout, sections: list[list[str | Chunk]]
    ) -> None:
        """The single series of `block` (a few per organisation: formatted afresh)."""
        get = self.escaped.__getitem__
        if block.le:
            lines = empty_sections(block)
            gauge = block.family.kind == "gaugehistogram"
            formats = layout.bound(())
            for values, value in block.singles:
                histogram(lines, gauge, formats, values, values, value, {}, get)
            for section, part in zip(sections, lines, strict=True):
                section.append("".join(part))
            return
        fmt = layout.templates[0].format
        out = [f"{fmt(*map(get, values))}{go_float(value)}\n" for values, value in block.singles]
        sections[0].append("".join(out))


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
