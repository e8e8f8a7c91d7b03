"""The generated parts of pages: find, render and replace the text between their markers."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@dataclass(frozen=True)
class Part:
    """One generated part: its name, the page holding it and the function rendering it."""

    name: str
    page: str  # relative to docs/
    render: Callable[[], str]

    @property
    def begin(self) -> str:
        return f"<!-- generated:{self.name}:begin (python -m docsgen; do not edit) -->"

    @property
    def end(self) -> str:
        return f"<!-- generated:{self.name}:end -->"


def replace(text: str, part: Part, body: str) -> str:
    """`text` with the part's markers enclosing `body`; the markers must be there exactly once."""
    pattern = re.compile(
        re.escape(f"<!-- generated:{part.name}:begin") + r"[^\n]*-->\n.*?" + re.escape(part.end),
        flags=re.DOTALL,
    )
    found = pattern.findall(text)
    if len(found) != 1:
        raise ValueError(f"docs/{part.page}: {len(found)} generated:{part.name} parts, need 1")
    return pattern.sub(lambda _: f"{part.begin}\n{body.rstrip()}\n{part.end}", text)


def stale(parts: Sequence[Part], docs: Path = DOCS) -> list[str]:
    """The pages whose generated parts differ from a fresh render, by part name."""
    rendered = _rendered(parts, docs)
    return [page for page, text in rendered.items() if (docs / page).read_text() != text]


def write(parts: Sequence[Part], docs: Path = DOCS) -> list[str]:
    """Rewrite every generated part; returns the pages that changed."""
    changed = []
    for page, text in _rendered(parts, docs).items():
        path = docs / page
        if path.read_text() != text:
            path.write_text(text)
            changed.append(page)
    return changed


def _rendered(parts: Sequence[Part], docs: Path) -> dict[str, str]:
    pages: dict[str, str] = {}
    for part in parts:
        text = pages.get(part.page) or (docs / part.page).read_text()
        pages[part.page] = replace(text, part, part.render())
    return pages


def cell(text: object) -> str:
    """A Markdown table cell: pipes escaped, lines joined."""
    return " ".join(str(text).split()).replace("|", "\\|")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
