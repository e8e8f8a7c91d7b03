"""Configuration a careless operator or an attacker could write, run through the CLI.

Every case exits 2 at once with one line per invalid setting, names the setting and its source,
and never shows a secret value.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter.domain.errors import ConfigError
from exporter.settings import load
from tests.certs import make_certs

PROG = "alvaria-emailqueue-exporter: "
SECRET = "sekrit-api-key-0123456789"
GOOD_ENV = {"ALVARIA_ORG_ID": "acme", "ALVARIA_API_KEY": SECRET, "ALVARIA_ACCESS_TOKEN": "tok-1"}


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    """Run the exporter; returns exit code, stdout, stderr and seconds taken."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ALVARIA_")}
    started = time.monotonic()
    proc = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "exporter", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(PROG + "invalid setting")]


def test_an_empty_environment_reports_every_required_setting_in_one_run() -> None:
    code, _, err, _ = cli("--check-config", env={})
    assert code == 2
    lines = error_lines(err)
    assert [line.split()[3] for line in lines] == ["org_id", "api_key", "client_id"], err
    assert len(err.splitlines()) == 3


def test_every_invalid_setting_is_reported_once_one_line_each(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "page_size: many\nbogus: 1\ntargets:\n"
        "  - {org_id: a, api_url: nope}\n  - {org_id: 'b c', scope: x}\n  - 7\n"
    )
    env = {"ALVARIA_API_KEY": SECRET, "ALVARIA_ACCESS_TOKEN": "t", "ALVARIA_AGENT_METRICS": "?"}
    code, _, err, _ = cli(
        "--check-config", "--max-retries", "x", "--config-file", str(cfg), env=env
    )
    assert code == 2
    settings = [line.split()[3] for line in error_lines(err)]
    assert sorted(settings) == sorted(
        [
            "bogus",
            "targets[2]",
            "page_size",
            "agent_metrics",
            "max_retries",
            "targets[0].api_url",
            "targets[1].org_id",
        ]
    ), err
    assert len(err.splitlines()) == len(settings)


def test_a_target_with_one_problem_still_has_its_other_settings_checked(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "targets:\n"
        "  - {org_id: 'b c', region: venus, api_key: k, access_token: t}\n"
        "  - {org_id: ok, api_key: k, access_token: t, token_url: 'ftp://x', polll: 3}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load(["--config-file", str(cfg)], {})
    assert sorted(e.setting for e in caught.value.all) == [
        "targets[0].org_id",
        "targets[0].region",
        "targets[1].polll",
        "targets[1].token_url",
    ], caught.value


def test_an_invalid_region_is_reported_next_to_missing_settings() -> None:
    with pytest.raises(ConfigError) as caught:
        load([], {"ALVARIA_REGION": "mars", "ALVARIA_POLL_INTERVAL": "5x"})
    errors = {e.setting: e for e in caught.value.all}
    assert sorted(errors) == ["api_key", "client_id", "org_id", "poll_interval", "region"]
    assert errors["region"].source == "env ALVARIA_REGION"


def test_an_invalid_region_does_not_also_fail_the_urls_it_would_have_set() -> None:
    with pytest.raises(ConfigError) as caught:
        load([], {**GOOD_ENV, "ALVARIA_REGION": "mars"})
    assert [e.setting for e in caught.value.all] == ["region"], caught.value


@pytest.mark.parametrize(
    "argv",
    [["--poll-intervall", "5"], ["--demo", "--once"], ["stray"], ["--org-id"]],
    ids=["unknown flag", "modes", "positional", "missing value"],
)
def test_argument_errors_are_one_line_exit_2(argv: list[str]) -> None:
    code, out, err, _ = cli(*argv, env=GOOD_ENV)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(PROG + "invalid setting "), err
    assert "usage:" not in err


def test_an_unknown_flag_is_named_without_its_value() -> None:
    code, _, err, _ = cli(f"--api-keyy={SECRET}", env=GOOD_ENV)
    assert code == 2
    assert "did you mean --api-key?" in err and SECRET not in err


# --- YAML and files -----------------------------------------------------------------------

BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    + "page_size: *j\n"
)


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    cfg = tmp_path / "bomb.yml"
    cfg.write_text(BOMB)
    code, _, err, seconds = cli("--check-config", "--config-file", str(cfg), env=GOOD_ENV)
    assert code == 2 and seconds < 10
    assert "invalid setting config_file (from flag --config-file): invalid YAML at line" in err
    assert "aliases" in err


def test_plain_anchors_without_aliases_are_fine(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("scope: &s emailqueueapi\n")
    assert load(["--config-file", str(cfg)], GOOD_ENV).settings.targets[0].scope == "emailqueueapi"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# " + "x" * (1024 * 1024) + "\n", "larger than 1 MiB"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ],
    ids=["over 1 MiB", "deep nesting"],
)
def test_config_file_bounds(tmp_path: Path, text: str, problem: str) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(["--config-file", str(cfg)], GOOD_ENV)
    assert info.value.setting == "config_file" and problem in info.value.problem


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory", "too large"])
def test_a_secret_file_must_be_a_small_regular_file(tmp_path: Path, fifo: Path, kind: str) -> None:
    big = tmp_path / "big"
    big.write_text("k" * (64 * 1024 + 1))
    path = {"fifo": fifo, "/dev/zero": Path("/dev/zero"), "directory": tmp_path, "too large": big}
    env = {**GOOD_ENV, "ALVARIA_API_KEY": "", "ALVARIA_API_KEY_FILE": str(path[kind])}
    code, _, err, seconds = cli("--check-config", env=env)
    assert code == 2 and seconds < 10, err
    assert err.startswith(PROG + "invalid setting api_key (from file ALVARIA_API_KEY_FILE=")
    assert ("larger than 64 KiB" if kind == "too large" else "not a regular file") in err
    assert "Traceback" not in err and "MemoryError" not in err


def test_a_symlink_to_a_regular_secret_file_is_fine(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("abc\n")
    (tmp_path / "link").symlink_to(tmp_path / "key")
    env = {**GOOD_ENV, "ALVARIA_API_KEY": "", "ALVARIA_API_KEY_FILE": str(tmp_path / "link")}
    assert load([], env).settings.targets[0].api_key.get_secret_value() == "abc"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("abc\ndef", "whitespace"),
        ("abc\x00def", "control"),
        ("abc def", "whitespace"),
        (" abc", "whitespace"),
        ("\ufeffabc", "byte-order mark"),
        ("abc\u200bdef", "invisible"),
    ],
    ids=["newline", "NUL", "space", "leading space", "BOM", "zero-width space"],
)
def test_secrets_with_whitespace_control_characters_or_a_bom_are_refused(
    tmp_path: Path, value: str, problem: str
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(value + "\n", encoding="utf-8")
    env = {**GOOD_ENV, "ALVARIA_API_KEY": "", "ALVARIA_API_KEY_FILE": str(key_file)}
    code, _, err, _ = cli("--check-config", env=env)
    assert code == 2, err
    assert err.startswith(PROG + "invalid setting api_key (from file ALVARIA_API_KEY_FILE=")
    assert problem in err and "abc" not in err and "def" not in err


def test_a_secret_pasted_into_a_plain_setting_is_shown_only_in_part() -> None:
    pasted = "AKIA" + "x" * 30 + "SECRETTAIL"
    code, _, err, _ = cli("--check-config", env={**GOOD_ENV, "ALVARIA_PAGE_SIZE": pasted})
    assert code == 2
    assert "invalid setting page_size (from env ALVARIA_PAGE_SIZE)" in err
    assert pasted not in err and "SECRETTAIL" not in err
    assert len(err.splitlines()[0]) < 150


@pytest.mark.parametrize("where", ["env", "flag", "yaml"])
def test_a_secret_pasted_into_a_secret_file_setting_is_never_shown(
    tmp_path: Path, where: str
) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"api_key_file: {SECRET}\n")
    env = {**GOOD_ENV, "ALVARIA_API_KEY": ""}
    args = {
        "env": ((), {"ALVARIA_API_KEY_FILE": SECRET}),
        "flag": ((f"--api-key-file={SECRET}",), {}),
        "yaml": (("--config-file", str(cfg)), {}),
    }[where]
    code, _, err, _ = cli("--check-config", *args[0], env={**env, **args[1]})
    assert code == 2, err
    assert err.startswith(PROG + "invalid setting api_key (from file "), err
    assert "names no file" in err and SECRET[:12] not in err, err


def test_a_missing_secret_file_that_is_a_path_is_still_named(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("abc\n")
    env = {**GOOD_ENV, "ALVARIA_API_KEY": "", "ALVARIA_API_KEY_FILE": str(tmp_path / "key")}
    (tmp_path / "key").unlink()
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError) as caught:
        load([], {**env, "ALVARIA_CLIENT_SECRET_FILE": str(tmp_path / "link")})
    assert str(tmp_path / "link") in str(caught.value)  # a dangling symlink is a path


def test_ca_file_is_loaded_by_check_config(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    code, _, err, _ = cli("--check-config", "--ca-file", str(not_pem), env=GOOD_ENV)
    assert code == 2
    assert err.startswith(PROG + "invalid setting ca_file (from flag --ca-file): ")
    assert "no PEM certificate" in err
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    code, _, err, _ = cli("--check-config", "--ca-file", str(broken), env=GOOD_ENV)
    assert code == 2 and "invalid setting ca_file" in err and "Traceback" not in err
    certs = make_certs(tmp_path)
    assert load(["--ca-file", str(certs.ca)], GOOD_ENV).settings.ca_file == certs.ca


def test_web_config_files_are_bounded_too(tmp_path: Path, fifo: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {fifo}\n  key_file: {fifo}\n")
    code, _, err, seconds = cli("--check-config", "--web-config-file", str(web), env=GOOD_ENV)
    assert code == 2 and seconds < 10
    assert "invalid setting web_config_file" in err and "cert_file" in err and "FIFO" in err
    web.write_text(BOMB)
    code, _, err, _ = cli("--check-config", "--web-config-file", str(web), env=GOOD_ENV)
    assert code == 2 and "aliases" in err
    code, _, err, seconds = cli("--check-config", "--web-config-file", str(fifo), env=GOOD_ENV)
    assert code == 2 and seconds < 10 and "invalid setting web_config_file" in err


def test_a_bad_web_config_is_reported_with_the_other_bad_settings(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: not-a-hash\n")
    env = {**GOOD_ENV, "ALVARIA_POLL_INTERVAL": "5x"}
    code, _, err, _ = cli("--check-config", "--web-config-file", str(web), env=env)
    assert code == 2
    assert [line.split()[3] for line in error_lines(err)] == ["poll_interval", "web_config_file"]
    assert "basic_auth_users.prometheus: not a bcrypt hash" in err and "not-a-hash" not in err


# --- environment --------------------------------------------------------------------------


def test_unknown_alvaria_variables_are_warned_about_with_a_suggestion() -> None:
    env = {
        **GOOD_ENV,
        "ALVARIA_POLL_INTERVALL": "5s",
        "ALVARIA_SIM_SPEED": "10",  # the simulator's
        "ALVARIA_CLIENT_SECRET_FILE": "",  # a secret file, empty = unset
        "ALVARIA_ORG_ID_FILE": "/x",
    }
    code, _, err, _ = cli("--check-config", env=env)
    assert code == 0
    warnings = [line for line in err.splitlines() if "warning:" in line]
    assert len(warnings) == 2, err
    assert "ALVARIA_POLL_INTERVALL" in warnings[1] and "did you mean ALVARIA_POLL_INTERVAL?" in err
    assert "ALVARIA_ORG_ID_FILE" in warnings[0] and "can be read from a file" in warnings[0]
    code, _, err, _ = cli("--check-config", "--strict-env", env=env)
    assert code == 2
    assert len(error_lines(err)) == 2
    assert "invalid setting poll_intervall (from env ALVARIA_POLL_INTERVALL)" in err


def test_an_unknown_variable_is_shown_next_to_the_setting_it_misses() -> None:
    env = {"ALVARIA_ORG_IDD": "acme", "ALVARIA_API_KEY": SECRET, "ALVARIA_ACCESS_TOKEN": "t"}
    code, _, err, _ = cli(env=env)
    assert code == 2
    assert "invalid setting org_id (from default): required" in err
    assert "warning: env ALVARIA_ORG_IDD" in err and "did you mean ALVARIA_ORG_ID?" in err


# --- values that would hammer the API ------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "setting", "problem"),
    [
        ({"ALVARIA_POLL_INTERVAL": "1ms"}, "poll_interval", "at least 1s"),
        ({"ALVARIA_POLL_INTERVAL": "0.5"}, "poll_interval", "at least 1s"),
        (
            {"ALVARIA_POLL_INTERVAL": "2s", "ALVARIA_REQUEST_TIMEOUT": "6s"},
            "request_timeout",
            "poll deadline (3 x poll_interval = 6s)",
        ),
        ({"ALVARIA_MAX_RETRIES": "50"}, "max_retries", "at most 10"),
        ({"ALVARIA_MAX_CONCURRENCY": "100"}, "max_concurrency", "at most 32"),
        ({"ALVARIA_MAX_CONNECTIONS": "0"}, "max_connections", "greater than or equal to 1"),
        ({"ALVARIA_HEADER_TIMEOUT": "0s"}, "header_timeout", "greater than 0"),
    ],
)
def test_values_that_would_hammer_the_api_are_refused(
    env: dict[str, str], setting: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load([], {**GOOD_ENV, **env})
    assert [e.setting for e in info.value.all] == [setting]
    assert problem in info.value.problem


def test_a_default_request_timeout_shrinks_to_fit_a_short_poll_interval() -> None:
    assert load([], {**GOOD_ENV, "ALVARIA_POLL_INTERVAL": "2s"}).settings.request_timeout == 2.0
    assert load([], GOOD_ENV).settings.request_timeout == 10.0
    s = load([], GOOD_ENV).settings
    assert (s.max_connections, s.header_timeout, s.strict_env) == (512, 10.0, False)


def test_web_config_certificates_and_keys_are_checked_by_check_config(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    web = tmp_path / "web.yml"
    for cert, key, problem in [
        (junk, certs.server_key, "tls_server_config.cert_file: "),
        (certs.server_cert, junk, "tls_server_config.key_file: "),
        (certs.server_cert, certs.client_key, "cannot load cert_file/key_file"),
    ]:
        web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
        code, _, err, _ = cli("--check-config", "--web-config-file", str(web), env=GOOD_ENV)
        assert code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith(PROG + "invalid setting web_config_file") and problem in err
        assert "BEGIN" not in err.split("holds no PEM")[0] and "Traceback" not in err
    web.write_text(
        f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
    )
    code, _, err, _ = cli("--check-config", "--web-config-file", str(web), env=GOOD_ENV)
    assert code == 0, err
