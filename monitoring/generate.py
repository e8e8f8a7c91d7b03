"""Write every generated monitoring file from `monitoring.config.CONFIG` (`make monitoring`).

Outputs: the Prometheus rule files, the Prometheus Operator PrometheusRule, the Grafana
dashboards, the example Alertmanager configuration (with time intervals from the exporter
configuration deploy/alertmanager/service-levels.example.yml), and a jsonnet-free mixin layout (`deploy/mixin/`: prometheus_rules.yaml,
prometheus_alerts.yaml, dashboards_out/) that kube-prometheus users can vendor.
`python -m monitoring.generate --check` exits 1 when a committed file is out of date.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from monitoring import alertmanager, alerts_exporter, alerts_fleet, alerts_queue, recording
from monitoring.config import CONFIG, Config

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = Path("deploy/prometheus/rules")
MIXIN_DIR = Path("deploy/mixin")
DASHBOARD_DIR = Path("grafana/dashboards")
PROMETHEUS_RULE = Path("deploy/kubernetes/base/prometheusrule.yaml")
HEADER = (
    "# Generated from monitoring/config.py by `make monitoring`. Do not edit: change the\n"
    "# configuration (or the generator in monitoring/) and regenerate.\n"
)


def _prometheusrule_module() -> ModuleType:
    path = ROOT / "deploy" / "kubernetes" / "generate_prometheusrule.py"
    spec = importlib.util.spec_from_file_location("generate_prometheusrule", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so expressions stay readable."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and all(ln == ln.rstrip() for ln in value.split("\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(content: Any) -> str:
    """YAML text as committed: block scalars, keys in insertion order, no line wrapping."""
    return str(yaml.dump(content, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096))


def alert_groups(config: Config = CONFIG) -> list[dict[str, Any]]:
    """Every alerting rule group."""
    problems = config.check()
    if problems:
        raise ValueError("invalid monitoring configuration:\n" + "\n".join(problems))
    return (
        alerts_exporter.groups(config) + alerts_fleet.groups(config) + alerts_queue.groups(config)
    )


def _dashboards(config: Config) -> dict[str, str]:
    from grafana import generate as dashboards

    return {name: dashboards.render(build, config) for name, build in dashboards.DASHBOARDS.items()}


def outputs(config: Config = CONFIG) -> dict[Path, str]:
    """Every generated file (path relative to the repository root) and its text."""
    rules = {"groups": recording.groups(config)}
    alerts = {"groups": alert_groups(config)}
    files = {
        RULES_DIR / "recording.rules.yml": HEADER + dump(rules),
        RULES_DIR / "alerts.rules.yml": HEADER + dump(alerts),
        MIXIN_DIR / "prometheus_rules.yaml": HEADER + dump(rules),
        MIXIN_DIR / "prometheus_alerts.yaml": HEADER + dump(alerts),
    }
    prometheusrule = _prometheusrule_module()
    files[PROMETHEUS_RULE] = prometheusrule.render(
        prometheusrule.wrap(alerts["groups"] + rules["groups"])  # the rule files' sorted order
    )
    files[alertmanager.PATH] = alertmanager.render(config)
    for name, text in _dashboards(config).items():
        files[DASHBOARD_DIR / name] = text
        files[MIXIN_DIR / "dashboards_out" / name] = text
    return files


def stale(root: Path = ROOT, config: Config = CONFIG) -> list[Path]:
    """Generated files whose committed text differs from what the generator writes."""
    return [
        path
        for path, text in outputs(config).items()
        if not (root / path).exists() or (root / path).read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None, write: Callable[[str], object] = print) -> int:
    """Write the files, or with --check report the stale ones and exit 1."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            write(f"{path} is out of date; run `make monitoring`")
        return 1 if out_of_date else 0
    for path, text in outputs().items():
        (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / path).write_text(text, encoding="utf-8")
        write(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
