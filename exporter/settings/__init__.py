"""Settings from flags, environment, YAML config file and secret files; the only module reading them.

Sources, highest first: flags > ``ALVARIA_*`` env > YAML config file > ``*_FILE`` secret files >
defaults. Inside ``targets:`` a block's own values (and its own ``*_file`` keys) win over everything
they inherit. The layering is done here rather than by pydantic-settings because every
``ConfigError`` must name the exact source of the offending value.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter import __version__
from exporter.errors import ConfigError

Mode = Literal["run", "demo", "once", "check_config", "version"]
Region = Literal["us", "eu", "uk", "ca"]

TOKEN_URLS: dict[str, str] = {
    region: f"https://myaspect.{host}.aspect-cloud.net/tokenservice/oauth2/access_token"
    for region, host in {"us": "id", "eu": "eu", "uk": "uk", "ca": "ca"}.items()
}
SECRET_MASK = "********"  # noqa: S105 - the mask, not a password
_ORG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SECRETS = ("api_key", "client_secret", "access_token")
_FILE_KEYS = {f"{name}_file": name for name in _SECRETS}


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials; use the credential settings")
    return value


def split_listen_address(address: str) -> tuple[str, int]:
    """Split ``host:port``, ``:port`` or ``[v6]:port``; an empty host means all interfaces."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 host must be in brackets, like [::1]:9654")
    if not sep or any(c.isspace() or c in "[]" for c in host):
        raise ValueError("must be host:port, :port or [ipv6]:port")
    if not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError("port must be a number from 0 to 65535")
    return host, int(port)


class TargetSettings(BaseModel):
    """One organisation to poll."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    org_id: str
    api_key: SecretStr
    client_id: str | None = None
    client_secret: SecretStr | None = None
    access_token: SecretStr | None = None
    region: Region = "us"
    token_url: str = ""  # "" is replaced by the region's token URL
    token_auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"  # noqa: S105 - a method name, not a password
    scope: str = Field("emailqueueapi", min_length=1)
    api_url: str = ""  # "" is replaced by https://{org_id}.via.aspect-cloud.net
    extended_info: bool = True
    email_type: str | None = None
    work_type_ids: tuple[str, ...] = ()
    states: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if not data.get("token_url"):
                data["token_url"] = TOKEN_URLS.get(str(data.get("region", "us")), "")
            if not data.get("api_url") and isinstance(data.get("org_id"), str):
                data["api_url"] = f"https://{data['org_id']}.via.aspect-cloud.net"
        return data

    @field_validator("org_id")
    @classmethod
    def _org_id(cls, value: str) -> str:
        if not _ORG_ID.fullmatch(value):
            raise ValueError(
                "must be 1-128 letters, digits, '.', '_' or '-', not starting with . _ -"
            )
        return value

    @field_validator("api_key", "client_secret", "access_token")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _check_url(value).rstrip("/")

    @field_validator("work_type_ids", "states")
    @classmethod
    def _filters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not item for item in value):
            raise ValueError("items must not be empty")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> TargetSettings:
        if self.access_token is None and (self.client_id is None or self.client_secret is None):
            raise ValueError("set client_id and client_secret, or access_token")
        return self


class Settings(BaseModel):
    """Everything the exporter runs with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    targets: tuple[TargetSettings, ...] = ()
    listen_address: str = ":9654"
    poll_interval: float = Field(30.0, gt=0)
    page_size: int = Field(500, ge=1, le=10000)
    max_concurrency: int = Field(4, ge=1)
    request_timeout: float = Field(10.0, gt=0)
    max_retries: int = Field(3, ge=0)
    stale_after: float = 0.0  # 0 is replaced by 5 * poll_interval
    series_ttl: float = Field(3600.0, ge=0)
    waiting_states: tuple[str, ...] = ("Queued", "Queued2", "Transferred", "Reassigned")
    age_buckets: tuple[float, ...] = tuple(
        float(b) for b in (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800)
    )
    max_work_types: int = Field(500, ge=1)
    agent_metrics: bool = False
    max_agents: int = Field(2000, ge=1)
    max_pages: int = Field(1000, ge=1)
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=1)
    ca_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"
    config_file: Path | None = None
    web_config_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("stale_after"):
            poll = data.get("poll_interval", 30.0)
            if isinstance(poll, int | float):
                data = {**data, "stale_after": 5 * poll}
        return data

    @field_validator("listen_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        split_listen_address(value)
        return value

    @field_validator("waiting_states")
    @classmethod
    def _waiting_states(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not item for item in value):
            raise ValueError("must list at least one state, with no empty items")
        return value

    @field_validator("age_buckets")
    @classmethod
    def _age_buckets(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or value[0] <= 0 or not all(math.isfinite(v) for v in value):
            raise ValueError("must be a non-empty list of finite positive seconds")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("must be strictly increasing")
        return value

    @field_validator("ca_file", "web_config_file")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @model_validator(mode="after")
    def _stale_after(self) -> Settings:
        if self.stale_after < self.poll_interval:
            raise ValueError("stale_after must be at least poll_interval")
        return self

    @property
    def listen_host(self) -> str:
        """Host part of listen_address; "" means all interfaces."""
        return split_listen_address(self.listen_address)[0]

    @property
    def listen_port(self) -> int:
        """Port part of listen_address."""
        return split_listen_address(self.listen_address)[1]


@dataclass(frozen=True)
class Invocation:
    """What to do, and with which settings."""

    mode: Mode
    settings: Settings


# --- value parsing: raw strings (env, flags, files) or YAML scalars/lists -> Python values ------

_DURATION_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)"
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?", re.IGNORECASE)
_BOOLS = {"true": True, "1": True, "yes": True, "on": True}
_BOOLS |= {"false": False, "0": False, "no": False, "off": False}


def _type_name(raw: Any) -> str:
    return {list: "a list", dict: "a mapping", bool: "a boolean"}.get(type(raw), type(raw).__name__)


def parse_duration(raw: Any) -> float:
    """Seconds from ``30``, ``2.5``, ``30s``, ``5m``, ``1h30m`` or ``500ms``."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            seconds = float(text)
        except ValueError:
            if not re.fullmatch(f"(?:{_DURATION_PART})+", text):
                raise ValueError(
                    f"{raw!r} is not a duration: use seconds (30, 2.5) or 30s, 5m, 1h30m, 500ms"
                ) from None
            parts = re.findall(_DURATION_PART, text)
            seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in parts)
    else:
        raise ValueError(f"must be a duration, not {_type_name(raw)}")
    if not math.isfinite(seconds):
        raise ValueError("must be a finite number of seconds")
    return seconds


def parse_size(raw: Any) -> int:
    """Bytes from ``1048576``, ``512KiB``, ``10MB`` or ``64MiB``."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    match = _SIZE.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        raise ValueError(f"{raw!r} is not a size: use bytes or 512KiB, 10MB, 64MiB, 1GiB")
    unit = (match[2] or "b").lower()
    scale = 1 if unit == "b" else (1024 if "i" in unit else 1000) ** " kmgt".index(unit[0])
    number = float(match[1]) if "." in match[1] else int(match[1])
    return int(number * scale)


def _convert(kind: str, raw: Any) -> Any:
    """Turn one raw value into the Python value of a setting of the given kind."""
    if kind == "duration":
        return parse_duration(raw)
    if kind == "size":
        return parse_size(raw)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        key = str(raw).strip().lower() if isinstance(raw, str | int) else ""
        if key not in _BOOLS:
            raise ValueError("must be true/false, 1/0 or yes/no")
        return _BOOLS[key]
    if kind == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if not (isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw)):
            raise ValueError(f"{raw!r} is not a whole number")
        return int(raw)
    if kind in ("strs", "buckets"):
        if isinstance(raw, str):
            items: list[Any] = [item.strip() for item in raw.split(",") if item.strip()]
        elif isinstance(raw, list):
            items = raw
        else:
            raise ValueError(f"must be a comma-separated string or a list, not {_type_name(raw)}")
        if kind == "buckets":
            return tuple(parse_duration(item) for item in items)
        return tuple(_convert("str", item) for item in items)
    if kind == "secret":
        if not isinstance(raw, str):
            raise ValueError(f"must be a string, not {_type_name(raw)} (quote it in YAML)")
        return SecretStr(raw)
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ValueError(f"must be a string, not {_type_name(raw)}")
    text = str(raw).strip()
    if not text:
        if kind in ("opt", "path"):
            return None
        raise ValueError("must not be empty")
    return {"choice": text.lower(), "path": Path(text)}.get(kind, text)


# --- the settings table: every setting has a flag --kebab-name and an env var ALVARIA_NAME -------


class _Spec(NamedTuple):
    name: str
    kind: str  # how _convert parses it
    help: str
    target: bool = False  # per organisation (inherited by targets: blocks)
    default: str = ""  # help text when the model's default is derived or unreadable

    @property
    def env(self) -> str:
        return f"ALVARIA_{self.name.upper()}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_SPECS = (
    _Spec("org_id", "str", "organisation id; also the org label", True, "required"),
    _Spec("api_key", "secret", "API key sent as x-api-key (prefer the file)", True, "required"),
    _Spec("client_id", "opt", "OAuth2 client-credentials id", True),
    _Spec("client_secret", "secret", "OAuth2 client secret (prefer the file)", True),
    _Spec("access_token", "secret", "static bearer token; no token requests are made", True),
    _Spec("region", "choice", "us, eu, uk or ca: picks the default token URL", True),
    _Spec("token_url", "str", "OAuth2 token endpoint", True, "by region"),
    _Spec("token_auth_method", "choice", "client_secret_basic or client_secret_post", True),
    _Spec("scope", "str", "requested OAuth2 scope", True),
    _Spec("api_url", "str", "API base URL", True, "https://{org_id}.via.aspect-cloud.net"),
    _Spec("extended_info", "bool", "ask for workTypeName and workHandlerName", True),
    _Spec("email_type", "opt", "server-side filter emailType", True),
    _Spec("work_type_ids", "strs", "server-side filter workTypeIds", True),
    _Spec("states", "strs", "server-side filter states", True),
    _Spec("listen_address", "str", "host:port, :port or [ipv6]:port to serve HTTP on"),
    _Spec("poll_interval", "duration", "time between poll starts, per organisation"),
    _Spec("page_size", "int", "maxResults asked for per page (1-10000)"),
    _Spec("max_concurrency", "int", "page requests in flight per organisation"),
    _Spec("request_timeout", "duration", "timeout of one HTTP request"),
    _Spec("max_retries", "int", "retries of a request after 429, 5xx, timeout or connection error"),
    _Spec(
        "stale_after",
        "duration",
        "drop queue series after this long without success",
        False,
        "5 x poll_interval",
    ),
    _Spec("series_ttl", "duration", "an emptied group keeps reporting zero this long"),
    _Spec("waiting_states", "strs", "states whose emails wait for an agent"),
    _Spec("age_buckets", "buckets", "waiting-age histogram buckets, in seconds"),
    _Spec("max_work_types", "int", "work_type values per organisation; more become 'other'"),
    _Spec("agent_metrics", "bool", "export the per-agent workload gauge"),
    _Spec("max_agents", "int", "agents per organisation in the per-agent gauge"),
    _Spec("max_pages", "int", "pages fetched per poll at most"),
    _Spec("max_response_bytes", "size", "largest response body accepted", False, "64MiB"),
    _Spec("ca_file", "path", "PEM bundle of a private CA for upstream TLS"),
    _Spec("log_level", "choice", "debug, info, warning or error"),
    _Spec("log_format", "choice", "auto (console on a TTY, else JSON), console or json"),
    _Spec("config_file", "path", "YAML file with any setting above, plus targets:"),
    _Spec("web_config_file", "path", "exporter-toolkit web config: TLS and basic auth"),
)
_SPEC = {spec.name: spec for spec in _SPECS}
_TARGET_SPECS = tuple(spec for spec in _SPECS if spec.target)
_GLOBAL_SPECS = tuple(spec for spec in _SPECS if not spec.target)
_TOP_KEYS = {spec.name for spec in _SPECS if spec.name != "config_file"} | {*_FILE_KEYS, "targets"}
_BLOCK_KEYS = {spec.name for spec in _TARGET_SPECS} | set(_FILE_KEYS)
_METAVARS = {"duration": "DURATION", "size": "SIZE", "int": "N", "bool": "BOOL", "path": "PATH"}
_METAVARS |= {"strs": "A,B,...", "buckets": "S,S,..."}
_MODE_FLAGS: dict[str, Mode] = {"demo": "demo", "once": "once", "check_config": "check_config"}
_EPILOG = """\
Sources, highest first: flags > environment (ALVARIA_<NAME>) > config file > *_FILE secret
files > defaults. In the config file, targets: lists one block per organisation; the
per-organisation settings given elsewhere are defaults for every block. An empty environment
variable counts as unset. Durations: 30, 2.5, 30s, 5m, 1h30m, 500ms. Lists: comma-separated.
Booleans: true/false, 1/0, yes/no.
"""


def _default_text(spec: _Spec) -> str:
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
        unit = next(u for u in ("h", "m", "s") if value % _UNIT_SECONDS[u] == 0 or u == "s")
        return f"{value / _UNIT_SECONDS[unit]:g}{unit}"
    return str(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alvaria-emailqueue-exporter",
        description=f"Prometheus exporter for the Alvaria Cloud EmailQueue API ({__version__}).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    modes = parser.add_argument_group("modes (at most one of --demo, --once, --check-config)")
    modes.add_argument("--demo", action="store_true", help="poll the built-in simulator")
    modes.add_argument("--once", action="store_true", help="poll once, print the metrics, exit")
    modes.add_argument("--check-config", action="store_true", help="print the masked settings")
    modes.add_argument("--version", action="store_true", help="print the version and exit")
    groups = {
        True: parser.add_argument_group("per organisation (defaults for every targets: block)"),
        False: parser.add_argument_group("exporter-wide"),
    }
    for spec in _SPECS:
        group = groups[spec.target]
        metavar = _METAVARS.get(spec.kind, spec.name.upper())
        text = f"{spec.help} [env {spec.env}; default {_default_text(spec)}]"
        if spec.kind == "bool":
            group.add_argument(spec.flag, dest=spec.name, metavar=metavar, help=text, nargs="?",
                               const="true")  # fmt: skip
        else:
            group.add_argument(spec.flag, dest=spec.name, metavar=metavar, help=text)
    files = parser.add_argument_group("secret files (trailing newline stripped)")
    for key, name in _FILE_KEYS.items():
        env = f"ALVARIA_{key.upper()}"
        files.add_argument("--" + key.replace("_", "-"), dest=key, metavar="PATH",
                           help=f"read {name} from this file [env {env}]")  # fmt: skip
    return parser


# --- layering ------------------------------------------------------------------------------


class _Value(NamedTuple):
    raw: Any
    source: str  # as shown in ConfigError, e.g. "env ALVARIA_POLL_INTERVAL"
    secret_file: Path | None = None  # read lazily: a shadowed file need not exist


_Layer = dict[str, _Value]
_M = TypeVar("_M", bound=BaseModel)


def _read_secret(path: Path, setting: str, source: str) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(setting, source, f"cannot read the file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(setting, source, "the file is not UTF-8 text") from None


def _resolve(
    specs: Sequence[_Spec], layers: Sequence[_Layer], prefix: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Convert each setting from the first layer that has it; returns values and their sources."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in specs:
        item = next((layer[spec.name] for layer in layers if spec.name in layer), None)
        if item is None:
            continue
        setting = prefix + spec.name
        raw = item.raw
        if item.secret_file is not None:
            raw = _read_secret(item.secret_file, setting, item.source)
        try:
            values[spec.name] = _convert(spec.kind, raw)
        except ValueError as exc:
            raise ConfigError(setting, item.source, str(exc)) from None
        sources[spec.name] = item.source
    return values, sources


def _construct(model: type[_M], values: dict[str, Any], sources: dict[str, str], prefix: str) -> _M:
    try:
        return model(**values)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        setting = prefix + name if name else prefix.rstrip(".") or "settings"
        problem = error["msg"].removeprefix("Value error, ")
        raise ConfigError(setting, sources.get(name, "default"), problem) from None


def _unknown(key: str, allowed: set[str]) -> str:
    if key == "config_file":
        return "cannot be set inside the config file"
    if key in _SPEC:
        return "is exporter-wide: set it at the top level of the config file"
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return "unknown setting" + (f"; did you mean {close[0]}?" if close else "")


def _yaml_layers(
    data: dict[Any, Any], where: str, cfg: Path, allowed: set[str]
) -> tuple[_Layer, _Layer]:
    """Split one YAML mapping into its values and its secret files; paths are relative to cfg."""
    values: _Layer = {}
    files: _Layer = {}
    for key, raw in ((str(k), v) for k, v in data.items()):
        label = where + key
        if key not in allowed:
            raise ConfigError(label, f"config file {cfg} ({label})", _unknown(key, allowed))
        if raw is None or key == "targets":
            continue
        if key in _FILE_KEYS:
            if not isinstance(raw, str) or not raw.strip():
                raise ConfigError(label, f"config file {cfg} ({label})", "must be a file path")
            path = cfg.parent / raw.strip()
            files[_FILE_KEYS[key]] = _Value(None, f"file {label}={path} (config file {cfg})", path)
            continue
        if key in _SPEC and _SPEC[key].kind == "path" and isinstance(raw, str) and raw.strip():
            raw = str(cfg.parent / raw.strip())
        values[key] = _Value(raw, f"config file {cfg} ({label})")
    return values, files


def _read_config(
    path: Path, source: str
) -> tuple[_Layer, _Layer, list[tuple[_Layer, _Layer]] | None]:
    """Top-level values and secret files of the YAML file, and its targets: blocks if any."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("config_file", source, f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("config_file", source, f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        # Only the problem and position: str(exc) quotes the offending line, maybe a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError("config_file", source, f"invalid YAML{where}: {problem}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError("config_file", source, "must be a YAML mapping of settings")
    top, top_files = _yaml_layers(data, "", path, _TOP_KEYS)
    targets = data.get("targets")
    if targets is None:
        return top, top_files, None
    if not isinstance(targets, list):
        problem = f"must be a list of organisation blocks, not {_type_name(targets)}"
        raise ConfigError("targets", f"config file {path} (targets)", problem)
    blocks = []
    for i, block in enumerate(targets):
        if not isinstance(block, dict):
            where = f"targets[{i}]"
            raise ConfigError(where, f"config file {path} ({where})", "must be a mapping")
        blocks.append(_yaml_layers(block, f"targets[{i}].", path, _BLOCK_KEYS))
    return top, top_files, blocks


def _build_target(layers: Sequence[_Layer], prefix: str, demo: bool) -> TargetSettings:
    values, sources = _resolve(_TARGET_SPECS, layers, prefix)
    if "org_id" not in values:
        where = "in every targets: block" if prefix else "--org-id or ALVARIA_ORG_ID"
        raise ConfigError(f"{prefix}org_id", "default", f"required: set {where}")
    if demo:  # the simulator accepts any credentials
        values.setdefault("api_key", SecretStr("demo"))
        if not values.get("access_token") and not values.get("client_secret"):
            values["access_token"] = SecretStr("demo")
    if "api_key" not in values:
        problem = "required: set ALVARIA_API_KEY or ALVARIA_API_KEY_FILE (or api_key_file: in YAML)"
        raise ConfigError(f"{prefix}api_key", "default", problem)
    client_id, client_secret = values.get("client_id"), values.get("client_secret")
    if values.get("access_token") is None and (client_id is None or client_secret is None):
        if client_id is not None:
            problem = f"required with client_id (from {sources['client_id']}) without access_token"
            raise ConfigError(f"{prefix}client_secret", "default", problem)
        if client_secret is not None:
            problem = f"required with client_secret (from {sources['client_secret']})"
            raise ConfigError(f"{prefix}client_id", "default", problem)
        problem = "set client_id and client_secret (OAuth2 client credentials), or access_token"
        raise ConfigError(f"{prefix}client_id", "default", problem)
    return _construct(TargetSettings, values, sources, prefix)


def load(argv: Sequence[str], environ: Mapping[str, str]) -> Invocation:
    """Parse argv, environ and the files they name; raises ConfigError for any invalid value."""
    args = vars(_parser().parse_args(list(argv)))
    if args["version"]:
        return Invocation("version", Settings())
    chosen = [mode for flag, mode in _MODE_FLAGS.items() if args[flag]]
    if len(chosen) > 1:
        flags = " ".join("--" + mode.replace("_", "-") for mode in chosen)
        raise ConfigError(
            "mode", f"flag {flags}", "--demo, --once and --check-config exclude each other"
        )
    mode: Mode = chosen[0] if chosen else "run"

    flag_layer: _Layer = {}
    env_layer: _Layer = {}
    for spec in _SPECS:
        if args[spec.name] is not None:
            flag_layer[spec.name] = _Value(args[spec.name], f"flag {spec.flag}")
        if environ.get(spec.env):
            env_layer[spec.name] = _Value(environ[spec.env], f"env {spec.env}")
    flag_files: _Layer = {}
    env_files: _Layer = {}
    for key, name in _FILE_KEYS.items():
        flag, env = "--" + key.replace("_", "-"), f"ALVARIA_{key.upper()}"
        if args[key]:
            flag_files[name] = _Value(None, f"file {flag}={args[key]}", Path(args[key]))
        if environ.get(env):
            env_files[name] = _Value(None, f"file {env}={environ[env]}", Path(environ[env]))

    top: _Layer = {}
    top_files: _Layer = {}
    blocks = None
    global_values, global_sources = _resolve(_GLOBAL_SPECS, [flag_layer, env_layer], "")
    config_file = global_values.get("config_file")
    if config_file is not None:
        top, top_files, blocks = _read_config(config_file, global_sources["config_file"])
        global_values, global_sources = _resolve(_GLOBAL_SPECS, [flag_layer, env_layer, top], "")

    inherited = [flag_layer, env_layer, top, flag_files, env_files, top_files]
    targets: list[TargetSettings] = []
    if blocks is None:
        if mode != "demo" or any("org_id" in layer for layer in inherited[:3]):
            targets.append(_build_target(inherited, "", mode == "demo"))
    else:
        for layer in inherited[:3]:
            if "org_id" in layer:
                problem = f"ambiguous with targets: in {config_file}; set org_id in each block"
                raise ConfigError("org_id", layer["org_id"].source, problem)
        if not blocks and mode != "demo":
            where = f"config file {config_file} (targets)"
            raise ConfigError("targets", where, "must list at least one organisation")
        seen: dict[str, int] = {}
        for i, (block, block_files) in enumerate(blocks):
            prefix = f"targets[{i}]."
            target = _build_target([block, block_files, *inherited], prefix, mode == "demo")
            if target.org_id in seen:
                where = f"config file {config_file} ({prefix}org_id)"
                raise ConfigError(
                    f"{prefix}org_id", where, f"duplicates targets[{seen[target.org_id]}]"
                )
            seen[target.org_id] = i
            targets.append(target)

    poll = global_values.get("poll_interval", Settings.model_fields["poll_interval"].default)
    stale = global_values.get("stale_after")
    if stale is not None and poll > 0 and stale < poll:
        problem = f"must be at least poll_interval ({poll:g}s)"
        raise ConfigError("stale_after", global_sources["stale_after"], problem)
    settings = _construct(
        Settings, {**global_values, "targets": tuple(targets)}, global_sources, ""
    )
    return Invocation(mode, settings)


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return SECRET_MASK
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def masked_dump(settings: Settings) -> str:
    """YAML of the effective settings with every secret shown as ``********``."""
    return yaml.safe_dump(_plain(settings), sort_keys=False, allow_unicode=True)
