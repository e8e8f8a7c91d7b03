"""The PromQL in the docs parses, and counts each HA replica once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.monitoring.test_dashboards import ONE_REPLICA, QUEUE_METRIC
from tests.monitoring.test_rules import run, tool

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```promql\n(.*?)```", flags=re.DOTALL)


def expressions(text: str) -> list[str]:
    """Every expression of every promql block: comments dropped, continuation lines joined.

    An expression goes on while its parentheses are open or the next line is indented.
    """
    found: list[str] = []
    for block in BLOCK.findall(text):
        current: list[str] = []
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                if current:
                    found.append("\n".join(current))
                    current = []
                continue
            joined = "\n".join(current)
            if current and not line[0].isspace() and joined.count("(") == joined.count(")"):
                found.append(joined)
                current = []
            current.append(line)
        if current:
            found.append("\n".join(current))
    return found


def doc_expressions() -> list[tuple[str, str]]:
    """(document, expression) for every documented query."""
    return [
        (str(path.relative_to(ROOT)), expr)
        for path in DOCS
        for expr in expressions(path.read_text())
    ]


def test_the_docs_have_queries() -> None:
    assert {doc for doc, _ in doc_expressions()} >= {"docs/metrics.md", "docs/deployment.md"}
    assert len([e for d, e in doc_expressions() if d == "docs/metrics.md"]) >= 8


def test_every_documented_query_parses(tmp_path: Path) -> None:
    rules = [
        {"record": f"docs:query_{n}", "expr": expr} for n, (_, expr) in enumerate(doc_expressions())
    ]
    path = tmp_path / "docs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": rules}]}))
    result = run(tool("promtool"), "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("doc", "expr"), doc_expressions())
def test_documented_queue_queries_count_each_replica_once(doc: str, expr: str) -> None:
    for match in QUEUE_METRIC.finditer(expr):
        before = expr[: match.start()]
        assert re.search(re.escape(ONE_REPLICA) + r" \((?:rate\(|increase\()?$", before), (
            doc,
            expr,
        )


def test_the_splitter_and_the_replica_check() -> None:
    text = "```promql\n# a\nsum(x)\nsum(y)\n  / 2\n(a\n - b)\n```\n"
    assert expressions(text) == ["sum(x)", "sum(y)\n  / 2", "(a\n - b)"]
    bad = "sum by (org) (rate(alvaria_emailqueue_arrivals_total[5m]))"
    match = QUEUE_METRIC.search(bad)
    assert match and not bad[: match.start()].endswith(f"{ONE_REPLICA} (rate(")
