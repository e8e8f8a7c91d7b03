"""The handling KPIs' settings (SPEC §10): thread_memory, max_threads, work_type_label and
metric_denylist, from every source, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from exporter.app.wiring import aggregation_options, denied_families, handling_options
from exporter.domain.errors import ConfigError
from exporter.metrics.families import series_cost
from exporter.metrics.queue import declared_families
from exporter.settings import Settings, TargetSettings, load
from tests.app.test_main import run_cli
from tests.fake_alvaria import FakeAlvaria

ENV = {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": "k", "ALVARIA_ACCESS_TOKEN": "t"}


def test_defaults() -> None:
    cfg = Settings()
    assert (cfg.thread_memory, cfg.max_threads) == (7 * 86400, 100_000)
    assert (cfg.work_type_label, cfg.metric_denylist) == ("name", ())
    assert denied_families(cfg) == frozenset()


def test_from_flags_env_and_the_config_file(tmp_path: Path) -> None:
    cfg = load(
        ["--thread-memory", "2d", "--metric-denylist", "agent_load,^alvaria_emailqueue_up$"],
        {**ENV, "ALVARIA_MAX_THREADS": "50", "ALVARIA_WORK_TYPE_LABEL": "ID"},
    ).settings
    assert (cfg.thread_memory, cfg.max_threads, cfg.work_type_label) == (172800, 50, "id")
    assert cfg.metric_denylist == ("agent_load", "^alvaria_emailqueue_up$")
    path = tmp_path / "c.yaml"
    path.write_text("metric_denylist: [handle_seconds, 'resolution.*']\nthread_memory: 1h\n")
    cfg = load(["--config-file", str(path)], ENV).settings
    assert cfg.metric_denylist == ("handle_seconds", "resolution.*") and cfg.thread_memory == 3600


@pytest.mark.parametrize(
    ("argv", "env", "setting", "source", "problem"),
    [
        (["--metric-denylist", "ok,bad("], {}, "metric_denylist", "flag", "not a regular expr"),
        ([], {"ALVARIA_METRIC_DENYLIST": "[x"}, "metric_denylist", "env", "not a regular expr"),
        ([], {"ALVARIA_WORK_TYPE_LABEL": "uuid"}, "work_type_label", "env", "'name' or 'id'"),
        (["--thread-memory", "0"], {}, "thread_memory", "flag", "greater than 0"),
        (["--max-threads", "-1"], {}, "max_threads", "flag", "greater than or equal to 0"),
    ],
)
def test_bad_values_name_the_setting(
    argv: list[str], env: dict[str, str], setting: str, source: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(argv, {**ENV, **env})
    assert info.value.setting == setting
    assert info.value.source.startswith(source)
    assert problem in info.value.problem


def test_a_bad_regular_expression_in_the_config_file_names_its_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("metric_denylist: ['fine', 'a{1']\n")
    load(["--config-file", str(path)], ENV)  # an unclosed brace is a literal in Python
    path.write_text("metric_denylist: ['fine', '(?<']\n")
    with pytest.raises(ConfigError) as info:
        load(["--config-file", str(path)], ENV)
    assert info.value.setting == "metric_denylist"
    assert info.value.source == f"config file {path} (metric_denylist)"


async def test_a_bad_regular_expression_exits_2_in_one_line() -> None:
    env = FakeAlvaria(base_url="http://127.0.0.1:1").env(ALVARIA_METRIC_DENYLIST="handle(")
    code, _, err = await run_cli("--check-config", env=env)
    assert code == 2
    assert "metric_denylist" in err and "ALVARIA_METRIC_DENYLIST" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_denylist_matches_exposed_names_anywhere_like_kube_state_metrics() -> None:
    cfg = Settings(metric_denylist=("repeat_contacts_total$", "^alvaria_emailqueue_agents"))
    denied = denied_families(cfg)
    # Counters are matched with their _total; a pattern matches anywhere unless anchored.
    assert denied == {"alvaria_emailqueue_repeat_contacts", "alvaria_emailqueue_agents_working"}
    assert not handling_options(cfg).repeat_contacts
    assert handling_options(cfg).agents  # agent_load is still exported


def test_a_denied_family_costs_no_series() -> None:
    plain = Settings(targets=())
    denied = Settings(metric_denylist=("handle_seconds", "resolution_seconds"))
    full = series_cost(declared_families(), len(plain.age_buckets))

    def cost(cfg: Settings) -> int:
        target = TargetSettings(org_id="a", api_key=SecretStr("k"), access_token=SecretStr("t"))
        return aggregation_options(cfg, target).series_cost.pair

    assert cost(plain) == full.pair
    assert cost(denied) == full.pair - 2 * (len(plain.age_buckets) + 3)
