"""The fleet settings: shard (or auto), total_shards and max_requests_per_second."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from exporter.app.main import main
from exporter.domain.errors import ConfigError
from exporter.settings import load

BASE = {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": "k", "ALVARIA_ACCESS_TOKEN": "t"}


def test_defaults_poll_everything_without_a_rate_limit() -> None:
    cfg = load([], BASE).settings
    assert (cfg.shard, cfg.total_shards, cfg.max_requests_per_second) == (0, 1, None)


def test_from_env_flags_and_yaml(tmp_path: Path) -> None:
    env = {**BASE, "ALVARIA_SHARD": "1", "ALVARIA_TOTAL_SHARDS": "3"}
    cfg = load(["--max-requests-per-second", "2.5"], env).settings
    assert (cfg.shard, cfg.total_shards, cfg.max_requests_per_second) == (1, 3, 2.5)
    config = tmp_path / "config.yaml"
    config.write_text("shard: 2\ntotal_shards: 4\nmax_requests_per_second: 10\n")
    cfg = load(["--config-file", str(config)], BASE).settings
    assert (cfg.shard, cfg.total_shards, cfg.max_requests_per_second) == (2, 4, 10.0)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("0.5", 0.5), ("2", 2.0), ("'1e-3'", 0.001), ("'0.25'", 0.25), ("1.5e2", 150.0)],
)
def test_yaml_numbers_are_numbers(tmp_path: Path, text: str, rate: float) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"max_requests_per_second: {text}\npage_size: 250.0\n")
    cfg = load(["--config-file", str(config)], BASE).settings
    assert (cfg.max_requests_per_second, cfg.page_size) == (rate, 250)


@pytest.mark.parametrize("text", ["lots", "true", "[1]", ".nan", "-1"])
def test_a_bad_yaml_rate_names_the_setting(tmp_path: Path, text: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"max_requests_per_second: {text}\n")
    with pytest.raises(ConfigError) as error:
        load(["--config-file", str(config)], BASE)
    assert error.value.setting == "max_requests_per_second"


def test_auto_takes_the_host_name_ordinal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTNAME", raising=False)
    monkeypatch.setattr(socket, "gethostname", lambda: "alvaria-emailqueue-exporter-2")
    cfg = load(["--shard", "auto", "--total-shards", "3"], BASE).settings
    assert cfg.shard == 2


def test_auto_on_a_host_without_ordinal_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTNAME", raising=False)
    monkeypatch.setattr(socket, "gethostname", lambda: "laptop")
    with pytest.raises(ConfigError) as error:
        load(["--shard", "auto"], BASE)
    assert error.value.setting == "shard" and "laptop" in error.value.problem


def test_auto_prefers_the_pod_name_in_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTNAME", "exporter-4")
    monkeypatch.setattr(socket, "gethostname", lambda: "node-1.example")
    assert load(["--shard", "auto", "--total-shards", "5"], BASE).settings.shard == 4


@pytest.mark.parametrize(
    ("argv", "setting"),
    [
        (["--shard", "3", "--total-shards", "3"], "total_shards"),
        (["--shard", "1"], "total_shards"),
        (["--shard", "-1"], "shard"),
        (["--total-shards", "0"], "total_shards"),
        (["--total-shards", "1001"], "total_shards"),
        (["--total-shards", "1000000000"], "total_shards"),
        (["--max-requests-per-second", "0"], "max_requests_per_second"),
        (["--max-requests-per-second", "inf"], "max_requests_per_second"),
        (["--max-requests-per-second", "lots"], "max_requests_per_second"),
    ],
)
def test_bad_values_name_the_setting(argv: list[str], setting: str) -> None:
    with pytest.raises(ConfigError) as error:
        load(argv, BASE)
    assert error.value.setting == setting


def test_shard_out_of_range_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    assert main(["--check-config", "--shard", "4", "--total-shards", "2"]) == 2
    assert "total_shards" in capsys.readouterr().err


def test_the_lifecycle_api_is_off_by_default_and_on_by_flag_env_or_yaml(tmp_path: Path) -> None:
    assert load([], BASE).settings.web_enable_lifecycle is False
    assert load(["--web-enable-lifecycle"], BASE).settings.web_enable_lifecycle is True
    env = {**BASE, "ALVARIA_WEB_ENABLE_LIFECYCLE": "true"}
    assert load([], env).settings.web_enable_lifecycle is True
    config = tmp_path / "config.yaml"
    config.write_text("web_enable_lifecycle: yes\n")
    assert load(["--config-file", str(config)], BASE).settings.web_enable_lifecycle is True
