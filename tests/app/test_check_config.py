"""`--check-config`: values as they are written, where each came from, and a shard's organisations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from exporter.app.main import main
from exporter.fleet.shards import owned
from exporter.settings import load, masked_dump
from exporter.settings.values import format_duration, format_size, parse_duration, parse_size

BASE = {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": "k", "ALVARIA_ACCESS_TOKEN": "t"}
CONFIG = """\
client_id: c
client_secret: s
service_level_warning: 10m
service_levels:
  - match: {work_type: "VIP.*"}
    target: 30m
targets:
  - {org_id: a, api_key: key-1}
  - {org_id: b, api_key: key-2}
  - {org_id: c, api_key: key-3}
  - {org_id: d, api_key: key-1}
  - {org_id: e, api_key: key-4}
  - {org_id: f, api_key: key-5}
"""


def check_config(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
) -> tuple[int, str, str]:
    for name in [n for n in os.environ if n.startswith("ALVARIA_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["--check-config", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30, "30s"), (300, "5m"), (5400, "1h30m"), (86400, "24h"), (2.5, "2.5s"), (0.5, "500ms")],
)
def test_durations_are_written_as_settings_are(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=10**9, allow_nan=False, allow_infinity=False))
@example(0.95)  # 950 * 0.001 is 0.9500000000000001
def test_every_written_duration_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=2**50))
def test_every_written_size_reads_back(size: int) -> None:
    assert parse_size(format_size(size)) == size


def test_the_dump_shows_durations_and_sizes_as_written(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    env = {"ALVARIA_POLL_INTERVAL": "1m", "ALVARIA_MAX_RESPONSE_BYTES": "16MiB"}
    s = load(["--config-file", str(config), "--request-timeout", "2.5"], env).settings
    dumped = yaml.safe_load(masked_dump(s))
    assert dumped["poll_interval"] == "1m"
    assert dumped["stale_after"] == "5m"  # derived: 5 x poll_interval
    assert dumped["request_timeout"] == "2.5s"
    assert dumped["series_ttl"] == "1h" and dumped["service_level_target"] == "24h"
    assert dumped["max_response_bytes"] == "16MiB"
    assert dumped["age_buckets"][:2] == [60, 300]
    assert dumped["service_levels"][0]["target"] == "30m"
    # The dump reads back as a config file with the same settings.
    dumped["targets"] = [{"org_id": t, "api_key": "k", "access_token": "t"} for t in "abcdef"]
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(dumped))
    back = load(["--config-file", str(again)], {}).settings
    assert (back.poll_interval, back.stale_after, back.request_timeout) == (60.0, 300.0, 2.5)
    assert back.max_response_bytes == s.max_response_bytes
    assert back.service_levels == s.service_levels and back.age_buckets == s.age_buckets


def test_show_sources_says_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    argv = ["--show-sources", "--config-file", str(config), "--page-size", "100"]
    code, out, err = check_config(monkeypatch, capsys, argv, {"ALVARIA_POLL_INTERVAL": "45s"})
    assert code == 0, err
    lines = out.splitlines()
    assert "poll_interval: 45s  # from env ALVARIA_POLL_INTERVAL" in lines
    assert "page_size: 100  # from flag --page-size" in lines
    assert "max_retries: 3  # default" in lines
    assert f"service_levels:  # from config file {config} (service_levels)" in lines
    assert f"- org_id: b  # from config file {config} (targets[1].org_id)" in lines
    assert f"  client_id: c  # from config file {config} (client_id)" in lines
    assert "  region: us  # default" in lines
    assert yaml.safe_load(out)["poll_interval"] == "45s"  # still YAML
    # Without the flag, no comments.
    code, out, _ = check_config(monkeypatch, capsys, ["--config-file", str(config)], {})
    assert code == 0 and "# from" not in out and "# default" not in out


def test_show_sources_needs_check_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    assert main(["--once", "--show-sources"]) == 2
    assert "show_sources" in capsys.readouterr().err


def test_a_shard_lists_the_organisations_it_owns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    orgs = yaml.safe_load(CONFIG)["targets"]
    seen: list[str] = []
    for shard in range(3):
        argv = ["--config-file", str(config), "--shard", str(shard), "--total-shards", "3"]
        code, out, err = check_config(monkeypatch, capsys, argv, {})
        assert code == 0, err
        mine = [t["org_id"] for t in owned(orgs, shard, 3, lambda t: t["api_key"])]
        summary = out[out.index(f"# shard {shard} of 3 polls") :].splitlines()
        assert summary[0] == (
            f"# shard {shard} of 3 polls {len(mine)} of 6 organisation(s) (grouped by api_key):"
        )
        assert summary[1:] == [f"#   - {org}" for org in mine]
        seen += mine
    assert sorted(seen) == list("abcdef")  # every organisation in exactly one shard


def test_one_shard_adds_no_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = check_config(monkeypatch, capsys, [], BASE)
    assert code == 0 and "# shard" not in out
