"""The settings table (each setting's flag --kebab-name and env var ALVARIA_NAME) and argparse."""

from __future__ import annotations

import argparse
from typing import NamedTuple

from exporter import __version__
from exporter.settings.models import Mode, Settings, TargetSettings
from exporter.settings.regions import REGIONS
from exporter.settings.values import UNIT_SECONDS

_SECRETS = ("api_key", "client_secret", "access_token")
FILE_KEYS = {f"{name}_file": name for name in _SECRETS}


class Spec(NamedTuple):
    """One setting: how its raw value is parsed and how --help shows it."""

    name: str
    kind: str  # how convert parses it
    help: str
    target: bool = False  # per organisation (inherited by targets: blocks)
    default: str = ""  # help text when the model's default is derived or unreadable

    @property
    def env(self) -> str:
        return f"ALVARIA_{self.name.upper()}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SPECS = (
    Spec("org_id", "str", "organisation id; also the org label", True, "required"),
    Spec("api_key", "secret", "API key sent as x-api-key (prefer the file)", True, "required"),
    Spec("client_id", "opt", "OAuth2 client-credentials id", True),
    Spec("client_secret", "secret", "OAuth2 client secret (prefer the file)", True),
    Spec("access_token", "secret", "static bearer token; no token requests are made", True),
    Spec("region", "choice", f"{', '.join(REGIONS)}: picks the token and API hosts", True),
    Spec("token_url", "str", "OAuth2 token endpoint", True, "by region"),
    Spec("token_realm", "text", "realm sent on token requests; empty: none", True, "org_id"),
    Spec("token_auth_method", "choice", "client_secret_basic or client_secret_post", True),
    Spec("scope", "str", "requested OAuth2 scope", True),
    Spec("api_url", "str", "API base URL", True, "https://{org_id}.<API domain of the region>"),
    Spec("extended_info", "bool", "ask for workTypeName and workHandlerName", True),
    Spec("email_type", "opt", "server-side filter emailType", True),
    Spec("work_type_ids", "strs", "server-side filter workTypeIds", True),
    Spec("states", "strs", "server-side filter states", True),
    Spec("listen_address", "str", "host:port, :port or [ipv6]:port to serve HTTP on"),
    Spec("poll_interval", "duration", "time between poll starts, per organisation"),
    Spec("page_size", "int", "maxResults asked for per page (1-10000)"),
    Spec("max_concurrency", "int", "page requests in flight per organisation"),
    Spec("request_timeout", "duration", "timeout of one HTTP request", False, "10s, <= poll"),
    Spec("max_retries", "int", "retries of a request after 429, 5xx, timeout or connection error"),
    Spec(
        "stale_after",
        "duration",
        "drop queue series after this long without success",
        False,
        "5 x poll_interval",
    ),
    Spec("series_ttl", "duration", "an emptied group keeps reporting zero this long"),
    Spec("waiting_states", "strs", "states whose emails wait for an agent"),
    Spec("age_buckets", "buckets", "waiting-age histogram buckets, in seconds"),
    Spec("max_work_types", "int", "work_type values per organisation; more become 'other'"),
    Spec("agent_metrics", "bool", "export the per-agent workload gauge"),
    Spec("max_agents", "int", "agents per organisation in the per-agent gauge"),
    Spec("thread_memory", "duration", "how long a departed email's threadId counts for repeats"),
    Spec("max_threads", "int", "thread ids remembered per organisation; the oldest go first"),
    Spec("work_type_label", "choice", "name (workTypeName, else id) or id: the work_type label"),
    Spec("metric_denylist", "strs", "regular expressions of metric family names not to export"),
    Spec("max_series", "int", "series per organisation, all families; the rest fold into 'other'"),
    Spec("max_label_length", "int", "longer label values are cut and end in ~ and a 6-hex hash"),
    Spec("max_pages", "int", "pages fetched per poll at most"),
    Spec("max_response_bytes", "size", "largest response body accepted", False, "32MiB"),
    Spec("ca_file", "path", "PEM bundle of a private CA for upstream TLS"),
    Spec("service_level_target", "duration", "default service-level target: queued to picked up"),
    Spec("service_level_warning", "duration", "at risk = breaches within this (wall-clock) time"),
    Spec("log_level", "choice", "debug, info, warning or error"),
    Spec("log_format", "choice", "auto (console on a TTY, else JSON), console or json"),
    Spec("shard", "str", "this replica's shard, or auto: the host name's ordinal (name-3 -> 3)"),
    Spec("total_shards", "int", "number of shards; organisations are split by API key"),
    Spec(
        "max_requests_per_second", "number", "request rate limit per API key, all its organisations"
    ),
    Spec("config_file", "path", "YAML file with any setting above, plus targets:"),
    Spec("web_config_file", "path", "exporter-toolkit web config: TLS and basic auth"),
    Spec("web_enable_lifecycle", "bool", "serve POST /-/reload (SIGHUP reloads either way)"),
    Spec("max_connections", "int", "open connections to the HTTP server; more are closed at once"),
    Spec("header_timeout", "duration", "time a client has to send a request's headers"),
    Spec("strict_env", "bool", "unknown ALVARIA_* environment variables are errors, not warnings"),
)
SPEC_OF = {spec.name: spec for spec in SPECS}
TARGET_SPECS = tuple(spec for spec in SPECS if spec.target)
GLOBAL_SPECS = tuple(spec for spec in SPECS if not spec.target)
# Structured settings that only the config file can hold (settings/servicelevels.py).
YAML_ONLY_KEYS = ("service_levels", "calendars")
TOP_KEYS = {spec.name for spec in SPECS if spec.name != "config_file"} | {*FILE_KEYS, "targets"}
TOP_KEYS |= set(YAML_ONLY_KEYS)
BLOCK_KEYS = {spec.name for spec in TARGET_SPECS} | set(FILE_KEYS)
_METAVARS = {"duration": "DURATION", "size": "SIZE", "int": "N", "bool": "BOOL", "path": "PATH"}
_METAVARS |= {"number": "NUMBER"}
_METAVARS |= {"strs": "A,B,...", "buckets": "S,S,..."}
MODE_FLAGS: dict[str, Mode] = {
    "demo": "demo",
    "once": "once",
    "check_config": "check_config",
    "check_connection": "check_connection",
}
_EPILOG = """\
Sources, highest first: flags > environment (ALVARIA_<NAME>) > config file > *_FILE secret
files > defaults. In the config file, targets: lists one block per organisation; the
per-organisation settings given elsewhere are defaults for every block. An empty environment
variable counts as unset. Durations: 30, 2.5, 30s, 5m, 1h30m, 500ms. Lists: comma-separated.
Booleans: true/false, 1/0, yes/no. Service-level rules (service_levels:) and business-hours
calendars (calendars:) are set in the config file only.
"""


def default_text(spec: Spec) -> str:
    """The default as --help and the docs show it."""
    if spec.default:
        return spec.default
    value = (TargetSettings if spec.target else Settings).model_fields[spec.name].default
    if value is None or value == ():
        return "unset"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if spec.kind == "duration":
        unit = next(u for u in ("h", "m", "s") if value % UNIT_SECONDS[u] == 0 or u == "s")
        return f"{value / UNIT_SECONDS[unit]:g}{unit}"
    return str(value)


def build_parser(
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    """The command line: the mode flags, one flag per setting and one per secret file."""
    parser = parser_class(
        prog="alvaria-emailqueue-exporter",
        description=f"Prometheus exporter for the Alvaria Cloud EmailQueue API ({__version__}).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    modes = parser.add_argument_group("modes (at most one)")
    modes.add_argument("--demo", action="store_true", help="poll the built-in simulator")
    modes.add_argument("--once", action="store_true", help="poll once, print the metrics, exit")
    modes.add_argument("--check-config", action="store_true", help="print the masked settings")
    modes.add_argument("--check-connection", action="store_true",
                       help="diagnose the way to Alvaria Cloud step by step, then exit")  # fmt: skip
    modes.add_argument("--version", action="store_true", help="print the version and exit")
    modes.add_argument("--show-sources", action="store_true",
                       help="with --check-config: where each value came from, as a comment")  # fmt: skip
    groups = {
        True: parser.add_argument_group("per organisation (defaults for every targets: block)"),
        False: parser.add_argument_group("exporter-wide"),
    }
    for spec in SPECS:
        group = groups[spec.target]
        metavar = _METAVARS.get(spec.kind, spec.name.upper())
        text = f"{spec.help} [env {spec.env}; default {default_text(spec)}]"
        if spec.kind == "bool":
            group.add_argument(spec.flag, dest=spec.name, metavar=metavar, help=text, nargs="?",
                               const="true")  # fmt: skip
        else:
            group.add_argument(spec.flag, dest=spec.name, metavar=metavar, help=text)
    files = parser.add_argument_group("secret files (trailing newline stripped)")
    for key, name in FILE_KEYS.items():
        env = f"ALVARIA_{key.upper()}"
        files.add_argument("--" + key.replace("_", "-"), dest=key, metavar="PATH",
                           help=f"read {name} from this file [env {env}]")  # fmt: skip
    return parser
