"""The alerts reference: every alert of the generated rules (`make monitoring`), as it fires."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from docsgen.blocks import ROOT, table

RULES = ROOT / "deploy" / "prometheus" / "rules" / "alerts.rules.yml"
_QUERY = r'\{\{-? *with query \(printf "(?P<query>[^"]*)"[^)]*\) *-?\}\}'
_ELSE_END = r"\{\{-? *else *-?\}\}.*?\{\{-? *end *-?\}\}"
# In the order applied: a looked-up label or value, a label's `with`, labels, the value, if/else.
_RULES = (
    (re.compile(_QUERY + r"\{\{ *\(first \.\)\.Labels\.(?P<label>\w+) *\}\}" + _ELSE_END),
     lambda m: f"<{m['label']}>"),
    (re.compile(_QUERY + r"\{\{ *\(first \.\)\.Value[^}]*\}\}" + _ELSE_END),
     lambda m: f"<{_series(m['query'])}>"),
    (re.compile(r"\{\{-? *with \$labels\.(\w+) *-?\}\}(.*?)\{\{-? *end *-?\}\}"),
     lambda m: m[2].replace("{{ . }}", f"<{m[1]}>")),
    (re.compile(r"\{\{-? *\$labels\.(\w+) *-?\}\}"), lambda m: f"<{m[1]}>"),
    (re.compile(r'\{\{-? *(?:printf "[^"]*" )?\$value[^}]*\}\}'), lambda m: "<value>"),
    (re.compile(r"\{\{-? *if [^}]*\}\}(.*?)\{\{-? *else *-?\}\}(.*?)\{\{-? *end *-?\}\}"),
     lambda m: f"{m[1]} (or: {m[2]})"),
)  # fmt: skip
_OTHER = re.compile(r"\{\{.*?\}\}")


def _series(query: str) -> str:
    """What a looked-up series is: the meaningful part of its (recording rule) name."""
    name = re.split(r"[{(]", query.removeprefix("topk(1, "))[0]
    parts = [p for p in name.split(":") if p not in ("max", "sum", "min")]
    return parts[-1].removeprefix("alvaria_emailqueue_")


def readable(template: str) -> str:
    """An annotation template as a reader takes it in: `<org>` for a label, `<value>` for the
    value, `<threshold>` for a looked-up series; other template actions dropped."""
    text = template
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return " ".join(_OTHER.sub("", text).split())


def alerting_rules(path: Path = RULES) -> Iterator[dict[str, Any]]:
    """Every alerting rule of the file, in its order."""
    for group in yaml.safe_load(path.read_text())["groups"]:
        yield from (rule for rule in group["rules"] if "alert" in rule)


def render(path: Path = RULES) -> str:
    """One row per alert; an alert with several rules (burn windows) joins their values."""
    merged: dict[str, dict[str, list[str]]] = {}
    for rule in alerting_rules(path):
        row = merged.setdefault(rule["alert"], {})
        values = {
            "severity": rule["labels"]["severity"],
            "for": rule.get("for", "0s"),
            "keep_firing_for": rule.get("keep_firing_for", "—"),
            "summary": re.sub(r"<(\w+)>", r"`<\1>`", readable(rule["annotations"]["summary"])),
            "runbook": rule["annotations"]["runbook_url"].rsplit("#", 1)[-1],
        }
        for key, value in values.items():
            kept = row.setdefault(key, [])
            if value not in kept:
                kept.append(value)
    rows = [
        (
            f"[{name}](#{row['runbook'][0]})",
            " / ".join(row["severity"]),
            " / ".join(row["for"]),
            " / ".join(row["keep_firing_for"]),
            " / ".join(row["summary"]),
        )
        for name, row in merged.items()
    ]
    header = ("alert (runbook)", "severity", "for", "keep firing for", "summary")
    return table(header, rows)
