"""Layering of flags > env > YAML > *_FILE > defaults into Settings, with targets: inheritance."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from exporter.errors import ConfigError
from exporter.settings.models import Invocation, Mode, Settings, TargetSettings
from exporter.settings.servicelevels import parse_service_levels
from exporter.settings.table import (
    BLOCK_KEYS,
    FILE_KEYS,
    GLOBAL_SPECS,
    MODE_FLAGS,
    SPEC_OF,
    SPECS,
    TARGET_SPECS,
    TOP_KEYS,
    Spec,
    build_parser,
)
from exporter.settings.values import convert, type_name


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
    specs: Sequence[Spec], layers: Sequence[_Layer], prefix: str, notes: list[str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Convert each setting from the first layer that has it; returns values and their sources.

    A secret file shadowed by a value from a higher source is reported in `notes`: the order is
    the documented one, but a file that is silently ignored surprises.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in specs:
        found = [layer[spec.name] for layer in layers if spec.name in layer]
        if not found:
            continue
        item = found[0]
        if notes is not None and item.secret_file is None:
            notes += [
                f"{prefix}{spec.name} from {item.source} overrides {other.source}"
                for other in found[1:]
                if other.secret_file is not None
            ]
        setting = prefix + spec.name
        raw = item.raw
        if item.secret_file is not None:
            raw = _read_secret(item.secret_file, setting, item.source)
        try:
            values[spec.name] = convert(spec.kind, raw)
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
    if key in SPEC_OF:
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
        if key in FILE_KEYS:
            if not isinstance(raw, str) or not raw.strip():
                raise ConfigError(label, f"config file {cfg} ({label})", "must be a file path")
            path = cfg.parent / raw.strip()
            files[FILE_KEYS[key]] = _Value(None, f"file {label}={path} (config file {cfg})", path)
            continue
        if key in SPEC_OF and SPEC_OF[key].kind == "path" and isinstance(raw, str) and raw.strip():
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
    top, top_files = _yaml_layers(data, "", path, TOP_KEYS)
    targets = data.get("targets")
    if targets is None:
        return top, top_files, None
    if not isinstance(targets, list):
        problem = f"must be a list of organisation blocks, not {type_name(targets)}"
        raise ConfigError("targets", f"config file {path} (targets)", problem)
    blocks = []
    for i, block in enumerate(targets):
        if not isinstance(block, dict):
            where = f"targets[{i}]"
            raise ConfigError(where, f"config file {path} ({where})", "must be a mapping")
        blocks.append(_yaml_layers(block, f"targets[{i}].", path, BLOCK_KEYS))
    return top, top_files, blocks


def _build_target(
    layers: Sequence[_Layer], prefix: str, demo: bool, notes: list[str]
) -> TargetSettings:
    values, sources = _resolve(TARGET_SPECS, layers, prefix, notes)
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
    args = vars(build_parser().parse_args(list(argv)))
    if args["version"]:
        return Invocation("version", Settings())
    chosen = [mode for flag, mode in MODE_FLAGS.items() if args[flag]]
    if len(chosen) > 1:
        flags = " ".join("--" + mode.replace("_", "-") for mode in chosen)
        raise ConfigError(
            "mode", f"flag {flags}", "--demo, --once and --check-config exclude each other"
        )
    mode: Mode = chosen[0] if chosen else "run"

    flag_layer: _Layer = {}
    env_layer: _Layer = {}
    for spec in SPECS:
        if args[spec.name] is not None:
            flag_layer[spec.name] = _Value(args[spec.name], f"flag {spec.flag}")
        if environ.get(spec.env):
            env_layer[spec.name] = _Value(environ[spec.env], f"env {spec.env}")
    flag_files: _Layer = {}
    env_files: _Layer = {}
    for key, name in FILE_KEYS.items():
        flag, env = "--" + key.replace("_", "-"), f"ALVARIA_{key.upper()}"
        if args[key]:
            flag_files[name] = _Value(None, f"file {flag}={args[key]}", Path(args[key]))
        if environ.get(env):
            env_files[name] = _Value(None, f"file {env}={environ[env]}", Path(environ[env]))

    top: _Layer = {}
    top_files: _Layer = {}
    blocks = None
    global_values, global_sources = _resolve(GLOBAL_SPECS, [flag_layer, env_layer], "")
    config_file = global_values.get("config_file")
    if config_file is not None:
        top, top_files, blocks = _read_config(config_file, global_sources["config_file"])
        global_values, global_sources = _resolve(GLOBAL_SPECS, [flag_layer, env_layer, top], "")

    inherited = [flag_layer, env_layer, top, flag_files, env_files, top_files]
    targets: list[TargetSettings] = []
    notes: list[str] = []
    if blocks is None:
        if mode != "demo" or any("org_id" in layer for layer in inherited[:3]):
            targets.append(_build_target(inherited, "", mode == "demo", notes))
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
            target = _build_target([block, block_files, *inherited], prefix, mode == "demo", notes)
            if target.org_id in seen:
                where = f"config file {config_file} ({prefix}org_id)"
                raise ConfigError(
                    f"{prefix}org_id", where, f"duplicates targets[{seen[target.org_id]}]"
                )
            seen[target.org_id] = i
            targets.append(target)

    if config_file is not None:
        raw_rules, raw_calendars = (top.get(k) for k in ("service_levels", "calendars"))
        rules, calendars, problems = parse_service_levels(
            raw_rules and raw_rules.raw,
            raw_calendars and raw_calendars.raw,
            f"config file {config_file}",
        )
        if problems:
            raise problems[0]
        global_values |= {"service_levels": rules, "calendars": calendars}
    poll = global_values.get("poll_interval", Settings.model_fields["poll_interval"].default)
    stale = global_values.get("stale_after")
    if stale is not None and poll > 0 and stale < poll:
        problem = f"must be at least poll_interval ({poll:g}s)"
        raise ConfigError("stale_after", global_sources["stale_after"], problem)
    settings = _construct(
        Settings, {**global_values, "targets": tuple(targets)}, global_sources, ""
    )
    return Invocation(mode, settings, tuple(notes))
