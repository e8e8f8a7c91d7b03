"""The generated dashboards: committed, complete, and using only metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import generate
from tests.fakes import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.rules.yml"))
EXPORTER = Path(sys.executable).parent / "alvaria-emailqueue-exporter"

RANGE_FUNCTIONS = re.compile(r"\b(?:rate|irate|increase)\(([^()\[]*)\[([^\]]+)\]")
METRIC_TOKEN = re.compile(r"[A-Za-z_:][\w:]*")
# Panels that average over a fixed window instead of $__rate_interval, and say so.
FIXED_WINDOWS = {
    "Net backlog change": "15m",
    "Estimated time to drain": "15m",
    "Service level by work type": "1h",
}
# Series that describe the queue: two HA replicas report the same values.
QUEUE_METRIC = re.compile(
    r"(?<![\w:])alvaria_emailqueue_(?:emails|oldest_email_\w+|waiting_email_age_seconds\w*|agent_emails"
    r"|arrivals_total|departures_total|state_transitions_total|service_level_\w+|pickups_total"
    r"|pickup_wait_seconds\w*)\b"
)
ONE_REPLICA = "max without (instance, pod)"
# Grafana variables and the values that select everything, for running queries outside Grafana.
VARIABLES = {"$__rate_interval": "1m", "$job": ".*", "$org": ".*"}
VARIABLES |= {"$work_type": ".*", "$email_type": ".*"}


def load_dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboard JSON, by file name."""
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows are only headings)."""
    for panel in board["panels"]:
        if panel["type"] != "row":
            yield panel


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) for every panel target and template variable of every dashboard."""
    found = []
    for name, board in load_dashboards().items():
        for panel in panels(board):
            for target in panel["targets"]:
                found.append((f"{name}: {panel['title']} {target['refId']}", target["expr"]))
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                found.append((f"{name}: ${variable['name']}", variable["query"]))
    return found


def substitute(expr: str) -> str:
    """The query as Grafana would send it with every variable on "All"."""
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """Names of this project's metrics and recording rules in a PromQL expression."""
    return {token for token in METRIC_TOKEN.findall(expr) if "alvaria_emailqueue" in token}


def recorded_names() -> set[str]:
    """Names the recording rules produce."""
    names = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def names_from_exposition(text: str) -> set[str]:
    """Metric names in Prometheus text exposition, including families without samples."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        elif line and not line.startswith("#"):
            names.add(METRIC_TOKEN.match(line).group(0))  # type: ignore[union-attr]
    return names


def exposed_metric_names_from_demo_run(timeout: float = 20.0) -> set[str]:
    """The names the exporter exposes: run `--demo` with agent metrics and read /metrics."""
    port = free_port()
    args = [str(EXPORTER), "--demo", "--agent-metrics", "--listen-address", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)  # polling with a deadline: the exporter has no readiness push
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return names_from_exposition(resp.read().decode())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def exposed_names() -> set[str]:
    """What the real exporter exposes in a demo run."""
    return exposed_metric_names_from_demo_run()


def test_regenerating_gives_the_committed_json(tmp_path: Path) -> None:
    generate.main(tmp_path)
    committed = sorted(path.name for path in DASHBOARD_DIR.glob("*.json"))
    assert sorted(path.name for path in tmp_path.iterdir()) == committed
    for name in committed:
        assert (tmp_path / name).read_text() == (DASHBOARD_DIR / name).read_text(), (
            f"{name} is out of date: run `make dashboards` and commit the result"
        )


def test_dashboards_have_the_agreed_titles_and_variables() -> None:
    boards = load_dashboards()
    assert {board["title"] for board in boards.values()} == {
        "Email queue overview",
        "Exporter health",
    }
    variables = {v["name"] for v in boards["emailqueue-overview.json"]["templating"]["list"]}
    assert variables == {"datasource", "job", "org", "work_type", "email_type"}


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_every_panel_is_described_and_has_a_unit(name: str) -> None:
    for panel in panels(load_dashboards()[name]):
        assert panel.get("title"), panel
        assert panel.get("description"), panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_every_target_has_a_ref_id_and_uses_the_rate_interval(name: str) -> None:
    for panel in panels(load_dashboards()[name]):
        ref_ids = [target.get("refId") for target in panel["targets"]]
        assert all(ref_ids) and len(set(ref_ids)) == len(ref_ids), panel["title"]
        expected = FIXED_WINDOWS.get(panel["title"], "$__rate_interval")
        for target in panel["targets"]:
            for _selector, window in RANGE_FUNCTIONS.findall(target["expr"]):
                assert window == expected, (panel["title"], target["expr"])


def test_fixed_windows_are_used_and_explained() -> None:
    board = load_dashboards()["emailqueue-overview.json"]
    for title, window in FIXED_WINDOWS.items():
        (panel,) = [p for p in panels(board) if p["title"] == title]
        assert f"[{window}]" in panel["targets"][0]["expr"], title
        spelled = {"15m": "fixed 15 minutes", "1h": "fixed hour"}[window]
        assert spelled in panel["description"], title


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_queue_panels_count_each_replica_once(name: str) -> None:
    """Every selector of a queue metric sits inside `max without (instance, pod)`."""
    for panel in panels(load_dashboards()[name]):
        for target in panel["targets"]:
            expr = target["expr"]
            for match in QUEUE_METRIC.finditer(expr):
                before = expr[: match.start()]
                # The innermost open `max without (instance, pod) (` before the metric, with at
                # most a rate()/increase() call between it and the selector.
                assert re.search(re.escape(ONE_REPLICA) + r" \((?:rate\(|increase\()?$", before), (
                    panel["title"],
                    expr,
                )


def test_queue_check_catches_a_sum_over_replicas() -> None:
    assert QUEUE_METRIC.search('sum by (org) (rate(alvaria_emailqueue_arrivals_total{a="b"}[5m]))')
    ok = f"sum by (org) ({ONE_REPLICA} (rate(alvaria_emailqueue_arrivals_total[5m])))"
    match = QUEUE_METRIC.search(ok)
    assert match and ok[: match.start()].endswith(f"{ONE_REPLICA} (rate(")


def test_the_heatmap_reads_the_gauge_histogram_buckets() -> None:
    board = load_dashboards()["emailqueue-overview.json"]
    (heatmap,) = [panel for panel in panels(board) if panel["type"] == "heatmap"]
    (target,) = heatmap["targets"]
    assert target["format"] == "heatmap"
    assert target["expr"].startswith(
        f"sum by (le) ({ONE_REPLICA} (alvaria_emailqueue_waiting_email_age_seconds_bucket"
    )
    assert "gauge histogram" in heatmap["description"]
    assert "never put them into rate()" in heatmap["description"]


def test_agent_workload_says_which_filters_do_not_apply() -> None:
    board = load_dashboards()["emailqueue-overview.json"]
    (panel,) = [p for p in panels(board) if p["title"] == "Agent workload"]
    assert "no work_type or email_type label" in panel["description"]
    assert "$work_type" not in panel["targets"][0]["expr"]


def test_the_shard_table_shows_every_field_of_every_replica() -> None:
    """One query per column, merged by replica: an `or` chain of series with the same labels
    would keep only its first metric (`or` ignores the name) and hide total_shards."""
    board = load_dashboards()["exporter-health.json"]
    (panel,) = [p for p in panels(board) if p["title"] == "Replicas and shards"]
    exprs = {t["refId"]: t["expr"] for t in panel["targets"]}
    assert all(" or " not in e for e in exprs.values())
    names = {re.match(r"alvaria_emailqueue_(\w+)", e).group(1) for e in exprs.values()}  # type: ignore[union-attr]
    assert names == {"shard_ordinal", "total_shards", "targets", "config_last_reload_successful"}
    assert all(t["instant"] and t["format"] == "table" for t in panel["targets"])
    merge, organize = panel["transformations"]
    assert merge["id"] == "merge" and organize["id"] == "organize"
    renamed = organize["options"]["renameByName"]
    assert set(renamed) == {f"Value #{ref}" for ref in exprs}
    total = next(ref for ref, expr in exprs.items() if "total_shards" in expr)
    assert renamed[f"Value #{total}"] == "total_shards"


def test_waiting_age_quantiles_per_work_type() -> None:
    board = load_dashboards()["emailqueue-overview.json"]
    (panel,) = [p for p in panels(board) if p["title"] == "Waiting age p50 / p90 by work type"]
    exprs = [target["expr"] for target in panel["targets"]]
    assert [e.split(",")[0] for e in exprs] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.9",
    ]
    assert all("sum by (org, work_type, le)" in e for e in exprs)


def test_datasource_time_interval_matches_the_compose_scrape_interval() -> None:
    provisioning = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    (source,) = yaml.safe_load(provisioning.read_text())["datasources"]
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    assert source["jsonData"]["timeInterval"] == compose["global"]["scrape_interval"]


def test_range_pattern_catches_a_fixed_window() -> None:
    windows = [w for _, w in RANGE_FUNCTIONS.findall('rate(x{a="b"}[5m]) + increase(y[1h])')]
    assert windows == ["5m", "1h"]


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run `make system-deps`"
    rules = [
        {"record": f"dashboard_query_{i}", "expr": substitute(expr)}
        for i, (_, expr) in enumerate(dashboard_queries())
        if not expr.startswith("label_values(")
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(  # noqa: S603
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_used_exists_or_is_recorded(exposed_names: set[str]) -> None:
    # No allow-list: a family the dashboards or rules use must be in a real exporter's /metrics.
    known = exposed_names | recorded_names()
    used = {(where, name) for where, expr in dashboard_queries() for name in metric_names(expr)}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                where = f"{path.name}: {rule.get('record') or rule.get('alert')}"
                used |= {(where, name) for name in metric_names(rule["expr"])}
    unknown = sorted((where, name) for where, name in used if name not in known)
    assert not unknown


def test_exposition_parser_sees_families_without_samples() -> None:
    text = (
        "# TYPE alvaria_emailqueue_label_overflow_total counter\n"
        "# TYPE alvaria_emailqueue_api_request_duration_seconds histogram\n"
        'alvaria_emailqueue_up{org="demo"} 1.0\n'
    )
    assert names_from_exposition(text) == {
        "alvaria_emailqueue_label_overflow_total",
        "alvaria_emailqueue_api_request_duration_seconds",
        "alvaria_emailqueue_api_request_duration_seconds_bucket",
        "alvaria_emailqueue_api_request_duration_seconds_count",
        "alvaria_emailqueue_api_request_duration_seconds_sum",
        "alvaria_emailqueue_up",
    }


def test_every_panel_the_runbooks_name_exists() -> None:
    titles = {
        board["title"]: {p["title"] for p in panels(board)} for board in load_dashboards().values()
    }
    runbooks = (ROOT / "docs" / "alerts.md").read_text()
    named = []
    # Runbooks point at panels as: *Dashboard title* → "Panel title", "Other panel" ...
    for paragraph in re.split(r"\n(?=- |\n)", runbooks):
        if match := re.search(r"\*([^*]+)\* →(.*)", paragraph, flags=re.DOTALL):
            board, rest = match.groups()
            rest = re.sub(r"`[^`]*`", "", rest)  # PromQL in backticks quotes label values
            named += [(board, title) for title in re.findall(r'"([^"]+)"', rest)]
    assert len(named) > 10
    assert [(b, t) for b, t in named if t not in titles.get(b, set())] == []
