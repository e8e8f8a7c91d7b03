"""Settings: sources and their precedence, parsing, targets, secret files and every error path."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from exporter.domain.errors import ConfigError
from exporter.settings import (
    REGIONS,
    SECRET_MASK,
    TOKEN_URLS,
    Region,
    Settings,
    TargetSettings,
    load,
    masked_dump,
    parse_duration,
    parse_size,
)
from exporter.settings.table import YAML_ONLY_KEYS, build_parser

API_KEY = "sekrit-api-key-1"
TOKEN = "sekrit-token-2"
CLIENT_SECRET = "sekrit-client-secret-3"
SECRETS = (API_KEY, TOKEN, CLIENT_SECRET)
BASE_ENV = {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": API_KEY, "ALVARIA_ACCESS_TOKEN": TOKEN}
CREDS_ENV = {"ALVARIA_API_KEY": API_KEY, "ALVARIA_ACCESS_TOKEN": TOKEN}


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def settings(argv: list[str] | None = None, **env: str) -> Settings:
    return load(argv or [], {**BASE_ENV, **env}).settings


def test_defaults() -> None:
    s = settings()
    (target,) = s.targets
    assert target.org_id == "acme"
    assert target.api_key.get_secret_value() == API_KEY
    assert target.token_url == TOKEN_URLS["us"]
    assert target.token_url.startswith("https://myaspect.id.aspect-cloud.net/")
    assert target.api_url == "https://acme.via.aspect-cloud.net"
    assert (target.scope, target.extended_info, target.states) == ("emailqueueapi", True, ())
    assert (s.listen_host, s.listen_port) == ("", 9654)
    assert (s.poll_interval, s.stale_after, s.series_ttl) == (30.0, 150.0, 3600.0)
    assert s.waiting_states == ("Queued", "Queued2", "Transferred", "Reassigned")
    assert s.age_buckets[0] == 60.0 and s.age_buckets[-1] == 172800.0
    assert s.max_response_bytes == 32 * 1024 * 1024
    assert (s.log_level, s.log_format, s.agent_metrics) == ("info", "auto", False)


@pytest.mark.parametrize(
    ("use_flag", "use_env", "use_yaml", "expected"),
    [
        (True, True, True, 11.0),
        (False, True, True, 22.0),
        (False, False, True, 33.0),
        (False, False, False, 30.0),
    ],
)
def test_precedence_flag_env_yaml_default(
    tmp_path: Path, use_flag: bool, use_env: bool, use_yaml: bool, expected: float
) -> None:
    cfg = write(tmp_path, "c.yaml", "poll_interval: 33s\nscope: yaml-scope\n" if use_yaml else "")
    argv = ["--config-file", str(cfg)] + (
        ["--poll-interval", "11", "--scope", "flag"] if use_flag else []
    )
    env = {"ALVARIA_POLL_INTERVAL": "22s", "ALVARIA_SCOPE": "env"} if use_env else {}
    s = settings(argv, **env)
    assert s.poll_interval == expected
    scope = {11.0: "flag", 22.0: "env", 33.0: "yaml-scope", 30.0: "emailqueueapi"}[expected]
    assert s.targets[0].scope == scope


def test_secret_precedence_flag_env_yaml_file(tmp_path: Path) -> None:
    key_file = write(tmp_path, "key", "from-file\n")
    cfg = write(tmp_path, "c.yaml", "api_key: from-yaml\n")
    base = {"ALVARIA_ORG_ID": "acme", "ALVARIA_ACCESS_TOKEN": TOKEN}
    file_env = {**base, "ALVARIA_API_KEY_FILE": str(key_file)}

    def key(argv: list[str], env: dict[str, str]) -> str:
        return load(argv, env).settings.targets[0].api_key.get_secret_value()

    assert key([], file_env) == "from-file"
    assert key(["--config-file", str(cfg)], file_env) == "from-yaml"
    assert key(["--config-file", str(cfg)], {**file_env, "ALVARIA_API_KEY": "from-env"}) == (
        "from-env"
    )
    argv = ["--config-file", str(cfg), "--api-key", "from-flag"]
    assert key(argv, {**file_env, "ALVARIA_API_KEY": "from-env"}) == "from-flag"


def test_empty_env_var_counts_as_unset() -> None:
    assert settings(ALVARIA_POLL_INTERVAL="", ALVARIA_CLIENT_ID="").poll_interval == 30.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30),
        ("2.5", 2.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1d", 86400),
        (" 2m ", 120),
        (45, 45),
        (1.5, 1.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5x", "", "1h 30m", "m5", "nan", "inf", True, [1], None])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match=r"duration|finite"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("64MiB", 64 << 20),
        ("10MB", 10_000_000),
        ("512KiB", 512 << 10),
        ("1GiB", 1 << 30),
        ("2 kb", 2000),
        ("1.5KiB", 1536),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_durations_and_sizes_through_every_source(tmp_path: Path) -> None:
    cfg = write(tmp_path, "c.yaml", "request_timeout: 2.5\nseries_ttl: 1h30m\nstale_after: 90\n")
    argv = ["--config-file", str(cfg), "--max-response-bytes", "10MB", "--poll-interval", "1500ms"]
    s = settings(argv, ALVARIA_SERIES_TTL="2h")
    assert (s.request_timeout, s.series_ttl, s.stale_after) == (2.5, 7200.0, 90.0)
    assert (s.max_response_bytes, s.poll_interval) == (10_000_000, 1.5)


def test_stale_after_default_follows_poll_interval() -> None:
    assert settings(["--poll-interval", "1m"]).stale_after == 300.0


def test_lists_from_env_flags_and_yaml(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        "c.yaml",
        "waiting_states: [Queued, Parked]\nwork_type_ids: [101, 102]\nstates: 'Queued, Active'\n",
    )
    s = settings(["--config-file", str(cfg), "--age-buckets", "30, 1m,5m,,1h"])
    assert s.waiting_states == ("Queued", "Parked")
    assert s.targets[0].work_type_ids == ("101", "102")
    assert s.targets[0].states == ("Queued", "Active")
    assert s.age_buckets == (30.0, 60.0, 300.0, 3600.0)
    env_lists = settings(ALVARIA_WAITING_STATES=" A ,B,,", ALVARIA_AGE_BUCKETS="1,2.5")
    assert (env_lists.waiting_states, env_lists.age_buckets) == (("A", "B"), (1.0, 2.5))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("no", False),
        ("TRUE", True),
        ("No", False),
    ],
)
def test_booleans(text: str, value: bool) -> None:
    assert settings(ALVARIA_AGENT_METRICS=text).agent_metrics is value
    assert settings(["--extended-info", text]).targets[0].extended_info is value


def test_bare_boolean_flag_and_yaml_booleans(tmp_path: Path) -> None:
    cfg = write(tmp_path, "c.yaml", "agent_metrics: yes\nextended_info: false\n")
    assert settings(["--agent-metrics"]).agent_metrics is True
    s = settings(["--config-file", str(cfg)])
    assert (s.agent_metrics, s.targets[0].extended_info) == (True, False)


# SPEC §9, copied from Alvaria's public documentation; written out so a typo cannot hide.
REGION_HOSTS = [
    ("us", "myaspect.id.aspect-cloud.net", "via.aspect-cloud.net"),
    ("eu", "myaspect.eu.id.aspect-cloud.net", "via.aspect-cloud.net"),
    ("uk", "myaspect.uk.id.aspect-cloud.net", "via.aspect-cloud.net"),
    ("ca", "myaspect.ca.id.aspect-cloud.net", "via.aspect-cloud.net"),
    ("azure-us", "myaspect.us-a.id.aspect-cloud.net", "via.aspect-cloud.net"),
    ("us-east-tri", "myaccount.tri1.wss.alvaria.cloud", "wos.alvaria.cloud"),
    ("gcp", "myaccount.dsm.sre.alvaria.cloud", "apc.alvaria.cloud"),
]


@pytest.mark.parametrize(("region", "token_host", "api_domain"), REGION_HOSTS)
def test_region_picks_token_url_and_api_url(region: str, token_host: str, api_domain: str) -> None:
    target = settings(ALVARIA_REGION=region.upper()).targets[0]
    assert target.region == region
    assert target.token_url == f"https://{token_host}/tokenservice/oauth2/access_token"
    assert target.api_url == f"https://{target.org_id}.{api_domain}"


def test_every_region_is_tested_and_listed_in_help() -> None:
    assert [r[0] for r in REGION_HOSTS] == list(REGIONS) == list(get_args(Region))
    assert all(region in build_parser().format_help() for region in REGIONS)


def test_an_unknown_region_names_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        settings(ALVARIA_REGION="mars")
    assert info.value.setting == "region" and "azure-us" in str(info.value)


def test_token_realm_defaults_to_org_id_and_empty_means_none(tmp_path: Path) -> None:
    assert settings().targets[0].token_realm == settings().targets[0].org_id
    assert settings(["--token-realm", "other"]).targets[0].token_realm == "other"
    assert settings(["--token-realm="]).targets[0].token_realm == ""
    cfg = write(tmp_path, "c.yaml", 'targets:\n  - {org_id: a}\n  - {org_id: b, token_realm: ""}\n')
    a, b = load(["--config-file", str(cfg)], CREDS_ENV).settings.targets
    assert (a.token_realm, b.token_realm) == ("a", "")


def test_explicit_urls_win_and_api_url_loses_trailing_slash() -> None:
    argv = ["--region", "eu", "--token-url", "http://127.0.0.1:1/t", "--api-url", "http://h:2/x/"]
    target = settings(argv).targets[0]
    assert (target.token_url, target.api_url) == ("http://127.0.0.1:1/t", "http://h:2/x")


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        (":9654", "", 9654),
        ("127.0.0.1:0", "127.0.0.1", 0),
        ("[::1]:9100", "::1", 9100),
        ("localhost:80", "localhost", 80),
    ],
)
def test_listen_address(address: str, host: str, port: int) -> None:
    s = settings(["--listen-address", address])
    assert (s.listen_address, s.listen_host, s.listen_port) == (address, host, port)


def test_targets_inherit_top_level_env_and_flags(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    write(tmp_path / "secrets", "b.key", "b-key\n")
    cfg = write(
        tmp_path,
        "c.yaml",
        """
region: eu
scope: top-scope
poll_interval: 1m
targets:
  - org_id: org-a
    scope: own-scope
    states: [Queued]
  - org_id: org-b
    api_key_file: secrets/b.key
    client_id: b-client
    client_secret: b-secret
    api_url: http://127.0.0.1:8080/
""",
    )
    env = {**CREDS_ENV, "ALVARIA_CONFIG_FILE": str(cfg), "ALVARIA_EXTENDED_INFO": "false"}
    s = load(["--token-auth-method", "client_secret_post"], env).settings
    a, b = s.targets
    assert s.poll_interval == 60.0
    assert (a.org_id, a.scope, a.region, a.states) == ("org-a", "own-scope", "eu", ("Queued",))
    assert a.api_key.get_secret_value() == API_KEY
    assert a.token_url == TOKEN_URLS["eu"] and a.api_url == "https://org-a.via.aspect-cloud.net"
    assert (b.scope, b.api_url, b.client_id) == ("top-scope", "http://127.0.0.1:8080", "b-client")
    assert b.api_key.get_secret_value() == "b-key"  # its own file beats the inherited env value
    assert all(t.token_auth_method == "client_secret_post" for t in s.targets)
    assert all(t.extended_info is False for t in s.targets)


def test_block_value_beats_env_and_flags(tmp_path: Path) -> None:
    cfg = write(tmp_path, "c.yaml", "targets:\n  - {org_id: a, scope: mine}\n  - {org_id: b}\n")
    env = {**CREDS_ENV, "ALVARIA_SCOPE": "from-env"}
    a, b = load(["--config-file", str(cfg)], env).settings.targets
    assert (a.scope, b.scope) == ("mine", "from-env")
    a, b = load(["--config-file", str(cfg), "--scope", "from-flag"], env).settings.targets
    assert (a.scope, b.scope) == ("mine", "from-flag")


def test_secret_files_strip_trailing_newline(tmp_path: Path) -> None:
    env = {
        "ALVARIA_ORG_ID": "acme",
        "ALVARIA_API_KEY_FILE": str(write(tmp_path, "k", "file-key\n")),
        "ALVARIA_CLIENT_ID": "cid",
        "ALVARIA_CLIENT_SECRET_FILE": str(write(tmp_path, "s", "file-secret\r\n")),
    }
    target = load([], env).settings.targets[0]
    assert target.api_key.get_secret_value() == "file-key"
    assert target.client_secret is not None
    assert target.client_secret.get_secret_value() == "file-secret"
    argv = ["--access-token-file", str(write(tmp_path, "t", "tok"))]
    token = load(argv, env).settings.targets[0].access_token
    assert token is not None and token.get_secret_value() == "tok"


def test_shadowed_secret_file_need_not_exist(tmp_path: Path) -> None:
    s = settings(ALVARIA_API_KEY_FILE=str(tmp_path / "missing"))
    assert s.targets[0].api_key.get_secret_value() == API_KEY


def test_masked_dump_hides_every_secret(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        "c.yaml",
        f"targets:\n  - org_id: a\n    client_id: c\n    client_secret: {CLIENT_SECRET}\n"
        "  - org_id: b\n",
    )
    s = load(["--config-file", str(cfg)], CREDS_ENV).settings
    text = masked_dump(s)
    for secret in SECRETS:
        assert secret not in text
        assert secret not in repr(s) and secret not in str(s)
    dumped = yaml.safe_load(text)
    first, second = dumped["targets"]
    assert first["api_key"] == first["client_secret"] == first["access_token"] == SECRET_MASK
    assert second["client_secret"] is None and second["client_id"] is None
    assert text.startswith(f"# config_file: {cfg}\n") and "config_file" not in dumped
    assert dumped["poll_interval"] == "30s"


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        ([], "run"),
        (["--once"], "once"),
        (["--check-config"], "check_config"),
        (["--demo"], "demo"),
        (["--version", "--once"], "version"),
    ],
)
def test_modes(argv: list[str], mode: str) -> None:
    assert load(argv, BASE_ENV).mode == mode


def test_demo_needs_no_target_or_credentials() -> None:
    assert load(["--demo"], {}).settings.targets == ()
    (target,) = load(["--demo", "--org-id", "demo-org"], {}).settings.targets
    assert target.org_id == "demo-org"


def test_demo_accepts_targets_without_credentials(tmp_path: Path) -> None:
    cfg = write(tmp_path, "c.yaml", "targets:\n  - {org_id: a}\n  - {org_id: b}\n")
    targets = load(["--demo", "--config-file", str(cfg)], {}).settings.targets
    assert [t.org_id for t in targets] == ["a", "b"]


def test_version_needs_no_configuration() -> None:
    invocation = load(["--version"], {"ALVARIA_POLL_INTERVAL": "nonsense"})
    assert invocation.mode == "version" and invocation.settings.targets == ()


def test_help_lists_every_flag_with_env_var(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load(["--help"], {})
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in [*Settings.model_fields, *TargetSettings.model_fields]:
        if name in YAML_ONLY_KEYS:  # structured: config file only, named in the epilog
            assert f"{name}:" in text
        elif name != "targets":
            assert f"--{name.replace('_', '-')}" in text
            assert f"ALVARIA_{name.upper()}" in text
    assert "ALVARIA_API_KEY_FILE" in text and "default 30s" in text


def test_unknown_flags_are_config_errors_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        load(["--org-id"], {})
    assert str(info.value) == "invalid setting org_id (from flag --org-id): expected one argument"
    with pytest.raises(ConfigError) as info:
        load(["--poll-intervall", "5", f"--api-keyy={API_KEY}"], {})
    assert [(e.setting, e.source) for e in info.value.all] == [
        ("poll_intervall", "flag --poll-intervall"),
        ("api_keyy", "flag --api-keyy"),
    ]
    assert "did you mean --poll-interval?" in info.value.all[0].problem
    assert API_KEY not in str(info.value)


def test_models_are_frozen_and_fill_derived_defaults() -> None:
    target = TargetSettings(org_id="x", api_key=SecretStr("k"), access_token=SecretStr("t"))
    assert target.api_url == "https://x.via.aspect-cloud.net"
    assert target.token_url == TOKEN_URLS["us"]
    assert target.token_realm == "x"
    with pytest.raises(ValidationError):
        target.org_id = "y"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="client_id and client_secret"):
        TargetSettings(org_id="x", api_key=SecretStr("k"))
    assert Settings(poll_interval=10).stale_after == 50.0


CFG = "{cfg}"  # replaced by the path of the test's config file

INVALID = [
    # argv, extra env ("" unsets), YAML text or None, setting, source, fragment of the problem
    ([], {"ALVARIA_POLL_INTERVAL": "5x"}, None, "poll_interval", "env ALVARIA_POLL_INTERVAL", "5x"),
    (["--page-size", "0"], {}, None, "page_size", "flag --page-size", "greater than"),
    ([], {}, "page_size: 20000\n", "page_size", f"config file {CFG} (page_size)", "10000"),
    ([], {"ALVARIA_REGION": "mars"}, None, "region", "env ALVARIA_REGION", "'eu'"),
    (["--api-url", "ftp://h"], {}, None, "api_url", "flag --api-url", "http"),
    (["--token-url", f"https://u:{TOKEN}@h/t"], {}, None, "token_url", "flag --token-url", "cred"),
    ([], {}, "poll_intervall: 5\n", "poll_intervall", f"config file {CFG}", "poll_interval?"),
    ([], {}, f"scope: x\napi_key: '{API_KEY}\n", "config_file", "flag --config-file", "line"),
    ([], {}, "- just\n- a list\n", "config_file", "flag --config-file", "mapping"),
    (
        [],
        {"ALVARIA_API_KEY_FILE": "/nonexistent/k", "ALVARIA_API_KEY": ""},
        None,
        "api_key",
        "file ALVARIA_API_KEY_FILE",
        "names no file (not shown: it may be the secret itself): create it or fix the path",
    ),
    (["--api-key", ""], {}, None, "api_key", "flag --api-key", "empty"),
    (
        [],
        {"ALVARIA_API_KEY": ""},
        "api_key: 12345\n",
        "api_key",
        f"config file {CFG} (api_key)",
        "string",
    ),
    (
        [],
        {"ALVARIA_AGENT_METRICS": "maybe"},
        None,
        "agent_metrics",
        "env ALVARIA_AGENT_METRICS",
        "true/false",
    ),
    (
        ["--max-response-bytes", "64 potatoes"],
        {},
        None,
        "max_response_bytes",
        "flag --max-response-bytes",
        "size",
    ),
    (["--stale-after", "10s"], {}, None, "stale_after", "flag --stale-after", "poll_interval"),
    (
        [],
        {"ALVARIA_AGE_BUCKETS": "60,30"},
        None,
        "age_buckets",
        "env ALVARIA_AGE_BUCKETS",
        "increasing",
    ),
    (
        [],
        {"ALVARIA_LISTEN_ADDRESS": "9654"},
        None,
        "listen_address",
        "env ALVARIA_LISTEN_ADDRESS",
        "host:port",
    ),
    (["--listen-address", ":70000"], {}, None, "listen_address", "flag --listen-address", "port"),
    (["--ca-file", "/nonexistent/ca.pem"], {}, None, "ca_file", "flag --ca-file", "No such"),
    (
        [],
        {},
        "web_config_file: web.yml\n",
        "web_config_file",
        f"config file {CFG} (web_config_file)",
        "No such file",
    ),
    (["--org-id", "bad org"], {}, None, "org_id", "flag --org-id", "letters"),
    (["--demo", "--once"], {}, None, "mode", "flag --demo --once", "exclude"),
    (
        [],
        {},
        "targets:\n  - {org_id: a, poll_interval: 5}\n",
        "targets[0].poll_interval",
        f"config file {CFG} (targets[0].poll_interval)",
        "exporter-wide",
    ),
    (
        [],
        {},
        "targets:\n  - {org_id: a}\n  - {org_id: b, api_url: 'nope'}\n",
        "targets[1].api_url",
        f"config file {CFG} (targets[1].api_url)",
        "URL",
    ),
    (
        [],
        {},
        "targets:\n  - {org_id: a, bogus: 1}\n",
        "targets[0].bogus",
        f"config file {CFG}",
        "unknown",
    ),
    (
        [],
        {},
        "targets:\n  - {org_id: a}\n  - {org_id: a}\n",
        "targets[1].org_id",
        f"config file {CFG} (targets[1].org_id)",
        "duplicates targets[0]",
    ),
    ([], {}, "targets:\n  - {scope: x}\n", "targets[0].org_id", "default", "required"),
    ([], {}, "targets: {org_id: a}\n", "targets", f"config file {CFG} (targets)", "list"),
    ([], {}, "targets: []\n", "targets", f"config file {CFG} (targets)", "at least one"),
    (
        [],
        {},
        "targets:\n  - org_id: a\n    api_key_file: missing.key\n",
        "targets[0].api_key",
        "file targets[0].api_key_file (config file",
        "names no file (not shown: it may be the secret itself): create it or fix the path",
    ),
]


@pytest.mark.parametrize(("argv", "env", "text", "setting", "source", "problem"), INVALID)
def test_invalid_configuration(
    tmp_path: Path,
    argv: list[str],
    env: dict[str, str],
    text: str | None,
    setting: str,
    source: str,
    problem: str,
) -> None:
    full_argv = list(argv)
    if text is not None:
        cfg = write(tmp_path, "c.yaml", text)
        full_argv += ["--config-file", str(cfg)]
        # The targets: cases must not also get org_id from the environment.
        base = CREDS_ENV if "targets" in text else BASE_ENV
        source = source.replace(CFG, str(cfg) if "_file=" not in source else str(tmp_path))
    else:
        base = BASE_ENV
    with pytest.raises(ConfigError) as info:
        load(full_argv, {**base, **env})
    error = info.value
    assert error.setting == setting
    assert error.source.startswith(source), error.source
    assert problem in error.problem
    for secret in SECRETS:
        assert secret not in str(error) and secret not in repr(error.args)
        assert error.__cause__ is None or secret not in str(error.__cause__)


@pytest.mark.parametrize(
    ("env", "setting", "mentions"),
    [
        ({"ALVARIA_CLIENT_ID": "cid"}, "client_secret", "env ALVARIA_CLIENT_ID"),
        ({"ALVARIA_CLIENT_SECRET": CLIENT_SECRET}, "client_id", "env ALVARIA_CLIENT_SECRET"),
        ({}, "client_id", "client_secret"),
    ],
)
def test_missing_oauth_credentials(env: dict[str, str], setting: str, mentions: str) -> None:
    with pytest.raises(ConfigError) as info:
        load([], {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": API_KEY, **env})
    assert info.value.setting == setting and info.value.source == "default"
    assert mentions in info.value.problem
    assert all(secret not in str(info.value) for secret in SECRETS)


def test_missing_org_id_and_api_key() -> None:
    with pytest.raises(ConfigError) as info:
        load([], CREDS_ENV)
    assert (info.value.setting, info.value.source) == ("org_id", "default")
    with pytest.raises(ConfigError) as info:
        load(["--org-id", "acme"], {"ALVARIA_ACCESS_TOKEN": TOKEN})
    assert (info.value.setting, info.value.source) == ("api_key", "default")


def test_org_id_outside_targets_is_ambiguous(tmp_path: Path) -> None:
    cfg = write(tmp_path, "c.yaml", "targets:\n  - {org_id: a}\n")
    with pytest.raises(ConfigError) as info:
        load(["--config-file", str(cfg)], BASE_ENV)
    assert (info.value.setting, info.value.source) == ("org_id", "env ALVARIA_ORG_ID")


def test_missing_and_invalid_config_file(tmp_path: Path) -> None:
    env = {**BASE_ENV, "ALVARIA_CONFIG_FILE": str(tmp_path / "nope.yaml")}
    with pytest.raises(ConfigError) as info:
        load([], env)
    assert (info.value.setting, info.value.source) == ("config_file", "env ALVARIA_CONFIG_FILE")
    assert "nope.yaml" in info.value.problem
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe scope: x\n")
    with pytest.raises(ConfigError, match="UTF-8") as info:
        load(["--config-file", str(bad)], BASE_ENV)
    assert info.value.source == "flag --config-file"


@pytest.mark.parametrize("name", ["api_key", "access_token"])
def test_header_secrets_with_line_breaks_are_refused(name: str) -> None:
    env = {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": "k", "ALVARIA_ACCESS_TOKEN": "t"}
    env[f"ALVARIA_{name.upper()}"] = "abc\r\nX-Injected: 1"
    with pytest.raises(ConfigError) as info:
        load([], env)
    assert info.value.setting == name
    assert "abc" not in str(info.value)


def test_series_budget_and_label_length_settings() -> None:
    env = {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": "k", "ALVARIA_ACCESS_TOKEN": "t"}
    cfg = load(["--max-series", "5000"], {**env, "ALVARIA_MAX_LABEL_LENGTH": "64"}).settings
    assert (cfg.max_series, cfg.max_label_length) == (5000, 64)
    assert (Settings().max_series, Settings().max_label_length) == (20_000, 128)
    with pytest.raises(ConfigError) as info:
        load(["--max-series", "10"], env)
    assert "max_series" in str(info.value)


@pytest.mark.parametrize(
    ("env", "warned"),
    [
        (
            {"ALVARIA_API_URL": "http://api.example.com"},
            ["api_url: plain http:// to api.example.com"],
        ),
        ({"ALVARIA_TOKEN_URL": "http://id.example.com/t"}, ["token_url: plain http://"]),
        ({"ALVARIA_API_URL": "http://10.0.0.5:8080"}, ["api_url: plain http:// to 10.0.0.5"]),
        ({"ALVARIA_API_URL": "http://127.0.0.1:8080"}, []),
        ({"ALVARIA_API_URL": "http://localhost:8080"}, []),
        ({"ALVARIA_API_URL": "http://[::1]:8080"}, []),
        ({"ALVARIA_API_URL": "https://api.example.com"}, []),
    ],
)
def test_cleartext_to_another_host_is_a_warning_naming_the_secrets(
    env: dict[str, str], warned: list[str]
) -> None:
    from exporter.settings import advice

    base = {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": API_KEY, "ALVARIA_CLIENT_ID": "c"}
    cfg = load([], {**base, "ALVARIA_CLIENT_SECRET": CLIENT_SECRET, **env}).settings
    notes = [n for n in advice(cfg) if "http://" in n]
    assert len(notes) == len(warned), notes
    for note, start in zip(notes, warned, strict=True):
        assert note.startswith(start) and "unencrypted" in note
        assert "api_key" in note and API_KEY not in note and CLIENT_SECRET not in note
    if warned and "token_url" in warned[0]:
        assert "client_secret" in notes[0]
    if warned and "api_url" in warned[0]:
        assert "bearer token" in notes[0]


def test_cleartext_warning_at_check_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.app.main import main

    for key, value in {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": API_KEY,
                       "ALVARIA_ACCESS_TOKEN": TOKEN,
                       "ALVARIA_API_URL": "http://api.example.com"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    assert main(["--check-config"]) == 0
    err = capsys.readouterr().err
    assert "warning: api_url: plain http:// to api.example.com: api_key and the access_token" in err
    assert "token_url" not in err, "a static token makes no token requests"
