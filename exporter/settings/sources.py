"""Layering of flags > env > YAML > *_FILE > defaults into Settings, with targets: inheritance.

Every problem is collected in a `Problems` list rather than raised where it is found, so one run
reports every invalid or missing setting, one line each (`ConfigErrors`). A value that failed is
left out of what is built next, so it is reported once and never again as "missing".
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError

from exporter.domain.errors import ConfigError, ConfigErrors
from exporter.settings import web_config
from exporter.settings.argv import parse_argv
from exporter.settings.checks import check_limits, unknown_env
from exporter.settings.files import SECRET_FILE_LIMIT, read_text, read_yaml
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
)
from exporter.settings.values import convert, shown, type_name
from exporter.settings.web_config import WebConfig


class _Value(NamedTuple):
    raw: Any
    source: str  # as shown in ConfigError, e.g. "env ALVARIA_POLL_INTERVAL"
    secret_file: Path | None = None  # read lazily: a shadowed file need not exist


_Layer = dict[str, _Value]
_M = TypeVar("_M", bound=BaseModel)


class Problems:
    """Every ConfigError found while loading, in the order found (and where each value came from)."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []
        self.origins: dict[str, str] = {}  # setting (targets[0].org_id) -> its source

    def add(self, setting: str, source: str, problem: str) -> None:
        self.errors.append(ConfigError(setting, source, problem))

    def about(self, setting: str) -> bool:
        """True when `setting` has failed."""
        return any(e.setting == setting for e in self.errors)

    def under(self, prefix: str) -> bool:
        """True when a setting whose name starts with `prefix` (``targets[0].``) has failed."""
        return any(e.setting.startswith(prefix) for e in self.errors)

    def raise_any(self) -> None:
        if self.errors:
            raise ConfigErrors(self.errors, self.warnings)


def _read_secret(path: Path) -> str:
    if not _names_a_file(path):
        raise ValueError(
            "names no file (not shown: it may be the secret itself): create it or fix the path"
        )
    # Only the line ending an editor adds is stripped; other whitespace is an error later.
    return read_text(path, SECRET_FILE_LIMIT).rstrip("\r\n")


def _names_a_file(path: Path) -> bool:
    try:
        return os.path.lexists(path)
    except ValueError:  # a NUL in the name
        return False


def _secret_file(label: str, path: Path, where: str = "") -> _Value:
    """A secret file's layer entry; a path naming no file is left out of its source."""
    shown_path = f"={path}" if _names_a_file(path) else ""
    return _Value(None, f"file {label}{shown_path}{where}", path)


def _resolve(
    specs: Sequence[Spec],
    layers: Sequence[_Layer],
    prefix: str,
    problems: Problems,
    notes: list[str] | None = None,
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
        sources[spec.name] = item.source
        try:
            raw = item.raw if item.secret_file is None else _read_secret(item.secret_file)
            values[spec.name] = convert(spec.kind, raw)
        except ValueError as exc:
            problems.add(prefix + spec.name, item.source, str(exc))
    return values, sources


def _construct(
    model: type[_M],
    values: dict[str, Any],
    sources: dict[str, str],
    prefix: str,
    problems: Problems,
) -> _M | None:
    """The model, or None after adding each of its validation errors to `problems`."""
    try:
        return model(**values)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
    for error in errors:
        name = str(error["loc"][0]) if error["loc"] else ""
        setting = prefix + name if name else prefix.rstrip(".") or "settings"
        if error["type"] == "missing" or (not name and problems.about(setting)):
            continue  # already reported as missing or invalid, with a better message
        problem = error["msg"].removeprefix("Value error, ")
        problems.add(setting, sources.get(name, "default"), problem)
    return None


def _unknown(key: str, allowed: set[str]) -> str:
    if key == "config_file":
        return "cannot be set inside the config file"
    if key in SPEC_OF:
        return "is exporter-wide: set it at the top level of the config file"
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return "unknown setting" + (f"; did you mean {close[0]}?" if close else "")


def _yaml_layers(
    data: dict[Any, Any], where: str, cfg: Path, allowed: set[str], problems: Problems
) -> tuple[_Layer, _Layer]:
    """Split one YAML mapping into its values and its secret files; paths are relative to cfg."""
    values: _Layer = {}
    files: _Layer = {}
    for key, raw in ((str(k), v) for k, v in data.items()):
        label = where + (key if len(key) <= 40 else shown(key))
        if key not in allowed:
            problems.add(label, f"config file {cfg} ({label})", _unknown(key, allowed))
            continue
        if raw is None or key == "targets":
            continue
        if key in FILE_KEYS:
            if not isinstance(raw, str) or not raw.strip():
                problems.add(label, f"config file {cfg} ({label})", "must be a file path")
                continue
            path = cfg.parent / raw.strip()
            files[FILE_KEYS[key]] = _secret_file(label, path, f" (config file {cfg})")
            continue
        if key in SPEC_OF and SPEC_OF[key].kind == "path" and isinstance(raw, str) and raw.strip():
            raw = str(cfg.parent / raw.strip())
        values[key] = _Value(raw, f"config file {cfg} ({label})")
    return values, files


def _read_config(
    path: Path, source: str, problems: Problems
) -> tuple[_Layer, _Layer, list[tuple[_Layer, _Layer]] | None]:
    """Top-level values and secret files of the YAML file, and its targets: blocks if any."""
    try:
        data = read_yaml(path)
    except ValueError as exc:
        # Nothing after this can be judged fairly without the file: report it alone.
        raise ConfigErrors(
            [*problems.errors, ConfigError("config_file", source, str(exc))]
        ) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        problems.add("config_file", source, "must be a YAML mapping of settings")
        problems.raise_any()
    top, top_files = _yaml_layers(data, "", path, TOP_KEYS, problems)
    targets = data.get("targets")
    if targets is None:
        return top, top_files, None
    if not isinstance(targets, list):
        problem = f"must be a list of organisation blocks, not {type_name(targets)}"
        problems.add("targets", f"config file {path} (targets)", problem)
        return top, top_files, []
    blocks = []
    for i, block in enumerate(targets):
        if not isinstance(block, dict):
            where = f"targets[{i}]"
            problems.add(where, f"config file {path} ({where})", "must be a mapping")
            continue
        blocks.append(_yaml_layers(block, f"targets[{i}].", path, BLOCK_KEYS, problems))
    return top, top_files, blocks


def _build_target(
    layers: Sequence[_Layer], prefix: str, demo: bool, notes: list[str], problems: Problems
) -> TargetSettings | None:
    values, sources = _resolve(TARGET_SPECS, layers, prefix, problems, notes)
    problems.origins |= {f"{prefix or 'targets[0].'}{k}": v for k, v in sources.items()}
    failed = problems.about
    if "org_id" not in sources:
        where = "in every targets: block" if prefix else "--org-id or ALVARIA_ORG_ID"
        problems.add(f"{prefix}org_id", "default", f"required: set {where}")
    if demo:  # the simulator accepts any credentials
        values.setdefault("api_key", SecretStr("demo"))
        if not values.get("access_token") and not values.get("client_secret"):
            values["access_token"] = SecretStr("demo")
    if "api_key" not in values and not failed(f"{prefix}api_key"):
        problem = "required: set ALVARIA_API_KEY or ALVARIA_API_KEY_FILE (or api_key_file: in YAML)"
        problems.add(f"{prefix}api_key", "default", problem)

    def given(name: str) -> bool:  # set, possibly invalid (then already reported)
        return name in values or failed(prefix + name)

    client_id, client_secret = sources.get("client_id"), sources.get("client_secret")
    if not given("access_token") and not (given("client_id") and given("client_secret")):
        if client_id is not None:
            problem = f"required with client_id (from {client_id}) without access_token"
            problems.add(f"{prefix}client_secret", "default", problem)
        elif client_secret is not None:
            problem = f"required with client_secret (from {client_secret})"
            problems.add(f"{prefix}client_id", "default", problem)
        else:
            problem = "set client_id and client_secret (OAuth2 client credentials), or access_token"
            problems.add(f"{prefix}client_id", "default", problem)
    if problems.under(prefix) if prefix else any(failed(s.name) for s in TARGET_SPECS):
        _check_given(values, sources, prefix, problems)
        return None
    return _construct(TargetSettings, values, sources, prefix, problems)


# Stand-ins for what is missing or failed, so the settings that were given are still checked.
_STAND_INS = {"org_id": "x", "api_key": SecretStr("x"), "access_token": SecretStr("x")}


def _check_given(
    values: dict[str, Any], sources: dict[str, str], prefix: str, problems: Problems
) -> None:
    """Report what is wrong with the given settings of a target that cannot be built anyway."""
    given = {k: v for k, v in values.items() if not problems.about(prefix + k)}
    scratch = Problems()
    _construct(TargetSettings, {**_STAND_INS, **given}, sources, prefix, scratch)
    problems.errors += [e for e in scratch.errors if e.setting.removeprefix(prefix) in given]


def _command_line(argv: Sequence[str], problems: Problems) -> tuple[dict[str, Any], Mode]:
    args = parse_argv(argv)
    if args["version"]:
        return args, "version"
    chosen = [mode for flag, mode in MODE_FLAGS.items() if args[flag]]
    if len(chosen) > 1:
        flags = " ".join("--" + mode.replace("_", "-") for mode in chosen)
        problems.add(
            "mode",
            f"flag {flags}",
            "--demo, --once, --check-config and --check-connection exclude each other",
        )
    if args["show_sources"] and chosen != ["check_config"]:
        problems.add("show_sources", "flag --show-sources", "only with --check-config")
    return args, chosen[0] if chosen else "run"


def load(argv: Sequence[str], environ: Mapping[str, str]) -> Invocation:
    """Parse argv, environ and the files they name; raises ConfigErrors naming every problem."""
    problems = Problems()
    args, mode = _command_line(argv, problems)
    if mode == "version":
        return Invocation("version", Settings())

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
            flag_files[name] = _secret_file(flag, Path(args[key]))
        if environ.get(env):
            env_files[name] = _secret_file(env, Path(environ[env]))

    top: _Layer = {}
    top_files: _Layer = {}
    blocks = None
    global_values, global_sources = _resolve(GLOBAL_SPECS, [flag_layer, env_layer], "", Problems())
    config_file = global_values.get("config_file")
    if config_file is not None:
        top, top_files, blocks = _read_config(config_file, global_sources["config_file"], problems)
    global_values, global_sources = _resolve(
        GLOBAL_SPECS, [flag_layer, env_layer, top], "", problems
    )
    notes = problems.warnings  # the same list: shown with the errors, if any
    for line in unknown_env(environ):
        if global_values.get("strict_env"):
            problems.add(line.setting, line.source, line.problem)
        else:
            notes.append(f"{line.source}: {line.problem} (ignored; --strict-env refuses it)")

    inherited = [flag_layer, env_layer, top, flag_files, env_files, top_files]
    targets = _targets(inherited, blocks, config_file, mode, notes, problems)

    if config_file is not None:
        raw_rules, raw_calendars = (top.get(k) for k in ("service_levels", "calendars"))
        problems.origins |= {k: top[k].source for k in ("service_levels", "calendars") if k in top}
        rules, calendars, found = parse_service_levels(
            raw_rules and raw_rules.raw,
            raw_calendars and raw_calendars.raw,
            f"config file {config_file}",
        )
        problems.errors += found
        global_values |= {"service_levels": rules, "calendars": calendars}
    check_limits(global_values, global_sources, problems.add)
    failed = [spec.name for spec in GLOBAL_SPECS if problems.about(spec.name)]
    good = {k: v for k, v in global_values.items() if k not in failed}
    web = _web_config(good.get("web_config_file"), global_sources, problems)
    settings = _construct(
        Settings, {**good, "targets": tuple(targets)}, global_sources, "", problems
    )
    problems.raise_any()
    assert settings is not None  # noqa: S101 - _construct reported why otherwise
    sources = global_sources | problems.origins if args["show_sources"] else None
    return Invocation(mode, settings, tuple(notes), web, sources)


def _web_config(path: Any, sources: dict[str, str], problems: Problems) -> WebConfig:
    """The web config file, read once here, so its problems are reported with the others'."""
    if path is None:
        return WebConfig()
    try:
        return web_config.load(Path(path))
    except ConfigError as exc:
        problems.add("web_config_file", sources.get("web_config_file", "default"), exc.problem)
        return WebConfig()


def _targets(
    inherited: list[_Layer],
    blocks: list[tuple[_Layer, _Layer]] | None,
    config_file: Any,
    mode: Mode,
    notes: list[str],
    problems: Problems,
) -> list[TargetSettings]:
    """The organisations: one from flags/env/YAML, or one per block of `targets:`."""
    targets: list[TargetSettings] = []
    if blocks is None:
        if mode != "demo" or any("org_id" in layer for layer in inherited[:3]):
            target = _build_target(inherited, "", mode == "demo", notes, problems)
            targets += [target] if target else []
    else:
        for layer in inherited[:3]:
            if "org_id" in layer:
                problem = f"ambiguous with targets: in {config_file}; set org_id in each block"
                problems.add("org_id", layer["org_id"].source, problem)
        if not blocks and mode != "demo" and not problems.under("targets"):
            where = f"config file {config_file} (targets)"
            problems.add("targets", where, "must list at least one organisation")
        seen: dict[str, int] = {}
        for i, (block, block_files) in enumerate(blocks):
            prefix = f"targets[{i}]."
            target = _build_target(
                [block, block_files, *inherited], prefix, mode == "demo", notes, problems
            )
            if target is None:
                continue
            if target.org_id in seen:
                where = f"config file {config_file} ({prefix}org_id)"
                problems.add(f"{prefix}org_id", where, f"duplicates targets[{seen[target.org_id]}]")
            seen[target.org_id] = i
            targets.append(target)
    return targets
