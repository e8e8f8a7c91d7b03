"""The metrics reference: every family a serving exporter exposes, from the code.

The registry is built as the daemon builds it (`exporter.app.wiring.build_registry`, plus the
HTTP server's collector), around a store with one organisation. A collector with the fast path
(`blocks()`) names its families through the `Family` objects it yields and declares (some, such
as the per-agent gauge, are yielded only when they have series); any other collector (the HTTP
server's, prometheus_client's process and runtime collectors) through what it collects.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

from prometheus_client.registry import Collector

from docsgen.blocks import table
from exporter.app.wiring import build_registry
from exporter.metrics import fleet, handling, queue, servicelevels
from exporter.metrics.families import Family, FastCollector, Registry
from exporter.polling.store import Store
from exporter.settings import Settings
from exporter.web.connections import ConnectionGuard, ServerCollector

# Sections in page order: a family goes to the first whose test it passes.
# Section titles differ from the page's own headings, so their anchors do too.
QUEUE_STATE = "Queue state and flow families"
SERVICE_LEVELS = "Service-level families"
HANDLING = "Handling KPI families"
EXPORTER = "The exporter's families, per organisation"
FLEET = "Shard and reload families"
SERVER = "HTTP server families"
RUNTIME = "Process and Python runtime families (prometheus_client, on Linux)"
KINDS = {
    "gauge": "gauge",
    "counter": "counter",
    "histogram": "histogram (`_bucket`, `_count`, `_sum`)",
    "gaugehistogram": "gauge histogram (`_bucket`, `_gcount`, `_gsum`)",
    "info": "info",
}


@dataclass(frozen=True)
class Entry:
    """One family as the reference lists it."""

    section: str
    name: str  # as exposed: counters end in _total
    kind: str
    labels: tuple[str, ...]
    help: str


def registry() -> Registry:
    """The registry of a serving daemon with one organisation."""
    found = build_registry(Store(["example"]), Settings(agent_metrics=True))
    found.register(ServerCollector(ConnectionGuard()))
    return found


def _declared(module: ModuleType) -> list[Family]:
    return [value for value in vars(module).values() if isinstance(value, Family)]


def _section_of_family(family: Family) -> str:
    if family in _declared(servicelevels):
        return SERVICE_LEVELS
    if family in _declared(handling):
        return HANDLING
    if family in _declared(fleet):
        return FLEET
    about_the_queue = {"state", "from_state", "work_type"} & set(family.labels)
    return QUEUE_STATE if family.per is not None or about_the_queue else EXPORTER


def _from_family(family: Family) -> Entry:
    name = f"{family.name}_total" if family.kind == "counter" else family.name
    return Entry(_section_of_family(family), name, family.kind, family.labels, family.help)


def _fast(collector: FastCollector) -> Iterator[Entry]:
    families = {block.family for block in collector.blocks()}
    module = sys.modules[type(collector).__module__]
    families |= set(_declared(module))
    if module is queue:
        families |= set(queue.declared_families())
    yield from map(_from_family, families)


def _generic(collector: Collector) -> Iterator[Entry]:
    section = SERVER if isinstance(collector, ServerCollector) else RUNTIME
    for metric in collector.collect():
        labels = sorted({k for s in metric.samples for k in s.labels if k != "le"})
        name = f"{metric.name}_total" if metric.type == "counter" else metric.name
        yield Entry(section, name, metric.type, tuple(labels), metric.documentation)


def entries() -> list[Entry]:
    """Every family, by section (in page order) and name."""
    found: dict[str, Entry] = {}
    for collector in registry().collectors:
        made = _fast(collector) if isinstance(collector, FastCollector) else _generic(collector)
        found.update((entry.name, entry) for entry in made)
    order = [QUEUE_STATE, SERVICE_LEVELS, HANDLING, EXPORTER, FLEET, SERVER, RUNTIME]
    return sorted(found.values(), key=lambda e: (order.index(e.section), e.name))


def render() -> str:
    """One table per section."""
    out: list[str] = []
    listed = entries()
    for section in dict.fromkeys(e.section for e in listed):
        rows = [
            (
                f"`{e.name}`",
                KINDS.get(e.kind, e.kind),
                ", ".join(f"`{label}`" for label in e.labels) or "—",
                e.help,
            )
            for e in listed
            if e.section == section
        ]
        out += [f"### {section}\n", table(("name", "type", "labels", "help"), rows)]
    return "\n".join(out)
